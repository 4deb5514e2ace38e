"""Each party's rows for its linked customers and sellers, keyed by link id, from its own store only.

The same tables feed training (``tandem.demo``), the online feature cache and batch scoring,
so a model always sees the features it was trained on.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from tandem.features import application_labels, bank_features, market_features
from tandem.features.sellers import (bank_seller_features, market_seller_features, seller_labels)

ENTITIES = ("customers", "sellers")


def customer_rows(store, party: str, as_of: date, labels: bool = False) -> pa.Table:
    """``link_id``, ``local_id`` and the party's customer features (and the bank's ``default`` label
    for customers with a new loan when ``labels``), sorted by link id."""
    if party == "bank":
        con = store.analytics(["link_customers"])
        con.register("_features", bank_features(store, as_of))
        if labels:
            con.register("_labels", application_labels(store, as_of))
            return con.sql("""SELECT l.link_id, l.local_id, f.* EXCLUDE (client_id),
                                     CAST(b.default_90_12m AS INTEGER) AS "default"
                              FROM link_customers l JOIN _features f ON f.client_id = l.local_id
                              JOIN _labels b ON b.client_id = l.local_id ORDER BY l.link_id""").to_arrow_table()
        return con.sql("""SELECT l.link_id, l.local_id, f.* EXCLUDE (client_id) FROM link_customers l
                          JOIN _features f ON f.client_id = l.local_id ORDER BY l.link_id""").to_arrow_table()
    con = store.analytics(["link_customers"])
    con.register("_features", market_features(store, as_of))
    return con.sql("""SELECT l.link_id, l.local_id, f.* EXCLUDE (user_id) FROM link_customers l
                      JOIN _features f ON f.user_id = l.local_id ORDER BY l.link_id""").to_arrow_table()


def seller_rows(store, party: str, as_of: date, labels: bool = False) -> pa.Table:
    """``link_id``, ``local_id`` and the party's seller features (and the bank's ``default`` label of
    each business's first loan after ``as_of`` when ``labels``), sorted by link id."""
    con = store.analytics(["link_sellers"])
    if party == "bank":
        con.register("_features", bank_seller_features(store, as_of))
        if labels:
            con.register("_labels", seller_labels(store, as_of))
            return con.sql("""SELECT l.link_id, l.local_id, f.* EXCLUDE (business_id),
                                     CAST(b.default_90_12m AS INTEGER) AS "default"
                              FROM link_sellers l JOIN _features f ON f.business_id = l.local_id
                              JOIN _labels b ON b.business_id = l.local_id ORDER BY l.link_id""").to_arrow_table()
        return con.sql("""SELECT l.link_id, l.local_id, f.* EXCLUDE (business_id) FROM link_sellers l
                          JOIN _features f ON f.business_id = l.local_id ORDER BY l.link_id""").to_arrow_table()
    con.register("_features", market_seller_features(store, as_of))
    return con.sql("""SELECT l.link_id, l.local_id, f.* EXCLUDE (seller_id) FROM link_sellers l
                      JOIN _features f ON f.seller_id = l.local_id ORDER BY l.link_id""").to_arrow_table()


def rows(store, party: str, entity: str, as_of: date, labels: bool = False) -> pa.Table:
    return (customer_rows if entity == "customers" else seller_rows)(store, party, as_of, labels)

"""Each party's rows for its linked customers and sellers, keyed by link id, from its own store only.

The same tables feed training (the demo, offers), the online feature cache and batch scoring,
so a model always sees the features it was trained on.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from tandem.features import application_labels, bank_features, market_features
from tandem.features.sellers import bank_seller_features, market_seller_features, seller_labels

# (party, entity) -> (link table, features, their key column, labels or None)
SOURCES = {
    ("bank", "customers"): ("link_customers", bank_features, "client_id", application_labels),
    ("market", "customers"): ("link_customers", market_features, "user_id", None),
    ("bank", "sellers"): ("link_sellers", bank_seller_features, "business_id", seller_labels),
    ("market", "sellers"): ("link_sellers", market_seller_features, "seller_id", None),
}


def rows(store, party: str, entity: str, as_of: date, labels: bool = False, link_table: str | None = None) -> pa.Table:
    """``link_id``, ``local_id`` and the party's features of its linked customers or sellers, sorted by
    link id; with ``labels`` (the bank) only the rows with an outcome, plus the label ``default``
    (a new loan's "90+ days past due within 12 months"). ``link_table``: a pinned version of the
    link table (``tandem.link.versions``) instead of the latest."""
    link, features, key, label_source = SOURCES[(party, entity)]
    link = link_table or link
    con = store.analytics([link])
    con.register("_features", features(store, as_of))
    select = f"SELECT l.link_id, l.local_id, f.* EXCLUDE ({key})"
    source = f"FROM {link} l JOIN _features f ON f.{key} = l.local_id"
    if labels and label_source is not None:
        con.register("_labels", label_source(store, as_of))
        select += ', CAST(b.default_90_12m AS INTEGER) AS "default"'
        source += f" JOIN _labels b ON b.{key} = l.local_id"
    return con.sql(f"{select} {source} ORDER BY l.link_id").to_arrow_table()

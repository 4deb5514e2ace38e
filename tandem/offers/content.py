"""The marketplace's part of a personalised offer: each linked user's top categories, from its own
store, drawn only from the catalog's public list. The marketplace sends a client's categories to
the bank only once the bank offers that client the product (docs/privacy.md)."""

from __future__ import annotations

from datetime import date

import duckdb

from tandem.errors import StoreError

TOP_CATEGORIES_SQL = """
SELECT l.link_id, i.category, sum(i.price * i.quantity) AS spend
FROM {link} l JOIN orders o ON o.user_id = l.local_id JOIN order_items i USING (order_id)
WHERE o.ordered_at < $as_of AND o.ordered_at >= $as_of - INTERVAL 12 MONTH AND o.status = 'delivered'
  AND list_contains($categories, i.category)
GROUP BY l.link_id, i.category
QUALIFY row_number() OVER (PARTITION BY l.link_id ORDER BY spend DESC, i.category) <= $n
ORDER BY l.link_id, spend DESC, i.category
"""


def top_categories(
    store, as_of: date, categories: tuple[str, ...], n: int, link_table: str = "link_customers"
) -> dict[str, list[str]]:
    """link id -> the ``n`` public categories the user spent most on in the 12 months before
    ``as_of`` (delivered orders), topped up from the public list in its order when fewer.
    ``link_table``: the (pinned version of the) link table."""
    from tandem.store.base import check_schema
    from tandem.store.party_schema import MARKET_TABLES

    check_schema(store, [s for s in MARKET_TABLES if s.name in ("orders", "order_items")])
    con = store.analytics([link_table, "orders", "order_items"])
    try:
        params = {"as_of": as_of, "categories": list(categories), "n": n}
        found = con.sql(TOP_CATEGORIES_SQL.format(link=link_table), params=params).fetchall()
        links = [r[0] for r in con.sql(f"SELECT link_id FROM {link_table}").fetchall()]
    except duckdb.Error as exc:
        raise StoreError(f"{store.location}: category query failed: {str(exc).splitlines()[0]}") from None
    out: dict[str, list[str]] = {lid: [] for lid in links}
    for link_id, category, _spend in found:
        out[link_id].append(category)
    for chosen in out.values():
        chosen.extend([c for c in categories if c not in chosen][: n - len(chosen)])
    return out

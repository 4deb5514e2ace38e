"""The bank's campaign history and contact rules, from its own store only: training labels per
product, the held-out wave, and what each client allows now (consent, do-not-disturb, contacts)."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pyarrow as pa

from tandem.errors import InputError, StoreError
from tandem.store.base import check_schema

HISTORY = ("campaigns", "campaign_contacts")


def _sql(store, tables: tuple[str, ...], sql: str, params: dict) -> pa.Table:
    from tandem.store.party_schema import BANK_TABLES

    check_schema(store, [s for s in BANK_TABLES if s.name in tables])
    try:
        return store.analytics(list(tables)).sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise StoreError(f"{store.location}: campaign query failed: {str(exc).splitlines()[0]}") from None


def holdout_start(store, holdout_from: date | None = None) -> date:
    """The first send date of the held-out campaigns: ``holdout_from``, or the latest campaign's."""
    if holdout_from is not None:
        return holdout_from
    latest = _sql(store, HISTORY, "SELECT max(sent_on) AS d FROM campaigns", {}).column("d")[0].as_py()
    if latest is None:
        raise InputError(f"{store.location}: table campaigns is empty: there is no campaign history")
    return latest


def training_labels(store, product: str, before: date) -> pa.Table:
    """``(client_id, responded)`` (0/1) of every client contacted about ``product`` by a campaign sent
    before ``before``; a client contacted more than once counts as responded if they ever did."""
    table = _sql(
        store,
        HISTORY,
        """
        SELECT c.client_id, max(CASE WHEN c.responded THEN 1 ELSE 0 END) AS responded
        FROM campaign_contacts c JOIN campaigns m USING (campaign_id)
        WHERE m.product = $product AND m.sent_on < $before
        GROUP BY c.client_id ORDER BY c.client_id""",
        {"product": product, "before": before},
    )
    if table.num_rows == 0:
        raise InputError(
            f"{store.location}: no campaign for product '{product}' was sent before {before} "
            "(campaigns.product): nothing to learn its propensity from"
        )
    return table


def holdout_contacts(store, start: date) -> pa.Table:
    """``(client_id, product, responded, sent_on)`` of the campaigns sent on or after ``start``."""
    return _sql(
        store,
        HISTORY,
        """
        SELECT c.client_id, m.product, c.responded, m.sent_on
        FROM campaign_contacts c JOIN campaigns m USING (campaign_id)
        WHERE m.sent_on >= $start ORDER BY c.client_id, m.product""",
        {"start": start},
    )


def contact_state(store, as_of: date, period_days: int) -> tuple[pa.Table, pa.Table]:
    """What each client allows on ``as_of``, and their contacts before it.

    Returns ``(clients, last)``: ``clients`` = ``(client_id, marketing_consent, do_not_disturb,
    contacts_in_period)`` for every client with contact preferences; ``last`` = ``(client_id,
    product, days_since)`` of each client's last contact about each product.
    """
    params = {"as_of": as_of, "since": as_of - timedelta(days=period_days)}
    tables = HISTORY + ("contact_preferences",)
    clients = _sql(
        store,
        tables,
        """
        WITH recent AS (
            SELECT c.client_id, count(*) AS n FROM campaign_contacts c JOIN campaigns m USING (campaign_id)
            WHERE m.sent_on < $as_of AND m.sent_on >= $since GROUP BY c.client_id)
        SELECT p.client_id, p.marketing_consent,
               coalesce(p.do_not_disturb_until > $as_of, false) AS do_not_disturb,
               coalesce(r.n, 0) AS contacts_in_period
        FROM contact_preferences p LEFT JOIN recent r USING (client_id) ORDER BY p.client_id""",
        params,
    )
    last = _sql(
        store,
        HISTORY,
        """
        SELECT c.client_id, m.product, date_diff('day', max(m.sent_on), $as_of) AS days_since
        FROM campaign_contacts c JOIN campaigns m USING (campaign_id)
        WHERE m.sent_on < $as_of GROUP BY c.client_id, m.product""",
        {"as_of": as_of},
    )
    return clients, last

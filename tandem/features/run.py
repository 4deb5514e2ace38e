"""Run feature SQL against a store's tables in DuckDB."""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from tandem.errors import StoreError
from tandem.store.base import check_schema


def run_sql(store, tables: list[str], sql: str, as_of: date, params: dict | None = None) -> pa.Table:
    """Check that ``tables`` match the party schema (``store/party_schema.py``), then run ``sql`` with
    ``$as_of`` (and ``params``) bound."""
    from tandem.store.party_schema import BANK_TABLES, MARKET_TABLES

    specs = [s for s in BANK_TABLES + MARKET_TABLES if s.name in tables]
    check_schema(store, specs)
    con = store.analytics(tables)
    try:
        return con.sql(sql, params={"as_of": as_of, **(params or {})}).to_arrow_table()
    except duckdb.Error as exc:
        raise StoreError(f"{store.location}: feature query failed: {str(exc).splitlines()[0]}") from None

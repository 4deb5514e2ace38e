"""A party's own data: one database per party.

``open_store(target)`` accepts a DuckDB file path (the embedded default), a
``duckdb:///path`` URL, or any SQLAlchemy URL (``postgresql+psycopg://...``).
"""

from tandem.store.base import Store, open_store
from tandem.store.schema import Column, TableSpec, canonical_type

__all__ = ["Column", "Store", "TableSpec", "canonical_type", "open_store"]

"""The store interface and ``open_store``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from tandem.errors import StoreError
from tandem.store.schema import TableSpec, check_columns

TMP_SUFFIX = "__tandem_tmp"


class Store(Protocol):
    """One party's database. Tables are read and written as Arrow.

    Writes are atomic per table: rows go to a temporary table that replaces the
    old one in one transaction, so a failed write leaves the old table intact.
    """

    location: str

    def table_names(self) -> list[str]: ...

    def columns(self, table: str) -> dict[str, str] | None:
        """Column name -> backend type name, or ``None`` if ``table`` does not exist."""

    def write_table(
        self, name: str, data: pa.Table | Iterable[pa.RecordBatch | pa.Table], spec: TableSpec | None = None
    ) -> int:
        """Replace ``name`` with ``data`` (one table or a stream of chunks); return rows written."""

    def create_table(self, spec: TableSpec) -> None:
        """Create an empty table from ``spec``."""

    def append(self, name: str, chunk: pa.Table) -> None:
        """Append ``chunk`` to an existing table in one transaction (columns matched by name)."""

    def drop_table(self, name: str) -> None:
        """Remove ``name`` if it exists."""

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table: ...

    def iter_batches(
        self, name: str, batch_size: int = 100_000, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]: ...

    def query(self, sql: str) -> pa.Table:
        """Run backend SQL and return the result."""

    def analytics(self, tables: Iterable[str]) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection in which ``tables`` can be queried by name (feature SQL runs here)."""

    def close(self) -> None: ...


def check_schema(store: Store, specs: Iterable[TableSpec]) -> None:
    """Raise ``SchemaError`` naming the first missing table, column or wrong type."""
    for spec in specs:
        check_columns(store.location, spec, store.columns(spec.name))


def import_file(store: Store, path: str | os.PathLike, table: str, spec: TableSpec | None = None) -> int:
    """Load a Parquet or CSV file into ``table`` (atomically); with ``spec``, check and cast it first."""
    from tandem.store.files import read_file

    data = read_file(path, spec)
    return store.write_table(table, data, spec)


def open_store(target: str | os.PathLike, *, create: bool = False, read_only: bool = False) -> Store:
    """Open a party store.

    ``target`` is a DuckDB file path, ``duckdb:///path``, or a SQLAlchemy URL.
    A missing DuckDB file is an error unless ``create`` is true.
    """
    text = str(target)
    if "://" in text and not text.startswith("duckdb://"):
        from tandem.store.sql import SqlStore

        return SqlStore(text)
    path = Path(text.removeprefix("duckdb:///").removeprefix("duckdb://"))
    from tandem.store.duck import DuckStore

    if not path.exists() and not create:
        raise StoreError(f"{path}: store file does not exist")
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, expected a DuckDB file")
    return DuckStore(path, read_only=read_only)

"""The embedded default store: one DuckDB file per party."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from tandem.errors import StoreError
from tandem.store.base import TMP_SUFFIX
from tandem.store.schema import TableSpec

_HEADER_BYTES = 3 * 4096  # DuckDB's main header and two database headers precede the blocks


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckStore:
    """A DuckDB file. Opened read-only, several processes may read it at once."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.location = str(self.path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{self.path}: cannot open as a DuckDB store ({first})") from None
        self._check_complete()

    def _check_complete(self) -> None:
        """Refuse a file cut short (a copy that stopped early): DuckDB would only fail on the lost blocks."""
        if not self.path.exists():
            return
        # free blocks at the end of the file may be cut off by DuckDB itself: only used blocks must be there
        size = self.con.execute("PRAGMA database_size").fetchone()
        if size is None:
            raise StoreError(f"{self.path}: DuckDB reports no database size")
        _, _, block_size, _total_blocks, used_blocks, *_ = size
        expected = _HEADER_BYTES + block_size * used_blocks
        actual = self.path.stat().st_size
        if actual < expected:
            self.con.close()
            raise StoreError(
                f"{self.path}: cannot open as a DuckDB store (file is truncated: {actual:,} of {expected:,} bytes)"
            )

    def table_names(self) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows if not r[0].endswith(TMP_SUFFIX)]

    def columns(self, table: str) -> dict[str, str] | None:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return {name: dtype for name, dtype in rows} or None

    def write_table(self, name: str, data, spec: TableSpec | None = None) -> int:
        chunks = [data] if isinstance(data, (pa.Table, pa.RecordBatch)) else data
        tmp = name + TMP_SUFFIX
        con = self.con
        con.execute(f"DROP TABLE IF EXISTS {_q(tmp)}")
        rows = 0
        try:
            created = False
            if spec is not None:
                con.execute(spec.ddl(quote=_q).replace(f"CREATE TABLE {_q(spec.name)}", f"CREATE TABLE {_q(tmp)}", 1))
                created = True
            for chunk in chunks:
                con.register("_tandem_chunk", chunk)
                try:
                    if created:
                        cols = ", ".join(_q(c) for c in (spec.column_names if spec else chunk.schema.names))
                        con.execute(f"INSERT INTO {_q(tmp)} ({cols}) SELECT {cols} FROM _tandem_chunk")
                    else:
                        con.execute(f"CREATE TABLE {_q(tmp)} AS SELECT * FROM _tandem_chunk")
                        created = True
                finally:
                    con.unregister("_tandem_chunk")
                rows += chunk.num_rows
            if not created:
                raise StoreError(f"{self.location}: nothing to write into table '{name}' and no schema given")
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DROP TABLE IF EXISTS {_q(name)}")
            con.execute(f"ALTER TABLE {_q(tmp)} RENAME TO {_q(name)}")
            con.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            con.execute(f"DROP TABLE IF EXISTS {_q(tmp)}")
            raise StoreError(f"{self.location}: writing table '{name}' failed: {str(exc).splitlines()[0]}") from None
        return rows

    def drop_table(self, name: str) -> None:
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {_q(name)}")
        except duckdb.Error as exc:
            raise StoreError(f"{self.location}: dropping table '{name}' failed: {str(exc).splitlines()[0]}") from None

    def create_table(self, spec: TableSpec) -> None:
        """Create an empty table from ``spec`` (bulk loaders then ``append`` chunks)."""
        self.con.execute(spec.ddl(quote=_q))

    def append(self, name: str, chunk: pa.Table) -> None:
        """Append ``chunk`` to an existing table, matching columns by name."""
        self.con.register("_tandem_chunk", chunk)
        try:
            cols = ", ".join(_q(c) for c in chunk.schema.names)
            self.con.execute(f"INSERT INTO {_q(name)} ({cols}) SELECT {cols} FROM _tandem_chunk")
        except duckdb.Error as exc:
            raise StoreError(f"{self.location}: appending to '{name}' failed: {str(exc).splitlines()[0]}") from None
        finally:
            self.con.unregister("_tandem_chunk")

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        return self.query(self._select(name, columns))

    def iter_batches(self, name: str, batch_size: int = 100_000, columns=None) -> Iterator[pa.RecordBatch]:
        self._require(name)
        reader = self.con.sql(self._select(name, columns)).to_arrow_reader(batch_size)
        yield from reader

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        try:
            return self.con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"{self.location}: query failed: {str(exc).splitlines()[0]}") from None

    def analytics(self, tables: Iterable[str] = ()) -> duckdb.DuckDBPyConnection:
        for t in tables:
            self._require(t)
        return self.con

    def close(self) -> None:
        self.con.close()

    def _require(self, name: str) -> None:
        if self.columns(name) is None:
            raise StoreError(f"{self.location}: table '{name}' is missing")

    def _select(self, name: str, columns: list[str] | None) -> str:
        self._require(name)
        cols = ", ".join(_q(c) for c in columns) if columns else "*"
        return f"SELECT {cols} FROM {_q(name)}"

"""A store behind any SQLAlchemy URL; PostgreSQL gets a fast ``COPY`` path."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import NoReturn

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from tandem.errors import StoreError
from tandem.store.base import TMP_SUFFIX
from tandem.store.files import arrow_canonical
from tandem.store.schema import TableSpec

_PG_TYPES = {"DOUBLE": "DOUBLE PRECISION"}


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SqlStore:
    """Tables in a SQL database reached by a SQLAlchemy URL."""

    def __init__(self, url: str):
        self.url = sa.engine.make_url(url)
        self.location = self.url.render_as_string(hide_password=True)
        try:
            self.engine = sa.create_engine(self.url)
            with self.engine.connect():
                pass
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"{self.location}: cannot connect ({_first_line(exc)})") from None
        self._quote = self.engine.dialect.identifier_preparer.quote
        self._is_pg = self.engine.dialect.name == "postgresql"

    def table_names(self) -> list[str]:
        names = sa.inspect(self.engine).get_table_names()
        return sorted(n for n in names if not n.endswith(TMP_SUFFIX))

    def columns(self, table: str) -> dict[str, str] | None:
        insp = sa.inspect(self.engine)
        if not insp.has_table(table):
            return None
        return {c["name"]: c["type"].compile(dialect=self.engine.dialect) for c in insp.get_columns(table)}

    def write_table(self, name: str, data, spec: TableSpec | None = None) -> int:
        chunks = [data] if isinstance(data, (pa.Table, pa.RecordBatch)) else data
        q = self._quote
        tmp = name + TMP_SUFFIX
        rows = 0
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {q(tmp)}"))
                created = False
                for chunk in chunks:
                    table = chunk if isinstance(chunk, pa.Table) else pa.Table.from_batches([chunk])
                    if not created:
                        conn.execute(sa.text(self._ddl(tmp, spec, table.schema)))
                        created = True
                    if spec is not None:
                        table = table.select(spec.column_names)
                    self._insert(conn, tmp, table)
                    rows += table.num_rows
                if not created:
                    if spec is None:
                        raise StoreError(f"{self.location}: nothing to write into table '{name}' and no schema given")
                    conn.execute(sa.text(self._ddl(tmp, spec, None)))
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {q(name)}"))
                conn.execute(sa.text(f"ALTER TABLE {q(tmp)} RENAME TO {q(name)}"))
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: writing table '{name}' failed: {_first_line(exc)}") from None
        return rows

    def drop_table(self, name: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {self._quote(name)}"))
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: dropping table '{name}' failed: {_first_line(exc)}") from None

    def create_table(self, spec: TableSpec) -> None:
        """Create an empty table from ``spec``."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text(self._ddl(spec.name, spec, None)))
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: creating table '{spec.name}' failed: {_first_line(exc)}") from None

    def append(self, name: str, chunk: pa.Table) -> None:
        """Append ``chunk`` to an existing table in one transaction, matching columns by name."""
        try:
            with self.engine.begin() as conn:
                self._insert(conn, name, chunk)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: appending to '{name}' failed: {_first_line(exc)}") from None

    def _ddl(self, table: str, spec: TableSpec | None, schema: pa.Schema | None) -> str:
        types = _PG_TYPES if self._is_pg else {}
        if spec is None:
            if schema is None:
                raise ValueError("_ddl needs a table spec or an Arrow schema")
            spec = TableSpec(table, tuple(_column(f) for f in schema))
        body = spec.ddl(quote=self._quote, type_names=types)
        return body.replace(f"CREATE TABLE {self._quote(spec.name)}", f"CREATE TABLE {self._quote(table)}", 1)

    def _insert(self, conn, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        cols = ", ".join(self._quote(c) for c in data.column_names)
        if self._is_pg:
            buf = io.BytesIO()
            pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False))
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cur:
                with cur.copy(f"COPY {self._quote(table)} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(buf.getvalue())
        else:
            params = ", ".join(f":p{i}" for i in range(data.num_columns))
            rows = [{f"p{i}": v for i, v in enumerate(r.values())} for r in data.to_pylist()]
            conn.execute(sa.text(f"INSERT INTO {self._quote(table)} ({cols}) VALUES ({params})"), rows)

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        batches = list(self.iter_batches(name, columns=columns))
        return pa.Table.from_batches(batches) if batches else pa.Table.from_batches([], self._schema(name, columns))

    def iter_batches(self, name: str, batch_size: int = 100_000, columns=None) -> Iterator[pa.RecordBatch]:
        if self.columns(name) is None:
            self._missing(name)
        schema = self._schema(name, columns)
        cols = ", ".join(self._quote(c) for c in schema.names)
        yield from self._stream(f"SELECT {cols} FROM {self._quote(name)}", batch_size, schema)

    def query(self, sql: str) -> pa.Table:
        batches = list(self._stream(sql, 100_000))
        return pa.Table.from_batches(batches) if batches else pa.table({})

    def _stream(self, sql: str, batch_size: int, schema: pa.Schema | None = None) -> Iterator[pa.RecordBatch]:
        try:
            with self.engine.connect().execution_options(stream_results=True) as conn:
                result = conn.execute(sa.text(sql))
                names = list(result.keys())
                empty = True
                while rows := result.fetchmany(batch_size):
                    empty = False
                    yield pa.RecordBatch.from_pylist([dict(zip(names, r)) for r in rows], schema=schema)
                if empty and schema is None:  # no rows: the columns still have names
                    yield pa.RecordBatch.from_arrays([pa.array([], pa.null()) for _ in names], names=names)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.location}: query failed: {_first_line(exc)}") from None

    def analytics(self, tables: Iterable[str] = ()) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        for t in tables:
            con.register(f"_{t}_arrow", self.read_table(t))
            con.execute(f'CREATE TABLE "{t}" AS SELECT * FROM "_{t}_arrow"')
            con.unregister(f"_{t}_arrow")
        return con

    def close(self) -> None:
        self.engine.dispose()

    def _schema(self, name: str, columns: list[str] | None) -> pa.Schema:
        types = self.columns(name)
        if types is None:
            self._missing(name)
        return pa.schema([(c, _arrow_type(types[c])) for c in (columns or list(types))])

    def _missing(self, name: str) -> NoReturn:
        raise StoreError(f"{self.location}: table '{name}' is missing")


def _arrow_type(backend_type: str) -> pa.DataType:
    from tandem.store.schema import ARROW_TYPES, canonical_type

    arrow_type: pa.DataType = ARROW_TYPES.get(canonical_type(backend_type), pa.string())
    return arrow_type


def _column(field: pa.Field):
    from tandem.store.schema import Column

    return Column(field.name, arrow_canonical(field.type))

"""The decision ledger on a SQL store (PostgreSQL): the ``decisions`` table is the truth.

A unique index on ``request_id`` holds "never booked twice" for every process that shares the
database. A batch of decisions is booked in one transaction: ``INSERT ... ON CONFLICT (request_id) DO
NOTHING`` (a row that another process is inserting makes this one wait for that transaction), then
the rows that hold under those request ids are read back, then the transaction commits; only then
are the decisions answered, each with the row that holds (its own, or the earlier booking's). A
request id is looked up by the index; nothing is loaded at start-up.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from tandem.decide.ledger import TABLE, LedgerUnavailable, Recorded
from tandem.errors import StoreError

INDEX = f"{TABLE.name}_request_id"


class SqlBackend:
    """The ``Backend`` of a ``Ledger`` on the SQL store ``store`` (a ``SqlStore``). Its connection is
    used by the ledger's one worker thread; after a failure the next batch takes a fresh one."""

    def __init__(self, store):
        self.skipped: dict[str, list[int]] = {}  # nothing is journaled, so nothing can be found damaged
        self._store, self._engine = store, store.engine
        q = store.engine.dialect.identifier_preparer.quote
        self._table = q(TABLE.name)
        cols = TABLE.column_names
        names = ", ".join(q(c) for c in cols)
        self._insert = sa.text(
            f"INSERT INTO {self._table} ({names}) VALUES ({', '.join(f':{c}' for c in cols)}) "
            f"ON CONFLICT ({q('request_id')}) DO NOTHING"
        )
        self._select = sa.text(
            f"SELECT request_id, request_hash, response FROM {self._table} WHERE request_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        self._unique_index(q)
        self._conn: sa.Connection | None = None

    def _unique_index(self, q) -> None:
        """The unique index on ``request_id`` (a replica starting at the same moment may create it first)."""
        ddl = sa.text(f"CREATE UNIQUE INDEX IF NOT EXISTS {q(INDEX)} ON {self._table} ({q('request_id')})")
        for attempt in range(2):
            try:
                with self._engine.begin() as conn:
                    conn.execute(ddl)
                return
            except SQLAlchemyError as exc:
                if attempt:
                    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                    raise StoreError(
                        f"{self._store.location}: cannot index {TABLE.name}.request_id as unique ({text})"
                    ) from None

    def maybe_known(self, request_id: str) -> bool:
        return True  # another process may have booked it: ask the table

    def lookup(self, request_ids: list[str]) -> dict[str, Recorded]:
        return self._run(lambda conn: self._read(conn, request_ids))

    def book(self, rows: list[tuple]) -> list[Recorded]:
        def insert(conn: sa.Connection) -> list[Recorded]:
            conn.execute(self._insert, [dict(zip(TABLE.column_names, row)) for row in rows])
            held = self._read(conn, [row[0] for row in rows])
            return [held[row[0]] for row in rows]

        return self._run(insert)

    def _read(self, conn: sa.Connection, request_ids: list[str]) -> dict[str, Recorded]:
        found = conn.execute(self._select, {"ids": list(dict.fromkeys(request_ids))})
        return {rid: (h, text) for rid, h, text in found}

    def _run(self, work):
        """``work(connection)`` in one transaction, committed; a database failure raises
        ``LedgerUnavailable`` (nothing of the batch was committed) and drops the connection."""
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            with self._conn.begin():
                return work(self._conn)
        except SQLAlchemyError as exc:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.invalidate()
                except SQLAlchemyError:
                    pass
            text = str(getattr(exc, "orig", exc)).strip().splitlines()
            raise LedgerUnavailable(f"{self._store.location}: {text[0] if text else type(exc).__name__}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

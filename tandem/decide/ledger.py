"""Every decision, durable before it is answered and kept in the bank's store, once per request id.

A request id seen before returns the recorded answer (``replayed``) and books nothing; reused with a
different request, it is refused (``ReusedRequestId``). Where that is known depends on the store:

- **PostgreSQL** (``tandem.decide.ledger_sql``): the ``decisions`` table is the truth, with a unique
  index on ``request_id``. A decision is booked by ``INSERT ... ON CONFLICT (request_id) DO NOTHING``
  and the row that holds is read back in the same transaction; it is answered only once that
  transaction is committed. So any number of service processes (replicas behind one address) share
  one ledger: two racing on one request id book one row and both answer it.
- **DuckDB** (one process's file; ``tandem.decide.journal``): decisions are fsynced to a journal in
  the node's state folder before they are answered and copied into the table by a writer thread;
  the process is the table's only writer and keeps the 8-byte hash of each request id in it.

Either way the process holds a bounded cache of recent answers (``CACHE_SIZE``, about 1 KB each)
in front of a keyed lookup by request id: start-up loads no recorded answer. New request ids of one
turn of the event loop (and of the turns while the previous batch ran) are looked up and booked
together, in one worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tandem.errors import StoreError
from tandem.store import open_store
from tandem.store.duck import DuckStore
from tandem.store.schema import Column, TableSpec

TABLE = TableSpec(
    "decisions",
    (
        Column("request_id", "VARCHAR", False),
        Column("kind", "VARCHAR", False),
        Column("link_id", "VARCHAR", False),
        Column("decision", "VARCHAR", False),
        Column("pd", "DOUBLE"),
        Column("limit_amount", "DOUBLE"),
        Column("model_version", "VARCHAR"),
        Column("request_hash", "VARCHAR", False),
        Column("response", "VARCHAR", False, "the decision as recorded, JSON (the answer is its coarse part)"),
        Column("decided_at", "TIMESTAMP", False, "UTC"),
    ),
    key=("request_id",),
    doc="every online decision of the bank's service",
)
SCHEMA = TABLE.arrow_schema()
CACHE_SIZE = 20_000  # recent answers kept in memory (about 1 KB each): replays are mostly retries of recent ones

Recorded = tuple[str, str]  # (request hash, the recorded response as JSON text)


class ReusedRequestId(ValueError):
    """A request id already used for a different request."""


class LedgerUnavailable(OSError):
    """The ledger's database did not take a batch: nothing of it was booked (the service answers 503)."""


def request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def replay(found: Recorded, body_hash: str, request_id: str) -> dict:
    """The recorded answer for a request id seen before, or ``ReusedRequestId`` if the request differs."""
    if found[0] != body_hash:
        raise ReusedRequestId(f"request_id {request_id} was already used for a different request")
    return json.loads(found[1])


class Backend(Protocol):
    """Where the ledger's truth is kept. ``lookup`` and ``book`` run in the ledger's one worker thread.
    ``skipped``: records found damaged at start-up (journal lines by segment), reported by the service."""

    skipped: dict[str, list[int]]

    def maybe_known(self, request_id: str) -> bool:
        """False only if ``request_id`` is surely not recorded (asked on the event loop, no I/O)."""

    def lookup(self, request_ids: list[str]) -> dict[str, Recorded]:
        """The recorded ``(hash, response text)`` of those of ``request_ids`` that are recorded."""

    def book(self, rows: list[tuple]) -> list[Recorded]:
        """Record ``rows`` (the table's columns, in order) durably; for each, what is recorded under its
        request id once this returns: its own hash and text, or an earlier booking's."""

    def close(self) -> None: ...


class Ledger:
    """The decision log of the bank's store at ``store`` (a DuckDB file or a SQLAlchemy URL; the ledger
    opens its own handle); ``journal_dir`` holds the DuckDB journal. Used from one event loop:
    ``await record(...)`` -> ``(response, replayed)`` once the decision is durable."""

    def __init__(self, store: str | os.PathLike, journal_dir: str | os.PathLike, cache_size: int = CACHE_SIZE):
        self._db = open_store(store)
        self._db_lock = threading.Lock()  # one call at a time on the store's connection (worker, readers)
        if self._db.columns(TABLE.name) is None:
            try:
                self._db.create_table(TABLE)
            except StoreError:
                if self._db.columns(TABLE.name) is None:  # not a replica starting at the same moment
                    raise
        self.backend: Backend
        if isinstance(self._db, DuckStore):
            from tandem.decide.journal import Journal

            self.backend = Journal(self._db, self._db_lock, journal_dir)
        else:
            from tandem.decide.ledger_sql import SqlBackend

            self.backend = SqlBackend(self._db)
        self.skipped = self.backend.skipped
        self._cache: OrderedDict[str, Recorded] = OrderedDict()
        self._cache_size = cache_size
        # request id -> (hash, future of what gets recorded) while its lookup and booking run
        self._inflight: dict[str, tuple[str, asyncio.Future]] = {}
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="ledger")
        self._lookups = _Batches(self.backend.lookup, self._worker)
        self._books = _Batches(self.backend.book, self._worker)

    async def record(self, request_id: str, body_hash: str, decide: Callable[[], dict]) -> tuple[dict, bool]:
        """``decide()`` -> response dict (with ``kind``, ``link_id``, ``decision``, ``pd``, ``limit``,
        ``model_version``) is called only for a request id not recorded yet."""
        found = self._cache.get(request_id)
        if found is not None:
            self._cache.move_to_end(request_id)
            return replay(found, body_hash, request_id), True
        waiting = self._inflight.get(request_id)
        if waiting is not None:  # the same id again while its first request is being booked
            if waiting[0] != body_hash:
                raise ReusedRequestId(f"request_id {request_id} was already used for a different request")
            return replay(await asyncio.shield(waiting[1]), body_hash, request_id), True
        done = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = (body_hash, done)
        try:
            response, recorded, replayed = await self._decide_once(request_id, body_hash, decide)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: waiters, if any, hear it; nobody else has to
            raise
        finally:
            del self._inflight[request_id]
        self._remember(request_id, recorded)
        done.set_result(recorded)
        if replayed or response is None:
            return replay(recorded, body_hash, request_id), True
        return response, False

    async def _decide_once(self, request_id: str, body_hash: str, decide) -> tuple[dict | None, Recorded, bool]:
        if self.backend.maybe_known(request_id):
            found = (await self._lookups.submit([request_id])).get(request_id)
            if found is not None:
                return None, found, True
        response = decide()
        response["decided_at"] = datetime.now(UTC).isoformat()
        text = json.dumps(response)
        recorded = (await self._books.submit([table_row(request_id, body_hash, response, text)]))[0]
        return response, recorded, recorded != (body_hash, text)  # another process booked it first

    def _remember(self, request_id: str, recorded: Recorded) -> None:
        self._cache[request_id] = recorded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def evaluations_since(self, seconds: float) -> list[tuple]:
        """The fresh evaluations recorded in the last ``seconds``, oldest first, as
        ``(kind, link_id, Outcome, pd, pd band, model version, decided at: epoch seconds)`` (what the
        per-link-id window reloads at start-up; records from before coarse answers are left out)."""
        from tandem.decide.policy import Outcome

        since = (datetime.now(UTC) - timedelta(seconds=seconds)).replace(tzinfo=None)
        with self._db_lock:
            found = self._db.query(
                f"SELECT response FROM {TABLE.name} WHERE decided_at >= TIMESTAMP '{since.isoformat(sep=' ')}' "
                "ORDER BY decided_at"
            )
        out = []
        for text in found.column("response").to_pylist() if found.num_rows else []:
            r = json.loads(text)
            if not r.get("fresh"):
                continue
            outcome = Outcome(r["decision"], r["limit"], r["terms"], r["reasons"], r["offered"], r["zone"])
            at = datetime.fromisoformat(r["decided_at"]).timestamp()
            out.append((r["kind"], r["link_id"], outcome, r["pd"], r["pd_band"], r["model_version"], at))
        return out

    def close(self) -> None:
        """Finish what the worker holds, close the backend (the journal's rest into the store) and the store."""
        self._worker.shutdown(wait=True)
        self.backend.close()
        self._db.close()


class _Batches:
    """Calls ``fn(items)`` in ``worker`` for the items submitted in one turn of the event loop and in the
    turns while the previous call ran (one call at a time); each submitter gets its items' slice of a list
    result (bookings), or the whole of a dict result (lookups, by request id)."""

    def __init__(self, fn: Callable[[list], list | dict], worker: ThreadPoolExecutor):
        self._fn, self._worker = fn, worker
        self._waiting: list[tuple[list, asyncio.Future]] = []
        self._busy = False

    def submit(self, items: list) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((items, future))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._start, loop)
        return future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, []
        items = [item for part, _f in batch for item in part]
        job = loop.run_in_executor(self._worker, self._fn, items)
        job.add_done_callback(lambda j: self._finish(loop, j, batch))

    def _finish(self, loop: asyncio.AbstractEventLoop, job: asyncio.Future, batch: list) -> None:
        exc = None if job.cancelled() else job.exception()
        result: Any = None if exc is not None or job.cancelled() else job.result()
        start = 0
        for part, future in batch:
            start += len(part)
            if future.done():
                continue
            if exc is not None or result is None:
                future.set_exception(exc or asyncio.CancelledError())
            elif isinstance(result, dict):
                future.set_result(result)  # a lookup: one dict, by request id, for the whole batch
            else:
                future.set_result(result[start - len(part) : start])
        if self._waiting:
            loop.call_soon(self._start, loop)
        else:
            self._busy = False


def table_row(request_id: str, body_hash: str, response: dict, text: str) -> tuple:
    """A decision as a row of the ``decisions`` table."""
    return (
        request_id,
        response["kind"],
        response["link_id"],
        response["decision"],
        response["pd"],
        response["limit"],
        response["model_version"],
        body_hash,
        text,
        datetime.fromisoformat(response["decided_at"]).astimezone(UTC).replace(tzinfo=None),
    )

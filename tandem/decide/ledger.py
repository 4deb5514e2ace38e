"""Every decision, recorded durably in the bank's store before it is answered, once per request id.

Writes are grouped: a writer thread commits whatever decisions are waiting in one
transaction (a DuckDB commit costs a few milliseconds whatever its size), and each
request's answer waits for the commit that holds it. A request id seen before returns the
recorded answer (``replayed``) and books nothing; reused with a different request, it is
refused.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from concurrent.futures import Future
from datetime import datetime, timezone

import pyarrow as pa

TABLE = "decisions"
SCHEMA = pa.schema([("request_id", pa.string()), ("kind", pa.string()), ("link_id", pa.string()),
                    ("decision", pa.string()), ("pd", pa.float64()), ("limit_amount", pa.float64()),
                    ("model_version", pa.string()), ("request_hash", pa.string()), ("response", pa.string()),
                    ("decided_at", pa.timestamp("us", tz="UTC"))])


class ReusedRequestId(ValueError):
    """A request id already used for a different request."""


def request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Ledger:
    """The decision log in a DuckDB connection (the bank's store). ``record`` returns a future of
    ``(response, replayed)`` that completes once the decision is durable."""

    def __init__(self, con):
        self._con = con
        con.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (request_id VARCHAR PRIMARY KEY, kind VARCHAR,
                        link_id VARCHAR, decision VARCHAR, pd DOUBLE, limit_amount DOUBLE, model_version VARCHAR,
                        request_hash VARCHAR, response VARCHAR, decided_at TIMESTAMPTZ)""")
        self._known: dict[str, tuple[str, dict | Future]] = {
            rid: (h, json.loads(resp)) for rid, h, resp in
            con.execute(f"SELECT request_id, request_hash, response FROM {TABLE}").fetchall()}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name="ledger")
        self._writer.start()

    def __len__(self) -> int:
        return len(self._known)

    def record(self, request_id: str, body_hash: str, decide) -> Future:
        """``decide()`` -> response dict (with ``kind``, ``link_id``, ``decision``, ``pd``, ``limit``,
        ``model_version``) is called only for a new request id."""
        with self._lock:
            seen = self._known.get(request_id)
            if seen is None:
                done: Future = Future()
                self._known[request_id] = (body_hash, done)
            elif seen[0] != body_hash:
                raise ReusedRequestId(f"request_id {request_id} was already used for a different request")
        if seen is not None:
            return _replay(seen[1])
        try:
            response = decide()
        except BaseException:
            with self._lock:
                del self._known[request_id]        # nothing recorded: a retry may decide afresh
            raise
        response["decided_at"] = datetime.now(timezone.utc).isoformat()
        self._queue.put((request_id, body_hash, response, done))
        return done

    def _write_loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(batch)
            except Exception as exc:  # noqa: BLE001 - every waiting request must hear of the failure
                with self._lock:
                    for rid, _h, _r, done in batch:
                        self._known.pop(rid, None)
                for *_, done in batch:
                    done.set_exception(exc)
                continue
            with self._lock:
                for rid, h, response, _done in batch:
                    self._known[rid] = (h, response)
            for _rid, _h, response, done in batch:
                done.set_result((response, False))

    def _commit(self, batch: list) -> None:
        rows = {name: [] for name in SCHEMA.names}
        for rid, h, r, _ in batch:
            for name, value in (("request_id", rid), ("kind", r["kind"]), ("link_id", r["link_id"]),
                                ("decision", r["decision"]), ("pd", r["pd"]), ("limit_amount", r["limit"]),
                                ("model_version", r["model_version"]), ("request_hash", h),
                                ("response", json.dumps(r)), ("decided_at", datetime.fromisoformat(r["decided_at"]))):
                rows[name].append(value)
        cur = self._con.cursor()
        try:
            cur.register("_batch", pa.table(rows, schema=SCHEMA))
            cur.execute("BEGIN TRANSACTION")
            cur.execute(f"INSERT INTO {TABLE} SELECT * FROM _batch")
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()


def _replay(seen) -> Future:
    """The recorded answer of a request id, marked as replayed (waits if it is still being written)."""
    out: Future = Future()
    if isinstance(seen, Future):
        seen.add_done_callback(lambda f: out.set_exception(f.exception()) if f.exception()
                               else out.set_result((f.result()[0], True)))
    else:
        out.set_result((seen, True))
    return out

"""Every decision, durable before it is answered and kept in the bank's store, once per request id.

The decision path does not wait for the store. Decisions made in one turn of the service's
event loop are appended together to a journal in the node's state folder and fsynced
(about 0.1 ms, where a DuckDB commit costs about a millisecond and, when DuckDB folds its
own log into the file, hundreds), then answered. A writer thread moves them from the
journal into the store's ``decisions`` table (DuckDB or PostgreSQL) in one transaction
every ``COPY_S`` seconds and deletes the journal segments they came from once that
transaction is committed. Starting the ledger first copies whatever an earlier process
left in the journal (a crash, a kill) into the table, and closing it copies the rest, so
after a restart or a clean stop the table holds every decision ever answered.

A request id seen before returns the recorded answer (``replayed``) and books nothing;
reused with a different request, it is refused. The ledger is the table's only writer and
knows every request id in it, so each is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from tandem.atomic import fsync_dir, write_all
from tandem.store import open_store
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
COPY_S = 0.5


class ReusedRequestId(ValueError):
    """A request id already used for a different request."""


def request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Ledger:
    """The decision log: a journal in ``journal_dir`` and the ``decisions`` table of the store at
    ``store`` (the bank's: a DuckDB file or a SQLAlchemy URL; the ledger opens its own handle).
    Used from one event loop: ``await record(...)`` -> ``(response, replayed)`` once the decision is
    durable."""

    def __init__(self, store: str | os.PathLike, journal_dir: str | os.PathLike):
        self._db = open_store(store)
        self._db_lock = threading.Lock()  # one call at a time on the store's connection (writer thread + readers)
        if self._db.columns(TABLE.name) is None:
            self._db.create_table(TABLE)
        # request id -> (request hash, recorded response as JSON text | future of the journal write).
        # Text, not dicts: the garbage collector does not track strings, and full passes over tens of
        # thousands of recorded dicts would stall the service for hundreds of milliseconds.
        known = self._db.read_table(TABLE.name, ["request_id", "request_hash", "response"])
        self._known: dict[str, tuple[str, str | asyncio.Future]] = dict(
            zip(
                known.column("request_id").to_pylist(),
                zip(known.column("request_hash").to_pylist(), known.column("response").to_pylist()),
            )
        )
        self._dir = Path(journal_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        left = _segments(self._dir)
        read = [_read_segment(path) for path in left]
        # journal lines that are not a decision: a torn last line after a crash (never answered), or damage
        self.skipped = {str(path): bad for path, (_rows, bad) in zip(left, read) if bad}
        if self.skipped:
            print(json.dumps({"event": "ledger_skipped_lines", "lines": self.skipped}), file=sys.stderr, flush=True)
        rows = [row for rows_, _bad in read for row in rows_ if row[0] not in self._known]
        self._store(rows, left)  # what an earlier process journaled and never stored
        self._known.update((row[0], (row[7], row[8])) for row in rows)
        self._pending: list[tuple[str, str, dict, asyncio.Future]] = []
        self._lock = threading.Lock()  # guards the open segment and what waits for the store
        self._unstored: list[tuple] = []
        self._segment = int(left[-1].stem) + 1 if left else 0
        self._fd = self._open_segment()
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._copy_loop, daemon=True, name="ledger-store")
        self._writer.start()

    def __len__(self) -> int:
        return len(self._known)

    async def record(self, request_id: str, body_hash: str, decide) -> tuple[dict, bool]:
        """``decide()`` -> response dict (with ``kind``, ``link_id``, ``decision``, ``pd``, ``limit``,
        ``model_version``) is called only for a new request id."""
        seen = self._known.get(request_id)
        if seen is not None:
            if seen[0] != body_hash:
                raise ReusedRequestId(f"request_id {request_id} was already used for a different request")
            recorded = seen[1]
            return (
                await asyncio.shield(recorded) if isinstance(recorded, asyncio.Future) else json.loads(recorded)
            ), True
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._known[request_id] = (body_hash, done)
        try:
            response = decide()
        except BaseException:
            del self._known[request_id]  # nothing recorded: a retry may decide afresh
            raise
        response["decided_at"] = datetime.now(UTC).isoformat()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((request_id, body_hash, response, done))
        return await asyncio.shield(done), False

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

    def _flush(self) -> None:
        """Journal what this turn of the loop decided (one write, one fsync), then answer it."""
        batch, self._pending = self._pending, []
        texts = [json.dumps(r) for _rid, _h, r, _done in batch]
        data = "".join(
            json.dumps({"request_id": rid, "request_hash": h, "response": text}, separators=(",", ":")) + "\n"
            for (rid, h, _r, _done), text in zip(batch, texts)
        ).encode()
        rows = [_row(rid, h, r, text) for (rid, h, r, _done), text in zip(batch, texts)]
        try:
            with self._lock:
                _append_durably(self._fd, data)
                self._unstored += rows
        except OSError as exc:  # every waiting request hears of the failure; nothing was answered
            for rid, _h, _r, done in batch:
                self._known.pop(rid, None)
                done.set_exception(exc)
            return
        for (rid, h, response, done), text in zip(batch, texts):
            self._known[rid] = (h, text)
            done.set_result(response)

    def _open_segment(self) -> int:
        fd = os.open(self._dir / f"{self._segment}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fsync_dir(self._dir)  # the new segment's name survives a power loss, not only its data
        return fd

    def _copy_loop(self) -> None:
        while not self._closing.wait(COPY_S):
            self.copy()

    def copy(self) -> None:
        """Move what the journal holds into the store: start a new segment, then commit the old ones'
        decisions in one transaction and delete those segments. On failure they stay for the next try."""
        with self._lock:
            rows, self._unstored = self._unstored, []
            if not rows:
                return
            os.close(self._fd)
            self._segment += 1
            self._fd = self._open_segment()
            done = [p for p in _segments(self._dir) if int(p.stem) < self._segment]
        try:
            self._store(rows, done)
        except Exception:  # noqa: BLE001 - the journal still holds them; the next round retries
            with self._lock:
                self._unstored = rows + self._unstored

    def _store(self, rows: list[tuple], segments: list[Path]) -> None:
        """Commit ``rows`` (the table's columns, in order) and delete the journal ``segments`` they came from."""
        if rows:
            columns = [pa.array(col, f.type) for col, f in zip(zip(*rows), SCHEMA)]
            with self._db_lock:
                self._db.append(TABLE.name, pa.Table.from_arrays(columns, schema=SCHEMA))
        for path in segments:
            path.unlink()

    def close(self) -> None:
        """Stop the writer and move the rest of the journal into the store."""
        self._closing.set()
        self._writer.join()
        self.copy()
        os.close(self._fd)
        self._db.close()


def _append_durably(fd: int, data: bytes) -> None:
    """Append ``data`` and fsync it; on failure cut the file back, so a decision that was not answered
    is not in the journal either (a restart would otherwise store it)."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        write_all(fd, data)
        os.fdatasync(fd)
    except OSError:
        os.ftruncate(fd, start)
        raise


def _segments(folder: Path) -> list[Path]:
    """The journal's segments, oldest first (``0.jsonl``, ``1.jsonl``, ...)."""
    return sorted((p for p in folder.glob("*.jsonl") if p.stem.isdigit()), key=lambda p: int(p.stem))


def _row(request_id: str, body_hash: str, response: dict, text: str) -> tuple:
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


def _read_segment(path: Path) -> tuple[list[tuple], list[int]]:
    """A journal segment's decisions as table rows, and the (1-based) numbers of the lines that are not
    one: a torn last line (a crash mid-write: never answered) or damage, counted and reported."""
    out, bad = [], []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = json.loads(line)
            out.append(
                _row(entry["request_id"], entry["request_hash"], json.loads(entry["response"]), entry["response"])
            )
        except (ValueError, KeyError, TypeError):
            bad.append(n)
    return out, bad

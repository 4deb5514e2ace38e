"""The decision ledger on a DuckDB store: a fsynced journal in front of the ``decisions`` table.

A DuckDB commit costs about a millisecond and, when DuckDB folds its own log into the file,
hundreds; an fsynced append about 0.1 ms. So a batch of decisions is appended to a journal in the
node's state folder and fsynced, then answered, and a writer thread moves them from the journal
into the table in one transaction every ``COPY_S`` seconds and deletes the journal segments they came
from once that transaction is committed. Start-up first copies whatever an earlier process left in
the journal (a crash, a kill) into the table, and closing copies the rest, so after a restart or a
clean stop the table holds every decision ever answered.

A DuckDB file is one process's: that process is the table's only writer. It keeps the 8-byte hash
of every request id in the table (``maybe_known``: a new id is answered without touching the store)
and reads a recorded answer by its request id only when that hash is known (a replay, a reuse).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa

from tandem.atomic import fsync_dir, write_all
from tandem.decide.ledger import SCHEMA, TABLE, Recorded, table_row

COPY_S = 0.5
MERGE_IDS = 100_000  # ids booked since the last merge kept in a set before they join the sorted array


class Journal:
    """The ``Backend`` of a ``Ledger`` on the DuckDB store ``db`` (``db_lock`` guards its connection),
    journaling to ``folder``. ``skipped``: journal lines that were not a decision, by segment."""

    def __init__(self, db, db_lock: threading.Lock, folder: str | os.PathLike):
        self._db, self._db_lock = db, db_lock
        hashes = [
            np.fromiter((hash(r) for r in batch.column(0).to_pylist()), np.int64, batch.num_rows)
            for batch in db.iter_batches(TABLE.name, columns=["request_id"])
        ]
        self._ids = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, np.int64)  # sorted
        self._recent: set[int] = set()
        self._dir = Path(folder)
        self._dir.mkdir(parents=True, exist_ok=True)
        left = _segments(self._dir)
        read = [_read_segment(path) for path in left]
        # journal lines that are not a decision: a torn last line after a crash (never answered), or damage
        self.skipped = {str(path): bad for path, (_rows, bad) in zip(left, read) if bad}
        if self.skipped:
            print(json.dumps({"event": "ledger_skipped_lines", "lines": self.skipped}), file=sys.stderr, flush=True)
        rows = [row for rows_, _bad in read for row in rows_]
        stored = self._read([row[0] for row in rows if self.maybe_known(row[0])])
        rows = [row for row in rows if row[0] not in stored]
        self._store(rows, left)  # what an earlier process journaled and never stored
        self._recent.update(hash(row[0]) for row in rows)
        self._lock = threading.Lock()  # guards the open segment and what waits for the store
        self._unstored: list[tuple] = []
        self._unstored_by_id: dict[str, Recorded] = {}  # journaled, not yet committed to the table
        self._segment = int(left[-1].stem) + 1 if left else 0
        self._fd = self._open_segment()
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._copy_loop, daemon=True, name="ledger-store")
        self._writer.start()

    def maybe_known(self, request_id: str) -> bool:
        h = hash(request_id)
        if h in self._recent:
            return True
        ids = self._ids  # read once: the worker may swap in a merged array (after adding, before removing)
        at = int(np.searchsorted(ids, h))
        return at < len(ids) and int(ids[at]) == h

    def lookup(self, request_ids: list[str]) -> dict[str, Recorded]:
        with self._lock:
            out = {r: self._unstored_by_id[r] for r in request_ids if r in self._unstored_by_id}
        out.update(self._read([r for r in request_ids if r not in out]))
        return out

    def book(self, rows: list[tuple]) -> list[Recorded]:
        """Journal ``rows`` (one write, one fsync); on failure nothing of them is journaled or booked."""
        data = "".join(
            json.dumps({"request_id": r[0], "request_hash": r[7], "response": r[8]}, separators=(",", ":")) + "\n"
            for r in rows
        ).encode()
        with self._lock:
            _append_durably(self._fd, data)
            self._unstored += rows
            self._unstored_by_id.update((r[0], (r[7], r[8])) for r in rows)
        self._recent.update(hash(r[0]) for r in rows)
        if len(self._recent) > MERGE_IDS:
            merged = list(self._recent)
            self._ids = np.union1d(self._ids, np.array(merged, np.int64))
            self._recent.difference_update(merged)
        return [(r[7], r[8]) for r in rows]

    def _read(self, request_ids: list[str]) -> dict[str, Recorded]:
        """The recorded ``(hash, text)`` of those of ``request_ids`` in the table."""
        out: dict[str, Recorded] = {}
        for start in range(0, len(request_ids), 1000):
            part = request_ids[start : start + 1000]
            marks = ", ".join("?" for _ in part)
            with self._db_lock:
                found = self._db.query(
                    f"SELECT request_id, request_hash, response FROM {TABLE.name} WHERE request_id IN ({marks})", part
                )
            if found.num_rows:
                cols = [found.column(c).to_pylist() for c in ("request_id", "request_hash", "response")]
                out.update((rid, (h, text)) for rid, h, text in zip(*cols))
        return out

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
            return
        with self._lock:
            for row in rows:
                self._unstored_by_id.pop(row[0], None)

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


def _read_segment(path: Path) -> tuple[list[tuple], list[int]]:
    """A journal segment's decisions as table rows, and the (1-based) numbers of the lines that are not
    one: a torn last line (a crash mid-write: never answered) or damage, counted and reported."""
    out, bad = [], []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = json.loads(line)
            out.append(
                table_row(entry["request_id"], entry["request_hash"], json.loads(entry["response"]), entry["response"])
            )
        except (ValueError, KeyError, TypeError):
            bad.append(n)
    return out, bad

"""The audit log: one JSON line per message that crosses a party boundary, fsynced, append-only,
hash-chained.

Each line carries ``prev``, the SHA-256 (hex) of the line before it (``GENESIS`` for the first), so
editing, inserting or deleting a line breaks the chain at that line (``verify_audit``). A write that
cannot complete (a full disk) is cut back and raises: no line is ever merged with the next, and the
caller answers an error instead of answering unaudited.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from tandem.atomic import fsync_dir, write_all
from tandem.errors import InputError

GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    """The chain hash of one audit line (without its newline): SHA-256, 64 hex characters."""
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    """Append-only JSONL at ``path`` (created with its folder).

    ``record`` writes the entry at once (it survives a crash of the process) and raises ``OSError`` if
    it cannot be written whole. It is fsynced at once too, or — with ``sync_each=False``, for online
    services — by a background thread in group commits: ``await durable(seq)`` with the number
    ``record`` returned waits for the fsync of the batch the line is in, so an answer never leaves
    before its line is durable, and the event loop never waits for the disk itself. A failed fsync
    breaks the log: every later ``record`` and ``durable`` raises.
    """

    def __init__(self, path: str | os.PathLike, node: str, sync_each: bool = True):
        self.path = Path(path)
        self.node = node
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if created:
            fsync_dir(self.path.parent)
        self._prev = self._last_hash()
        self._size = os.lseek(self._fd, 0, os.SEEK_END)  # bytes in the file: where a failed write is cut back to
        self._lock = threading.Lock()
        self._sync_each = sync_each
        self._written = 0  # lines written by this process; ``_synced`` of them are durable
        self._synced = 0
        self._error: OSError | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._dirty = threading.Event()
        self._closed = False
        if not sync_each:
            threading.Thread(target=self._sync_loop, daemon=True, name="audit-sync").start()

    def _last_hash(self) -> str:
        """The hash of the last complete line; a torn tail (a crash mid-write, never answered) is cut off."""
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0:
            return GENESIS
        tail, at = b"", size
        while at > 0 and tail.count(b"\n") < 2:
            step = min(65536, at)
            at -= step
            tail = os.pread(self._fd, step, at) + tail
        if not tail.endswith(b"\n"):
            cut = at + tail.rfind(b"\n") + 1  # 0: the whole file is one torn line
            os.ftruncate(self._fd, cut)
            os.fsync(self._fd)
            return self._last_hash() if cut else GENESIS
        lines = tail[:-1].split(b"\n")
        return line_hash(lines[-1])

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            with self._lock:
                upto = self._written
            try:
                os.fdatasync(self._fd)  # the data and the size: what a reader needs of an append
            except OSError as exc:
                if self._closed:
                    return
                self._fail(exc)
                return
            except BaseException as exc:  # noqa: BLE001 - never die silently: the waiters hear of it
                self._fail(OSError(f"audit fsync thread failed: {exc}"))
                return
            self._release(upto)

    def _fail(self, exc: OSError) -> None:
        with self._lock:
            self._error = exc
            waiters, self._waiters = self._waiters, []
        _wake(waiters, exc)

    def _release(self, upto: int) -> None:
        with self._lock:
            self._synced = max(self._synced, upto)
            ready = [w for w in self._waiters if w[0] <= self._synced]
            self._waiters = [w for w in self._waiters if w[0] > self._synced]
        _wake(ready, None)

    def record(
        self, *, direction: str, peer: str, protocol: str, session: str, message: str, nbytes: int, records: int
    ) -> int:
        """Append one entry; -> its number, for ``durable``. Raises ``OSError`` if it was not written whole."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "node": self.node,
            "direction": direction,
            "peer": peer,
            "protocol": protocol,
            "session": session,
            "message": message,
            "bytes": nbytes,
            "records": records,
        }
        with self._lock:
            if self._error is not None:
                raise OSError(f"{self.path}: audit log unusable after a failed fsync ({self._error})")
            entry["prev"] = self._prev
            line = json.dumps(entry, separators=(",", ":")).encode()
            data = line + b"\n"
            try:
                write_all(self._fd, data)
                if self._sync_each:
                    os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, self._size)  # no torn line for the next one to merge with
                raise
            self._size += len(data)
            self._prev = line_hash(line)
            self._written += 1
            seq = self._written
            if self._sync_each:
                self._synced = seq
        if not self._sync_each and not self._dirty.is_set():
            self._dirty.set()
        return seq

    async def durable(self, seq: int) -> None:
        """Wait until entry ``seq`` (from ``record``) is fsynced; raises ``OSError`` if it never will be."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._error is not None:
                raise OSError(f"{self.path}: audit log unusable after a failed fsync ({self._error})")
            if seq <= self._synced:
                return
            fut = loop.create_future()
            self._waiters.append((seq, loop, fut))
        await fut

    def close(self) -> None:
        self._closed = True
        if not self._sync_each:
            with self._lock:
                upto = self._written
            try:
                os.fsync(self._fd)
                self._release(upto)
            except OSError as exc:
                self._fail(exc)
        os.close(self._fd)


def _wake(waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]], exc: BaseException | None) -> None:
    """Settle the waiters' futures: one wake-up of each event loop per batch, not one per waiter."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for _seq, loop, fut in waiters:
        by_loop.setdefault(loop, []).append(fut)
    for loop, futs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futs, exc)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _settle(futs: list[asyncio.Future], exc: BaseException | None) -> None:
    for fut in futs:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


def read_audit(path: str | os.PathLike) -> tuple[list[dict], int]:
    """All complete entries of an audit log and the number of torn lines skipped."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read audit log ({exc.strerror})") from None
    entries, torn = [], 0
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            torn += 1
    return entries, torn


def verify_audit(path: str | os.PathLike) -> tuple[int, int | None, str]:
    """Check the hash chain of an audit log: -> ``(lines, first_bad, why)``; ``first_bad`` is the 1-based
    number of the first line that is not valid JSON or whose ``prev`` is not the hash of the line before
    (``None`` when the whole log is intact)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read audit log ({exc.strerror})") from None
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a torn tail is checked (and fails) like any other line
    prev, n = GENESIS, 0
    for n, line in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            return n, n, "not a JSON line"
        if not isinstance(entry, dict) or entry.get("prev") != prev:
            return n, n, "its prev is not the hash of the line before (a line edited, inserted or deleted)"
        prev = line_hash(line)
    return n, None, ""


def reconcile(ours: list[dict], theirs: list[dict]) -> list[tuple[str, str, str, int, int, int, int]]:
    """Both ends' logs of the same link, side by side: per UTC day, direction (as ``ours`` saw it) and
    message, ``(day, direction, message, messages ours, messages theirs, records ours, records theirs)``.
    What one side sent the other must have received: a row whose counts differ is a message lost,
    added or altered on the way (or a log that was). Sorted by day, direction, message."""
    peers = {e["node"] for e in theirs}
    totals: dict[tuple[str, str, str], list[int]] = {}
    for side, entries in ((0, ours), (1, theirs)):
        for e in entries:
            if side == 0 and e["peer"] not in peers:
                continue  # our traffic with other partners
            sent = (e["direction"] == "out") == (side == 0)  # seen from ours: what we sent / they received
            key = (e["time"][:10], "sent" if sent else "received", e["message"])
            row = totals.setdefault(key, [0, 0, 0, 0])
            row[side] += 1
            row[2 + side] += int(e["records"])
    return [(day, way, message, *row) for (day, way, message), row in sorted(totals.items())]  # type: ignore[misc]

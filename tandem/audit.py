"""The audit log: one JSON line per message that crosses a party boundary, fsynced, append-only.

A crash can at worst leave a torn last line, which ``read_audit`` skips and counts.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from tandem.errors import InputError


class AuditLog:
    """Append-only JSONL at ``path`` (created with its folder).

    Each entry is written at once (it survives a crash of the process); it is fsynced at
    once too, or — with ``sync_each=False``, for online services — by a background thread
    within ``SYNC_S``, so a request never waits for the disk.
    """

    SYNC_S = 0.02

    def __init__(self, path: str | os.PathLike, node: str, sync_each: bool = True):
        self.path = Path(path)
        self.node = node
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self._sync_each = sync_each
        self._dirty = threading.Event()
        if not sync_each:
            threading.Thread(target=self._sync_loop, daemon=True, name="audit-sync").start()

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(self.SYNC_S)
            self._dirty.clear()
            try:
                os.fsync(self._fd)
            except OSError:  # closed: the node is stopping
                return

    def record(
        self, *, direction: str, peer: str, protocol: str, session: str, message: str, nbytes: int, records: int
    ) -> None:
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
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            if self._sync_each:
                os.fsync(self._fd)
            else:
                self._dirty.set()

    def close(self) -> None:
        os.close(self._fd)


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

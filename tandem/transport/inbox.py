"""One session's inbox: frames waiting for the session's protocol, bounded in bytes, with back-pressure.

A frame that does not fit waits (the peer's ``Deliver`` call waits with it: its next frame cannot come
before this one is answered) until the session takes frames out, the session ends, or ``wait_s`` pass.
Only one frame per session may wait: a legitimate peer sends one frame at a time per session, so a
second one arriving while the first waits is a flood and is refused at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class Inbox:
    """Frames in arrival order, at most ``cap_bytes`` bytes of them (one frame always fits when empty)."""

    def __init__(self, cap_bytes: int):
        self.cap_bytes = cap_bytes
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._waiting = False
        self._closed = False
        self._cond = threading.Condition()

    def put(self, frame: bytes, wait_s: float) -> str | None:
        """Queue ``frame``, waiting up to ``wait_s`` seconds for room; -> ``None``, or why it was refused."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            if self._closed:
                return "the session has ended"
            if self._waiting:  # even one that fits: it would overtake the waiting one
                return "another frame of this session is already waiting for room in its inbox"
            if not self._fits(frame):
                self._waiting = True
                try:
                    while not self._closed and not self._fits(frame):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return (
                                f"the session's inbox is full ({self._bytes} bytes waiting, "
                                f"[limits] inbox_bytes = {self.cap_bytes}) and was not read for {wait_s:g} s"
                            )
                        self._cond.wait(left)
                finally:
                    self._waiting = False
                if self._closed:
                    return "the session has ended"
            self._frames.append(frame)
            self._bytes += len(frame)
            self._cond.notify_all()
            return None

    def get(self, timeout: float | None = None) -> bytes | None:
        """The oldest frame, waiting up to ``timeout`` seconds (``0``: not at all); ``None`` if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._frames:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            frame = self._frames.popleft()
            self._bytes -= len(frame)
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        """The session ended: a frame waiting for room is refused; queued frames are dropped."""
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._bytes = 0
            self._cond.notify_all()

    @property
    def nbytes(self) -> int:
        with self._cond:
            return self._bytes

    def _fits(self, frame: bytes) -> bool:
        return not self._frames or self._bytes + len(frame) <= self.cap_bytes

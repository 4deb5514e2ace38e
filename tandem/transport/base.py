"""The channel interface and the in-memory pair."""

from __future__ import annotations

import queue
from typing import Protocol

from tandem.errors import TandemError

KEEPALIVE_S = 2.0  # how often a session waiting for its peer checks that the peer is alive ([peers.NAME] keepalive_s)


class TransportError(TandemError):
    """The peer cannot be reached, refused us, or went silent."""


class Channel(Protocol):
    """Frames to and from one peer within one session. ``send`` takes an encoded frame."""

    peer: str

    def send(self, frame: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes:
        """The next frame from the peer; ``TransportError`` after ``timeout`` seconds of silence."""

    def poll(self) -> bytes | None:
        """The next frame if one is waiting, else ``None`` (never blocks)."""

    def close(self) -> None:
        """Release what this session's channel holds; the session sends and receives no more."""


class MemoryChannel:
    """One end of an in-process pair; ``sent`` keeps every frame this end sent (for byte-level tests)."""

    def __init__(self, peer: str, inbox: queue.Queue, outbox: queue.Queue):
        self.peer = peer
        self._inbox, self._outbox = inbox, outbox
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        self._outbox.put(frame)

    def recv(self, timeout: float) -> bytes:
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TransportError(f"peer {self.peer} sent nothing for {timeout:g} s") from None

    def poll(self) -> bytes | None:
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """Nothing to release: the queues go when both ends are dropped."""


def memory_pair(a: str, b: str) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels: the first is ``a``'s end (its peer is ``b``), the second ``b``'s."""
    ab: queue.Queue[bytes] = queue.Queue()
    ba: queue.Queue[bytes] = queue.Queue()
    return MemoryChannel(b, ba, ab), MemoryChannel(a, ab, ba)

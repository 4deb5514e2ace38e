"""Frames of one session delivered in order by a thread of their own, up to ``depth`` ahead of the
protocol: over a WAN a blocking call per frame costs a round trip and the frame's transfer time,
during which the node would otherwise stop working (blinding, summing) until the peer has it.

A delivery that fails stops all later ones; the failure is raised to the protocol at its next send,
receive or ``flush``, so that it sees the same one-line error as before, only a few frames later.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from tandem.transport.base import TransportError

SEND_AHEAD = 4  # frames (each at most [limits] max_frame_bytes) waiting to go, per session


class OrderedSender:
    """``put(frame)`` returns once the frame is queued (blocking while ``depth`` frames wait: the
    peer's pace still holds the protocol back, a little later); ``deliver(frame)`` runs on the
    sender's thread, one frame at a time, in order."""

    def __init__(self, deliver: Callable[[bytes], None], name: str, depth: int = SEND_AHEAD):
        self._deliver = deliver
        self._frames: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.failure: TransportError | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise the failure of an earlier delivery, if one failed."""
        if self.failure is not None:
            raise self.failure

    def put(self, frame: bytes) -> None:
        self.check()
        self._frames.put(frame)

    def flush(self, timeout: float) -> None:
        """Wait until every queued frame is delivered (``TransportError`` if one failed or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while self._frames.unfinished_tasks and self.failure is None:
            if time.monotonic() > deadline:
                raise TransportError(f"frames still waiting to be delivered after {timeout:g} s")
            time.sleep(0.005)
        self.check()

    def stop(self) -> None:
        """No more frames; the thread ends once those queued are delivered (or skipped after a failure)."""
        self._frames.put(None)

    def _run(self) -> None:
        while (frame := self._frames.get()) is not None:
            try:
                if self.failure is None:
                    self._deliver(frame)
            except TransportError as exc:
                self.failure = exc
            finally:
                self._frames.task_done()
        self._frames.task_done()

"""Resuming an interrupted PSI run from the last chunk both sides completed (sans-I/O part).

A run that stops part-way (a node killed, the network gone) leaves on each side a checkpoint
(``tandem.link.checkpoint`` keeps it under the node's state folder, one per peer, entity and key):
``Saved`` below, the secret scalar, the salt, the sending order and a digest of the values, and per
completed chunk, appended as it completes, four streams of 32-byte points:

    sent       a*H(x)    our own chunks as blinded and sent            (resent if the peer lost them)
    back       b*a*H(x)  what the peer returned for our chunks          (the doubly blinded own set)
    reblinded  a*b*H(y)  the peer's chunks, blinded again by us          (resent if the peer lost them)
    received   b*H(y)    the peer's chunks as received                  (only when keeping incremental state)

The rerun of the same link sends ``Token(id, sent, back, received)`` (chunks completed per stream)
in ``KeyStart.resume``. Both sides compute ``agree`` on the same two tokens and sizes, so both
resume or both start afresh: they resume only if the ids are equal (the id hashes the salt and both
set sizes, so a checkpoint of another run, or one whose sizes changed, never matches), the sizes are
the ones the checkpoint was made with, and neither side claims more than the other could have sent
or returned (``peer.received <= mine.sent``, ``mine.back <= peer.received``, and the same the other
way). A side whose values changed (digest), or whose chunk size, role or mode did, sends no token.
Anything else starts afresh with a fresh secret, salt and order: two runs never mix.

On resume each side resends, from its checkpoint, its own chunks from ``peer.received`` on and the
re-blinded peer chunks from ``peer.back`` on; it expects the peer's chunks from ``mine.received``
and the peer's re-blinded ones from ``mine.back``; then the run goes on as usual. The peer learns
nothing it would not have learnt from the interrupted run finishing: the resent bytes are the same
bytes, and the peer's chunks still total its announced size under our one secret. Count-only and
incremental (``Delta``) runs keep no checkpoint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

STREAMS = ("sent", "back", "received", "reblinded")
_TOKEN = re.compile(r"([0-9a-f]{32})\.([0-9]{1,10})\.([0-9]{1,10})\.([0-9]{1,10})")


@dataclass(frozen=True)
class Token:
    """What a side holds of an interrupted run: its id and how many chunks it completed per stream."""

    id: str
    sent: int
    back: int
    received: int

    def encode(self) -> str:
        return f"{self.id}.{self.sent}.{self.back}.{self.received}"

    @classmethod
    def parse(cls, text: str) -> Token | None:
        """``None`` for ``""`` (no checkpoint); ``ValueError`` for anything but ``id.sent.back.received``."""
        if not text:
            return None
        m = _TOKEN.fullmatch(text)
        if m is None:
            raise ValueError("malformed KeyStart: resume token is not id.sent.back.received")
        return cls(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))


@dataclass
class Saved:
    """One side's checkpoint of a run: secrets, order, and the points per completed chunk of each stream.

    ``order`` shape ``(own_size,)`` int64 (indices into the values, in sending order); ``lengths[stream]``
    the points in each completed chunk; ``last[stream]`` whether its last chunk has been completed.
    """

    id: str
    secret: bytes
    salt: bytes
    digest: str
    chunk: int
    initiator: bool
    keep: bool
    own_size: int
    peer_size: int
    order: np.ndarray
    lengths: dict[str, list[int]]
    last: dict[str, bool]

    @classmethod
    def fresh(
        cls,
        salt: bytes,
        secret: bytes,
        values: np.ndarray,
        order: np.ndarray,
        peer_size: int,
        chunk: int,
        initiator: bool,
        keep: bool,
    ) -> Saved:
        """The checkpoint of a run starting now: no chunk completed yet."""
        sizes = (len(values), peer_size) if initiator else (peer_size, len(values))
        return cls(
            run_id(salt, *sizes),
            secret,
            salt,
            value_digest(values),
            chunk,
            initiator,
            keep,
            len(values),
            peer_size,
            order,
            {s: [] for s in STREAMS},
            {s: False for s in STREAMS},
        )

    def token(self) -> Token:
        return Token(self.id, len(self.lengths["sent"]), len(self.lengths["back"]), len(self.lengths["reblinded"]))

    def points(self, stream: str, chunks: int | None = None) -> int:
        """Points in the first ``chunks`` (all if ``None``) completed chunks of ``stream``."""
        return sum(self.lengths[stream][:chunks])


class Checkpoint(Protocol):
    """Where one side keeps a run's completed chunks (``tandem.link.checkpoint``); ``saved`` is what an
    earlier run left (``None`` if nothing usable)."""

    saved: Saved | None

    def begin(self, saved: Saved) -> None:
        """A fresh run: replace whatever was kept with ``saved`` (no chunks yet)."""

    def append(self, stream: str, points: bytes, last: bool) -> None:
        """One more completed chunk of ``stream``, durable before this returns."""

    def read(self, stream: str, start: int, stop: int) -> bytes:
        """Points ``[start, stop)`` of ``stream``."""

    def discard(self, why: str) -> None:
        """Drop the checkpoint, saying ``why`` in one line."""


def run_id(salt: bytes, initiator_size: int, responder_size: int) -> str:
    """The checkpoint id both sides derive for one run (32 hex chars)."""
    sizes = f"{initiator_size}:{responder_size}".encode()
    return hashlib.sha256(b"tandem/psi/resume/v1\x00" + salt + sizes).hexdigest()[:32]


def value_digest(values: Sequence[str] | np.ndarray, block: int = 65_536) -> str:
    """SHA-256 (hex) over the values in order: a checkpoint is only used for exactly the same values."""
    h = hashlib.sha256(f"{len(values)}\n".encode())
    for s in range(0, len(values), block):
        h.update("\n".join(values[s : s + block]).encode() + b"\n")
    return h.hexdigest()


def unusable(saved: Saved, digest: str, size: int, chunk: int, initiator: bool, keep: bool) -> str | None:
    """Why ``saved`` cannot serve this side's run (``None``: it can, if the peer agrees)."""
    if saved.digest != digest or saved.own_size != size:
        return "this side's values changed since the checkpoint"
    if saved.chunk != chunk or saved.initiator != initiator or saved.keep != keep:
        return "the chunk size, role or mode changed since the checkpoint"
    return None


def disagree(saved: Saved, peer: Token | None, own_size: int, peer_size: int) -> str | None:
    """Why the two sides cannot resume (``None``: both resume). Both sides reach the same answer."""
    if peer is None:
        return "the peer holds no checkpoint of this run"
    mine = saved.token()
    if peer.id != mine.id:
        return "the peer's checkpoint is of another run"
    sizes = (own_size, peer_size) if saved.initiator else (peer_size, own_size)
    if saved.peer_size != peer_size or run_id(saved.salt, *sizes) != saved.id:
        return "the set sizes changed since the checkpoint"
    if not (peer.received <= mine.sent and mine.back <= peer.received and mine.received <= peer.sent):
        return "the peer claims chunks this side never sent or returned"
    if peer.back > mine.received:
        return "the peer claims chunks this side never sent or returned"
    return None


def resend_plan(lengths: list[int], start: int, last: bool) -> list[tuple[int, int, int, bool]]:
    """``(seq, first point, end point, last)`` of the kept chunks ``start`` on, given each one's ``lengths``."""
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    end = len(lengths) - 1
    return [(i, int(offsets[i]), int(offsets[i + 1]), last and i == end) for i in range(start, len(lengths))]

"""ECDH-PSI for one (entity, key), as a sans-I/O state machine; both roles run the same machine.

Flow, per side (``a`` our secret, ``b`` the peer's, ``H`` hash to a point):

    KeyStart(nonce, size)  ->        both derive the salt from the two nonces
    Blinded(seq, a*H(x))   ->        our records in a random order, in chunks
                           <-  Blinded(seq, b*H(y))
    Reblinded(seq, a*b*H(y)) ->      the peer's chunk, blinded again, same order
                           <-  Reblinded(seq, b*a*H(x))   (link mode; sorted in count-only)
    KeyDone(|X ∩ Y|)       <->       both must have found the same size

In link mode each side learns which of its own records are in the intersection and a
shared opaque value per match (from which the link id is derived); in count-only mode the
re-blinded values come back sorted, so each side learns only the size.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tandem.crypto.psi_group import POINT_BYTES, InvalidPoint, link_digest, run_salt
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.wire import Blinded, KeyDone, KeyStart, Message, Reblinded

DEFAULT_CHUNK = 32_768          # points per message: 1 MiB of payload


class Blinder(Protocol):
    """Where the scalar multiplications run (inline, or spread over a process pool)."""

    def hash_and_blind(self, secret: bytes, key: str, salt: bytes, values: list[str]) -> bytes: ...

    def blind(self, secret: bytes, points: bytes) -> bytes: ...


class State(enum.Enum):
    IDLE = "idle"
    STARTED = "started"          # KeyStart sent, peer's not yet seen
    EXCHANGING = "exchanging"    # chunks flowing both ways
    MATCHED = "matched"          # KeyDone sent, waiting for the peer's
    DONE = "done"
    ERROR = "error"


@dataclass
class KeyResult:
    """What one side learned. ``positions`` index the caller's ``values``; ``link_ids`` align with them."""

    intersection: int
    positions: np.ndarray | None = None     # shape (k,), int64; None in count-only mode
    link_ids: list[str] | None = None       # 32 hex chars each


class KeyRun:
    """One side of one (entity, key) PSI run.

    ``values`` are this side's normalised, de-duplicated identifiers (shape ``(n,)``);
    ``initiator`` says whose nonce comes first in the salt. Call ``start()``, then feed
    every peer message to ``receive()`` and call ``poll()`` whenever ``has_work()``;
    send everything they return. ``result`` is set once ``state is State.DONE``.
    """

    def __init__(self, session: str, entity: str, key: str, values: list[str], *, initiator: bool,
                 count_only: bool, secret: bytes, blinder: Blinder, chunk: int = DEFAULT_CHUNK):
        self.session, self.entity, self.key = session, entity, key
        self.initiator, self.count_only = initiator, count_only
        self._secret, self._blinder, self._chunk = secret, blinder, chunk
        self._order = np.random.default_rng(int.from_bytes(os.urandom(8), "big")).permutation(len(values))
        self._values = [values[i] for i in self._order]      # sent in a random order: position says nothing
        self._nonce = os.urandom(16)
        self.state = State.IDLE
        self.result: KeyResult | None = None
        self._salt: bytes | None = None
        self._peer_size = 0
        self._sent_own = 0                       # own values blinded and sent
        self._sent_last = False
        self._own_double: list[bytes] = []       # b*a*H(x), per own chunk (link mode: in our order)
        self._own_double_n = 0
        self._peer_double: list[bytes] = []      # a*b*H(y)
        self._peer_received = 0
        self._peer_last = False
        self._peer_seq = 0
        self._own_seq_back = 0
        self._own_back_last = False
        self._peer_done: int | None = None

    # --- the sans-I/O surface ------------------------------------------------------------

    def start(self) -> list[Message]:
        self._expect(State.IDLE, "start")
        self.state = State.STARTED
        return [KeyStart(self.session, self.entity, self.key, self._nonce.hex(), len(self._values))]

    def has_work(self) -> bool:
        return self.state is State.EXCHANGING and not self._sent_last

    def poll(self) -> list[Message]:
        """Blind and emit the next chunk of our own set (an empty set sends one empty chunk)."""
        if not self.has_work():
            return self._maybe_finish()
        part = self._values[self._sent_own:self._sent_own + self._chunk]
        seq = self._sent_own // self._chunk
        points = self._blinder.hash_and_blind(self._secret, f"{self.entity}:{self.key}", self._salt, part) \
            if part else b""
        self._sent_own += len(part)
        self._sent_last = self._sent_own == len(self._values)
        out: list[Message] = [Blinded(self.session, self.entity, self.key, seq, self._sent_last, points)]
        return out + self._maybe_finish()

    def receive(self, msg: Message) -> list[Message]:
        if self.state in (State.DONE, State.ERROR):
            raise LocalProtocolError(f"{self.key}: run is over ({self.state.value}); got {msg.name}")
        if getattr(msg, "entity", self.entity) != self.entity or getattr(msg, "key", self.key) != self.key:
            return self._fail(f"expected a message for {self.entity}/{self.key}, got {msg.name} for "
                              f"{getattr(msg, 'entity', '?')}/{getattr(msg, 'key', '?')}")
        handler = {KeyStart: self._on_start, Blinded: self._on_blinded, Reblinded: self._on_reblinded,
                   KeyDone: self._on_done}.get(type(msg))
        if handler is None:
            return self._fail(f"unexpected {msg.name} during the {self.key} run")
        return handler(msg)

    # --- handlers ------------------------------------------------------------------------

    def _on_start(self, msg: KeyStart) -> list[Message]:
        if self.state is not State.STARTED:
            return self._fail(f"unexpected KeyStart in state {self.state.value}")
        try:
            peer_nonce = bytes.fromhex(msg.nonce)
        except ValueError:
            return self._fail("malformed KeyStart: nonce is not hex")
        if len(peer_nonce) != 16 or msg.size < 0:
            return self._fail("malformed KeyStart: bad nonce or size")
        first, second = (self._nonce, peer_nonce) if self.initiator else (peer_nonce, self._nonce)
        self._salt = run_salt(first, second)
        self._peer_size = msg.size
        self.state = State.EXCHANGING
        return self._maybe_finish()

    def _on_blinded(self, msg: Blinded) -> list[Message]:
        if self.state is not State.EXCHANGING:
            return self._fail(f"unexpected Blinded in state {self.state.value}")
        if msg.seq != self._peer_seq or self._peer_last:
            return self._fail(f"Blinded chunk {msg.seq} out of order (expected {self._peer_seq})")
        n = len(msg.payload) // POINT_BYTES
        if len(msg.payload) % POINT_BYTES or self._peer_received + n > self._peer_size:
            return self._fail("malformed Blinded: payload is not whole points or exceeds the announced size")
        try:
            double = self._blinder.blind(self._secret, msg.payload)
        except InvalidPoint as exc:
            return self._fail(str(exc))
        self._peer_seq += 1
        self._peer_received += n
        self._peer_last = msg.last
        if msg.last and self._peer_received != self._peer_size:
            return self._fail(f"peer announced {self._peer_size} values but sent {self._peer_received}")
        self._peer_double.append(double)
        out: list[Message] = []
        if not self.count_only:
            out.append(Reblinded(self.session, self.entity, self.key, msg.seq, msg.last, double))
        elif msg.last:
            out.extend(self._sorted_reblinded())
        return out + self._maybe_finish()

    def _sorted_reblinded(self) -> list[Message]:
        """Count-only: return the peer's whole set re-blinded and sorted, so no position survives."""
        allp = b"".join(self._peer_double)
        arr = np.sort(np.frombuffer(allp, dtype=f"S{POINT_BYTES}")) if allp else np.array([], dtype="S32")
        flat = arr.tobytes()
        size = self._chunk * POINT_BYTES
        pieces = [flat[i:i + size] for i in range(0, len(flat), size)] or [b""]
        return [Reblinded(self.session, self.entity, self.key, i, i == len(pieces) - 1, p)
                for i, p in enumerate(pieces)]

    def _on_reblinded(self, msg: Reblinded) -> list[Message]:
        if self.state is not State.EXCHANGING:
            return self._fail(f"unexpected Reblinded in state {self.state.value}")
        if msg.seq != self._own_seq_back or self._own_back_last:
            return self._fail(f"Reblinded chunk {msg.seq} out of order (expected {self._own_seq_back})")
        n = len(msg.payload) // POINT_BYTES
        if len(msg.payload) % POINT_BYTES or self._own_double_n + n > self._sent_own:
            return self._fail("malformed Reblinded: more points than we sent")
        self._own_seq_back += 1
        self._own_double.append(msg.payload)
        self._own_double_n += n
        self._own_back_last = msg.last
        if msg.last and self._own_double_n != len(self._values):
            return self._fail(f"peer returned {self._own_double_n} values for our {len(self._values)}")
        return self._maybe_finish()

    def _on_done(self, msg: KeyDone) -> list[Message]:
        if self.state not in (State.EXCHANGING, State.MATCHED) or self._peer_done is not None:
            return self._fail("unexpected KeyDone")
        self._peer_done = msg.intersection
        return self._maybe_finish()

    # --- completion ----------------------------------------------------------------------

    def _maybe_finish(self) -> list[Message]:
        out: list[Message] = []
        if self.state is State.EXCHANGING and self._sent_last and self._peer_last and self._own_back_last:
            self.result = self._match()
            self.state = State.MATCHED
            out.append(KeyDone(self.session, self.entity, self.key, self.result.intersection))
        if self.state is State.MATCHED and self._peer_done is not None:
            if self._peer_done != self.result.intersection:
                self._fail(f"peers disagree on the {self.key} intersection: "
                           f"{self.result.intersection} here, {self._peer_done} there")
            self.state = State.DONE
        return out

    def _match(self) -> KeyResult:
        own = np.frombuffer(b"".join(self._own_double), dtype=f"S{POINT_BYTES}")
        peer = np.frombuffer(b"".join(self._peer_double), dtype=f"S{POINT_BYTES}")
        hit = np.isin(own, peer) if len(own) and len(peer) else np.zeros(len(own), dtype=bool)
        if self.count_only:
            return KeyResult(int(hit.sum()))
        where = np.flatnonzero(hit)
        ids = [link_digest(f"{self.entity}:{self.key}", own[i].ljust(POINT_BYTES, b"\0")).hex() for i in where]
        return KeyResult(len(where), self._order[where].astype(np.int64), ids)

    def _expect(self, state: State, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}")

    def _fail(self, reason: str) -> list[Message]:
        self.state = State.ERROR
        raise RemoteProtocolError(reason)

"""ECDH-PSI for one (entity, key), as a sans-I/O state machine; both roles run the same machine.

Flow, per side (``a`` our secret, ``b`` the peer's, ``H`` hash to a point):

    KeyStart(nonce, size, state) <->  both derive the salt from the two nonces
    [Delta(new, removed)]        <->  incremental mode only: both kept state from the same run
    Blinded(seq, a*H(x))         ->   our records in a random order, in chunks
                                 <-   Blinded(seq, b*H(y))
    Reblinded(seq, a*b*H(y))     ->   the peer's chunk, blinded again, same order
                                 <-   Reblinded(seq, b*a*H(x))   (link mode; sorted in count-only)
    KeyDone(|X ∩ Y|)             <->  both must have found the same size

In link mode each side learns which of its own records are in the intersection and a
shared opaque value per match (from which the link id is derived); in count-only mode the
re-blinded values come back sorted, so each side learns only the size.

Incremental mode: a side that keeps its scalar, the salt and both blinded sets
(``KeyMemory``) from an earlier run with the same peer sends only new records and the
blinded values of removed ones; the peer re-blinds only the new ones.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from tandem.crypto.psi_group import POINT_BYTES, InvalidPoint, link_ids, new_secret, run_salt, secure_permutation
from tandem.protocols.errors import LocalProtocolError
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import Blinded, Delta, KeyDone, KeyStart, Reblinded

DEFAULT_CHUNK = 32_768  # points per message: 1 MiB of payload
MAX_RECORDS = 50_000_000  # default cap on the peer's set in one run (``[limits] max_records``): 1.6 GB of points
_S = f"S{POINT_BYTES}"
_EMPTY = np.array([], dtype=_S)
_T = TypeVar("_T")


class Blinder(Protocol):
    """Where the scalar multiplications run (inline, or spread over a process pool)."""

    def hash_and_blind(self, secret: bytes, key: str, salt: bytes, values: list[str]) -> bytes: ...

    def blind(self, secret: bytes, points: bytes) -> bytes: ...


class State(enum.Enum):
    IDLE = "idle"
    STARTED = "started"  # KeyStart sent, peer's not yet seen
    DELTA = "delta"  # incremental: waiting for the peer's Delta
    EXCHANGING = "exchanging"  # chunks flowing both ways
    MATCHED = "matched"  # KeyDone sent, waiting for the peer's
    DONE = "done"
    ERROR = "error"


@dataclass
class KeyResult:
    """What one side learned. ``positions`` index the caller's ``values``; ``link_ids`` align with them."""

    intersection: int
    positions: np.ndarray | None = None  # shape (k,), int64; None in count-only mode
    link_ids: list[str] | None = None  # 32 hex chars each

    @property
    def links(self) -> tuple[np.ndarray, list[str]]:
        """``positions`` and ``link_ids`` of a link-mode result."""
        missing = "a count-only result has no links"
        return _known(self.positions, missing), _known(self.link_ids, missing)


@dataclass
class KeyMemory:
    """What incremental mode keeps between runs with one peer, for one (entity, key).

    Arrays are ``S32`` of shape ``(n,)`` (own records) or ``(m,)`` (the peer's). ``own_digest``
    identifies a value without keeping it: SHA-256 over the salt and the normalised value.
    """

    state_id: str
    secret: bytes
    salt: bytes
    own_digest: np.ndarray
    own_blinded: np.ndarray
    own_double: np.ndarray
    peer_blinded: np.ndarray
    peer_double: np.ndarray


def _known(value: _T | None, missing: str) -> _T:
    """``value``, which the state machine has set by now; ``LocalProtocolError(missing)`` if it has not."""
    if value is None:
        raise LocalProtocolError(missing)
    return value


def _digests(salt: bytes, values: list[str]) -> np.ndarray:
    return np.array([hashlib.sha256(salt + v.encode()).digest() for v in values], dtype=_S)


def _points(buf: bytes) -> np.ndarray:
    return np.frombuffer(buf, dtype=_S) if buf else _EMPTY


def _raw(arr: np.ndarray) -> bytes:
    """Bytes of an ``S32`` array (``tobytes`` keeps the trailing zero bytes that indexing strips)."""
    return np.ascontiguousarray(arr, dtype=_S).tobytes()


def _members(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Shape ``(n,)`` bool: which of ``values`` (``S32``, shape ``(n,)``) also occur in ``pool`` (shape ``(m,)``).

    Points are uniformly random 32-byte strings, so their first 8 bytes almost never repeat within
    ``pool`` (about m^2 / 2^65): look those up in the sorted pool and compare the whole point of each
    candidate; if two pool points share their first 8 bytes, fall back to an exact set lookup.
    """
    if not len(values) or not len(pool):
        return np.zeros(len(values), dtype=bool)
    want = np.ascontiguousarray(values, dtype=_S).view(np.uint64).reshape(-1, 4)
    have = np.ascontiguousarray(pool, dtype=_S).view(np.uint64).reshape(-1, 4)
    order = np.argsort(have[:, 0], kind="stable")
    heads = have[order, 0]
    if (heads[1:] == heads[:-1]).any():
        members = set(pool.tolist())  # tolist strips trailing zero bytes the same way from both sides
        return np.fromiter((v in members for v in values.tolist()), dtype=bool, count=len(values))
    at = np.minimum(np.searchsorted(heads, want[:, 0]), len(heads) - 1)
    found = np.zeros(len(values), dtype=bool)
    candidates = np.flatnonzero(heads[at] == want[:, 0])
    found[candidates] = (have[order[at[candidates]]] == want[candidates]).all(axis=1)
    return found


class KeyRun(Role):
    """One side of one (entity, key) PSI run.

    ``values`` are this side's normalised, de-duplicated identifiers (shape ``(n,)``);
    ``initiator`` says whose nonce comes first in the salt. Call ``start()``, then feed
    every peer message to ``receive()`` and call ``poll()`` whenever ``has_work()``;
    send everything they return. ``result`` is set once ``state is State.DONE``; with
    ``keep_memory``, so is ``memory`` (to be stored for the next incremental run); ``final``
    and ``kept`` return them, raising ``LocalProtocolError`` if they are not set. A peer whose set
    is over ``max_records`` (announced in ``KeyStart``, or kept plus ``Delta.new``) stops the run.
    """

    def __init__(
        self,
        session: str,
        entity: str,
        key: str,
        values: list[str],
        *,
        initiator: bool,
        count_only: bool,
        secret: bytes,
        blinder: Blinder,
        chunk: int = DEFAULT_CHUNK,
        memory: KeyMemory | None = None,
        keep_memory: bool = False,
        max_records: int = MAX_RECORDS,
    ):
        if count_only and (memory is not None or keep_memory):
            raise LocalProtocolError("count-only runs keep no state (incremental mode links records)")
        self.session, self.entity, self.key = session, entity, key
        self.initiator, self.count_only = initiator, count_only
        self._all = list(values)
        self._secret, self._blinder, self._chunk = secret, blinder, chunk
        self._memory, self._keep = memory, keep_memory
        self.max_records = max_records
        self._nonce = os.urandom(16)
        self.state = State.IDLE
        self.result: KeyResult | None = None
        self.memory: KeyMemory | None = None
        self.incremental = False
        self._salt: bytes | None = None
        self._send: list[int] = []  # indices into _all that we blind and send
        self._sent = 0
        self._sent_last = False
        self._own_blinded: list[bytes] = []  # a*H(x) as sent (kept for the next incremental run)
        self._own_double: list[bytes] = []  # b*a*H(x) for what we sent, in our sending order
        self._own_double_n = 0
        self._own_back_last = False
        self._own_seq_back = 0
        self._peer_size = 0
        self._peer_blinded: list[bytes] = []  # b*H(y) as received
        self._peer_double: list[bytes] = []  # a*b*H(y)
        self._peer_received = 0
        self._peer_seq = 0
        self._peer_last = False
        self._peer_removed = _EMPTY
        self._peer_done: int | None = None

    # --- the sans-I/O surface ------------------------------------------------------------

    def start(self) -> list[Message]:
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"cannot start in state {self.state.value}")
        self.state = State.STARTED
        state_id = self._memory.state_id if self._memory else ""
        return [KeyStart(self.session, self.entity, self.key, self._nonce.hex(), len(self._all), state_id)]

    @property
    def final(self) -> KeyResult:
        """``result``, for a run that has matched (``LocalProtocolError`` before)."""
        return _known(self.result, f"the {self.key} run has no result yet")

    @property
    def kept(self) -> KeyMemory:
        """``memory``, for a ``keep_memory`` run that has matched (``LocalProtocolError`` otherwise)."""
        return _known(self.memory, f"the {self.key} run has no state to keep")

    @property
    def _run_salt(self) -> bytes:
        return _known(self._salt, f"no salt yet in state {self.state.value}")

    @property
    def _kept_before(self) -> KeyMemory:
        return _known(self._memory, "incremental run without the state kept from the last run")

    @property
    def to_send(self) -> int:
        """How many of our values this run blinds and sends (all, or only new ones when incremental)."""
        return len(self._send)

    def progress(self) -> float:
        """Fraction of this run's scalar multiplications done on this side (0..1)."""
        total = len(self._send) + self._peer_size
        return (self._sent + self._peer_received) / total if total else 1.0

    def has_work(self) -> bool:
        return self.state is State.EXCHANGING and not self._sent_last

    def poll(self) -> list[Message]:
        """Blind and emit the next chunk of our own set (an empty set sends one empty chunk)."""
        if not self.has_work():
            return self._maybe_finish()
        part = [self._all[i] for i in self._send[self._sent : self._sent + self._chunk]]
        seq = self._sent // self._chunk
        points = (
            self._blinder.hash_and_blind(self._secret, f"{self.entity}:{self.key}", self._run_salt, part)
            if part
            else b""
        )
        self._own_blinded.append(points)
        self._sent += len(part)
        self._sent_last = self._sent == len(self._send)
        return [Blinded(self.session, self.entity, self.key, seq, self._sent_last, points)] + self._maybe_finish()

    def receive(self, msg: Message) -> list[Message]:
        if self.state not in (State.DONE, State.ERROR) and (
            getattr(msg, "entity", self.entity) != self.entity or getattr(msg, "key", self.key) != self.key
        ):
            self._fail(
                f"expected a message for {self.entity}/{self.key}, got {msg.name} for "
                f"{getattr(msg, 'entity', '?')}/{getattr(msg, 'key', '?')}"
            )
        return self._receive(msg)

    def _unexpected(self, msg: Message, *context) -> str:
        return f"unexpected {msg.name} in state {self.state.value} of the {self.key} run"

    # --- handlers ------------------------------------------------------------------------

    def _on_start(self, msg: KeyStart) -> list[Message]:
        try:
            peer_nonce = bytes.fromhex(msg.nonce)
        except ValueError:
            self._fail("malformed KeyStart: nonce is not hex")
        if len(peer_nonce) != 16 or msg.size < 0:
            self._fail("malformed KeyStart: bad nonce or size")
        self._check_size(msg.size, "announced")
        mine = self._memory.state_id if self._memory else ""
        self.incremental = bool(mine) and msg.state == mine
        if self.incremental:
            return self._start_delta()
        first, second = (self._nonce, peer_nonce) if self.initiator else (peer_nonce, self._nonce)
        self._salt = run_salt(first, second)
        if self._memory is not None:  # stale or one-sided state: start afresh
            self._secret, self._memory = new_secret(), None
        self._send = secure_permutation(len(self._all)).tolist()  # a random order: position says nothing
        self._peer_size = msg.size
        self.state = State.EXCHANGING
        return self._maybe_finish()

    def _start_delta(self) -> list[Message]:
        mem = self._kept_before
        self._salt = mem.salt
        self._secret = mem.secret
        digests = _digests(mem.salt, self._all)
        known = np.isin(digests, mem.own_digest)
        new = np.flatnonzero(~known)
        self._send = new[secure_permutation(len(new))].tolist()
        removed = ~np.isin(mem.own_digest, digests)
        self.state = State.DELTA
        return [Delta(self.session, self.entity, self.key, len(self._send), _raw(mem.own_blinded[removed]))]

    def _on_delta(self, msg: Delta) -> list[Message]:
        if len(msg.payload) % POINT_BYTES or msg.new < 0:
            self._fail("malformed Delta")
        self._peer_removed = _points(msg.payload)
        kept = self._kept_before.peer_blinded
        self._check_size(len(kept) - len(self._peer_removed) + msg.new, "would hold (kept, less removed, plus new)")
        if not np.isin(self._peer_removed, kept).all():
            self._fail("peer removed values this side never received: the kept states differ")
        self._peer_size = msg.new
        self.state = State.EXCHANGING
        return self._maybe_finish()

    def _check_size(self, size: int, what: str) -> None:
        """Stop the run if the peer's set (``size`` records) is over this side's ``max_records``."""
        if size > self.max_records:
            self._fail(
                f"peer {what} {size} {self.entity}/{self.key} records, over this node's cap of "
                f"{self.max_records} ([limits] max_records)"
            )

    def _on_blinded(self, msg: Blinded) -> list[Message]:
        if msg.seq != self._peer_seq or self._peer_last:
            self._fail(f"Blinded chunk {msg.seq} out of order (expected {self._peer_seq})")
        n = len(msg.payload) // POINT_BYTES
        if len(msg.payload) % POINT_BYTES or self._peer_received + n > self._peer_size:
            self._fail("malformed Blinded: payload is not whole points or exceeds the announced size")
        try:
            double = self._blinder.blind(self._secret, msg.payload) if msg.payload else b""
        except InvalidPoint as exc:
            self._fail(str(exc))
        self._peer_seq += 1
        self._peer_received += n
        self._peer_last = msg.last
        if msg.last and self._peer_received != self._peer_size:
            self._fail(f"peer announced {self._peer_size} values but sent {self._peer_received}")
        self._peer_blinded.append(msg.payload)
        self._peer_double.append(double)
        out: list[Message] = []
        if not self.count_only:
            out.append(Reblinded(self.session, self.entity, self.key, msg.seq, msg.last, double))
        elif msg.last:
            out.extend(self._sorted_reblinded())
        return out + self._maybe_finish()

    def _sorted_reblinded(self) -> list[Message]:
        """Count-only: return the peer's whole set re-blinded and sorted, so no position survives."""
        flat = _raw(np.sort(_points(b"".join(self._peer_double))))
        size = self._chunk * POINT_BYTES
        pieces = [flat[i : i + size] for i in range(0, len(flat), size)] or [b""]
        return [
            Reblinded(self.session, self.entity, self.key, i, i == len(pieces) - 1, p) for i, p in enumerate(pieces)
        ]

    def _on_reblinded(self, msg: Reblinded) -> list[Message]:
        if msg.seq != self._own_seq_back or self._own_back_last:
            self._fail(f"Reblinded chunk {msg.seq} out of order (expected {self._own_seq_back})")
        n = len(msg.payload) // POINT_BYTES
        if len(msg.payload) % POINT_BYTES or self._own_double_n + n > self._sent:
            self._fail("malformed Reblinded: more points than we sent")
        self._own_seq_back += 1
        self._own_double.append(msg.payload)
        self._own_double_n += n
        self._own_back_last = msg.last
        if msg.last and self._own_double_n != len(self._send):
            self._fail(f"peer returned {self._own_double_n} values for our {len(self._send)}")
        return self._maybe_finish()

    def _on_done(self, msg: KeyDone) -> list[Message]:
        if self._peer_done is not None:
            self._fail(self._unexpected(msg))
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
            if self._peer_done != self.final.intersection:
                self._fail(
                    f"peers disagree on the {self.key} intersection: "
                    f"{self.final.intersection} here, {self._peer_done} there"
                )
            self.state = State.DONE
        return out

    def _match(self) -> KeyResult:
        """Compare our doubly blinded values (all current records) with the peer's (its whole current set)."""
        sent = np.asarray(self._send, dtype=np.int64)
        own_idx, own = sent, _points(b"".join(self._own_double))
        own_blinded = _points(b"".join(self._own_blinded))
        peer_blinded, peer = _points(b"".join(self._peer_blinded)), _points(b"".join(self._peer_double))
        if self.incremental:
            mem = self._kept_before
            digests = _digests(mem.salt, self._all)
            pos = {d: i for i, d in enumerate(mem.own_digest.tolist())}
            kept = np.flatnonzero(np.isin(digests, mem.own_digest))
            kept_mem = np.array([pos[d] for d in digests[kept].tolist()], dtype=np.int64)
            own_idx = np.concatenate([kept, sent])
            own = np.concatenate([mem.own_double[kept_mem], own])
            own_blinded = np.concatenate([mem.own_blinded[kept_mem], own_blinded])
            stay = ~np.isin(mem.peer_blinded, self._peer_removed)
            peer = np.concatenate([mem.peer_double[stay], peer])
            peer_blinded = np.concatenate([mem.peer_blinded[stay], peer_blinded])
        if self._keep:
            salt = self._run_salt
            self.memory = KeyMemory(
                hashlib.sha256(b"tandem/psi/state/v1" + salt).hexdigest()[:32],
                self._secret,
                salt,
                _digests(salt, [self._all[i] for i in own_idx]),
                own_blinded,
                own,
                peer_blinded,
                peer,
            )
        hits = np.flatnonzero(_members(own, peer))
        if self.count_only:
            return KeyResult(len(hits))
        return KeyResult(len(hits), own_idx[hits], link_ids(f"{self.entity}:{self.key}", _raw(own[hits])))

    HANDLERS = {
        (State.STARTED, KeyStart): _on_start,
        (State.DELTA, Delta): _on_delta,
        (State.EXCHANGING, Blinded): _on_blinded,
        (State.EXCHANGING, Reblinded): _on_reblinded,
        (State.EXCHANGING, KeyDone): _on_done,
        (State.MATCHED, KeyDone): _on_done,
    }

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

Incremental runs send only what changed since the last one (``psi_incremental``); interrupted
runs resume from the last chunk both sides hold (``psi_resume``). The hot state is preallocated
numpy (``S32`` arrays of the known set sizes, the sending order as int64): 40 bytes per own and
32 per peer record (72 and 64 when keeping incremental state), besides the values.
"""

from __future__ import annotations

import os
import time

import numpy as np

from tandem.crypto.psi_group import POINT_BYTES, InvalidPoint, link_ids, new_secret, run_salt, secure_permutation
from tandem.protocols import psi_incremental
from tandem.protocols.errors import LocalProtocolError
from tandem.protocols.message import Message
from tandem.protocols.psi_resume import (
    Checkpoint,
    Saved,
    Token,
    disagree,
    resend_plan,
    unusable,
    value_digest,
)
from tandem.protocols.psi_sets import (  # noqa: F401  (DEFAULT_CHUNK, MAX_RECORDS, Blinder: imported from here by callers)
    _EMPTY,
    _S,
    DEFAULT_CHUNK,
    MAX_RECORDS,
    Blinder,
    KeyMemory,
    KeyResult,
    State,
    sorted_pieces,
)
from tandem.protocols.psi_sets import as_points as _points
from tandem.protocols.psi_sets import known as _known
from tandem.protocols.psi_sets import members as _members
from tandem.protocols.psi_sets import raw_bytes as _raw
from tandem.protocols.role import Role
from tandem.protocols.wire import Blinded, Delta, KeyDone, KeyStart, Reblinded


class KeyRun(Role):
    """One side of one (entity, key) PSI run.

    ``values`` are this side's normalised, de-duplicated identifiers (shape ``(n,)``);
    ``initiator`` says whose nonce comes first in the salt. Call ``start()``, then feed
    every peer message to ``receive()`` and call ``poll()`` whenever ``has_work()``;
    send everything they return. ``result`` is set once ``state is State.DONE``; with
    ``keep_memory``, so is ``memory`` (to be stored for the next incremental run); ``final``
    and ``kept`` return them, raising ``LocalProtocolError`` if they are not set. A peer whose set
    is over ``max_records`` (announced in ``KeyStart``, or kept plus ``Delta.new``) stops the run.
    With a ``checkpoint`` (link mode, not incremental) every completed chunk is kept and a rerun
    resumes where both sides left off (a checkpoint it cannot use is discarded, saying why);
    ``resumed`` says it did, ``multiplied`` counts the scalar multiplications this run made on this side.
    """

    def __init__(
        self,
        session: str,
        entity: str,
        key: str,
        values: list[str] | np.ndarray,
        *,
        initiator: bool,
        count_only: bool,
        secret: bytes,
        blinder: Blinder,
        chunk: int = DEFAULT_CHUNK,
        memory: KeyMemory | None = None,
        keep_memory: bool = False,
        max_records: int = MAX_RECORDS,
        checkpoint: Checkpoint | None = None,
    ):
        if count_only and (memory is not None or keep_memory):
            raise LocalProtocolError("count-only runs keep no state (incremental mode links records)")
        self.session, self.entity, self.key = session, entity, key
        self.initiator, self.count_only = initiator, count_only
        self._all = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
        self._secret, self._blinder, self._chunk = secret, blinder, chunk
        self._memory, self._keep = memory, keep_memory
        self._checkpoint = None if count_only else checkpoint
        self._saved: Saved | None = None
        self.max_records = max_records
        self._nonce = os.urandom(16)
        self.state = State.IDLE
        self.result: KeyResult | None = None
        self.memory: KeyMemory | None = None
        self.incremental = False
        self.resumed = False
        self.multiplied = 0
        self.phases = {"hash_blind": 0.0, "reblind": 0.0, "match": 0.0}  # seconds this side spent on each
        self._salt: bytes | None = None
        self._send = np.zeros(0, np.int64)  # indices into _all that we blind and send, in sending order
        self._sent = 0
        self._sent_chunks = 0
        self._sent_last = False
        self._resend: list[tuple[int, int, int, bool]] = []  # our chunks to send again: (seq, start, stop, last)
        self._resend_back: list[tuple[int, int, int, bool]] = []  # re-blinded peer chunks to send again
        self._own_blinded = _EMPTY  # a*H(x) as sent, in our sending order (kept only with keep_memory)
        self._own_double = _EMPTY  # b*a*H(x) for what we sent, in our sending order
        self._own_double_n = 0
        self._own_back_last = False
        self._own_seq_back = 0
        self._peer_size = 0
        self._peer_blinded = _EMPTY  # b*H(y) as received (kept only with keep_memory)
        self._peer_double = _EMPTY  # a*b*H(y)
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
        saved = self._checkpoint.saved if self._checkpoint else None
        if saved is not None:
            why = unusable(saved, value_digest(self._all), len(self._all), self._chunk, self.initiator, self._keep)
            if why is None:
                self._saved = saved
            else:
                self._drop_checkpoint(why)
        token = self._saved.token().encode() if self._saved else ""
        return [KeyStart(self.session, self.entity, self.key, self._nonce.hex(), len(self._all), state_id, token)]

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
        return self.state is State.EXCHANGING and bool(
            self._resend or self._resend_back or not self._sent_last or self._ready_to_match()
        )

    def poll(self) -> list[Message]:
        """Emit the next chunk: one kept chunk the peer lost (on resume), else blind the next of our own
        set (an empty set sends one empty chunk); once everything is out and back, match (here, not in the
        ``receive`` that completed the exchange: its re-blinded chunk goes out first, so both sides match at once)."""
        if not self.has_work():
            return []
        if self._resend_back:
            return self._resent_back()
        if self._resend:
            seq, start, stop, last = self._resend.pop(0)
            points = self._stored("sent", start, stop)
            return [Blinded(self.session, self.entity, self.key, seq, last, points)]
        if self._sent_last:
            self.result, self.state = self._match(), State.MATCHED
            self._agree()
            return [KeyDone(self.session, self.entity, self.key, self.result.intersection)]
        start, stop = self._sent, min(self._sent + self._chunk, len(self._send))
        seq = self._sent_chunks
        part = self._all[self._send[start:stop]].tolist()
        began = time.perf_counter()
        points = (
            self._blinder.hash_and_blind(self._secret, f"{self.entity}:{self.key}", self._run_salt, part)
            if part
            else b""
        )
        self.phases["hash_blind"] += time.perf_counter() - began
        self.multiplied += len(part)
        if self._keep:
            self._own_blinded[start:stop] = _points(points)
        self._sent, self._sent_chunks = stop, seq + 1
        self._sent_last = stop == len(self._send)
        if self._checkpoint and not self.incremental:
            self._checkpoint.append("sent", points, self._sent_last)
        return [Blinded(self.session, self.entity, self.key, seq, self._sent_last, points)]

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
            peer_token = Token.parse(msg.resume)
        except ValueError as exc:
            self._fail(f"malformed KeyStart: {exc}")
        if len(peer_nonce) != 16 or msg.size < 0:
            self._fail("malformed KeyStart: bad nonce or size")
        self._check_size(msg.size, "announced")
        mine = self._memory.state_id if self._memory else ""
        self.incremental = bool(mine) and msg.state == mine
        if self.incremental:
            if self._saved is not None:
                self._drop_checkpoint("this run is incremental")
            return self._start_delta()
        if self._saved is not None:
            why = disagree(self._saved, peer_token, len(self._all), msg.size)
            if why is None:
                return self._resume(self._saved, _known(peer_token, "no peer token"), msg.size)
            self._drop_checkpoint(why)
        first, second = (self._nonce, peer_nonce) if self.initiator else (peer_nonce, self._nonce)
        self._salt = run_salt(first, second)
        if self._memory is not None:  # stale or one-sided state: start afresh
            self._secret, self._memory = new_secret(), None
        self._send = secure_permutation(len(self._all))  # a random order: position says nothing
        self._allocate(len(self._send), msg.size)
        if self._checkpoint:
            settings = (self._chunk, self.initiator, self._keep)
            self._checkpoint.begin(Saved.fresh(self._salt, self._secret, self._all, self._send, msg.size, *settings))
        self.state = State.EXCHANGING
        return []

    def _allocate(self, own: int, peer: int) -> None:
        """Preallocate the point arrays for ``own`` points we send and ``peer`` points the peer sends."""
        self._peer_size = peer
        self._own_double, self._peer_double = np.zeros(own, _S), np.zeros(peer, _S)
        if self._keep:
            self._own_blinded, self._peer_blinded = np.zeros(own, _S), np.zeros(peer, _S)

    def _resume(self, saved: Saved, peer: Token, peer_size: int) -> list[Message]:
        """Both sides hold this run's checkpoint: restore ours and queue what the peer lost."""
        self.resumed = True
        self._salt, self._secret, self._send = saved.salt, saved.secret, saved.order
        self._allocate(len(self._send), peer_size)
        mine = saved.token()
        self._sent, self._sent_chunks, self._sent_last = saved.points("sent"), mine.sent, saved.last["sent"]
        self._own_double_n, self._own_seq_back = saved.points("back"), mine.back
        self._own_back_last = saved.last["back"]
        self._own_double[: self._own_double_n] = self._stored_points("back", 0, self._own_double_n)
        self._peer_received, self._peer_seq = saved.points("reblinded"), mine.received
        self._peer_last = saved.last["reblinded"]
        self._peer_double[: self._peer_received] = self._stored_points("reblinded", 0, self._peer_received)
        if self._keep:
            self._own_blinded[: self._sent] = self._stored_points("sent", 0, self._sent)
            self._peer_blinded[: self._peer_received] = self._stored_points("received", 0, self._peer_received)
        self._resend = resend_plan(saved.lengths["sent"], peer.received, saved.last["sent"])
        self._resend_back = resend_plan(saved.lengths["reblinded"], peer.back, saved.last["reblinded"])
        self.state = State.EXCHANGING
        return []

    def _stored(self, stream: str, start: int, stop: int) -> bytes:
        return _known(self._checkpoint, "resuming without a checkpoint").read(stream, start, stop)

    def _stored_points(self, stream: str, start: int, stop: int) -> np.ndarray:
        return _points(self._stored(stream, start, stop))

    def _resent_back(self) -> list[Message]:
        """Every re-blinded peer chunk the peer lost, in order (before any newer one goes out)."""
        out: list[Message] = []
        for seq, start, stop, last in self._resend_back:
            points = self._stored("reblinded", start, stop)
            out.append(Reblinded(self.session, self.entity, self.key, seq, last, points))
        self._resend_back = []
        return out

    def _drop_checkpoint(self, why: str) -> None:
        self._saved = None
        if self._checkpoint:
            self._checkpoint.discard(why)

    def _start_delta(self) -> list[Message]:
        mem = self._kept_before
        self._salt, self._secret = mem.salt, mem.secret
        self._send, removed = psi_incremental.delta(mem, self._all)
        self.state = State.DELTA
        return [Delta(self.session, self.entity, self.key, len(self._send), _raw(removed))]

    def _on_delta(self, msg: Delta) -> list[Message]:
        if len(msg.payload) % POINT_BYTES or msg.new < 0:
            self._fail("malformed Delta")
        self._peer_removed = _points(msg.payload)
        kept = self._kept_before.peer_blinded
        self._check_size(len(kept) - len(self._peer_removed) + msg.new, "would hold (kept, less removed, plus new)")
        if not np.isin(self._peer_removed, kept).all():
            self._fail("peer removed values this side never received: the kept states differ")
        self._allocate(len(self._send), msg.new)
        self.state = State.EXCHANGING
        return []

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
        began = time.perf_counter()
        try:
            double = self._blinder.blind(self._secret, msg.payload) if msg.payload else b""
        except InvalidPoint as exc:
            self._fail(str(exc))
        self.phases["reblind"] += time.perf_counter() - began
        self.multiplied += n
        start, stop = self._peer_received, self._peer_received + n
        self._peer_seq += 1
        self._peer_received = stop
        self._peer_last = msg.last
        if msg.last and self._peer_received != self._peer_size:
            self._fail(f"peer announced {self._peer_size} values but sent {self._peer_received}")
        self._peer_double[start:stop] = _points(double)
        if self._keep:
            self._peer_blinded[start:stop] = _points(msg.payload)
        if self._checkpoint and not self.incremental:
            if self._keep:
                self._checkpoint.append("received", msg.payload, msg.last)
            self._checkpoint.append("reblinded", double, msg.last)
        out: list[Message] = self._resent_back()
        if not self.count_only:
            out.append(Reblinded(self.session, self.entity, self.key, msg.seq, msg.last, double))
        elif msg.last:
            out.extend(self._sorted_reblinded())
        return out

    def _sorted_reblinded(self) -> list[Message]:
        """Count-only: return the peer's whole set re-blinded and sorted, so no position survives."""
        pieces = sorted_pieces(self._peer_double, self._chunk)
        return [
            Reblinded(self.session, self.entity, self.key, i, i == len(pieces) - 1, p) for i, p in enumerate(pieces)
        ]

    def _on_reblinded(self, msg: Reblinded) -> list[Message]:
        if msg.seq != self._own_seq_back or self._own_back_last:
            self._fail(f"Reblinded chunk {msg.seq} out of order (expected {self._own_seq_back})")
        n = len(msg.payload) // POINT_BYTES
        if len(msg.payload) % POINT_BYTES or self._own_double_n + n > self._sent:
            self._fail("malformed Reblinded: more points than we sent")
        start = self._own_double_n
        self._own_seq_back += 1
        self._own_double[start : start + n] = _points(msg.payload)
        self._own_double_n += n
        self._own_back_last = msg.last
        if msg.last and self._own_double_n != len(self._send):
            self._fail(f"peer returned {self._own_double_n} values for our {len(self._send)}")
        if self._checkpoint and not self.incremental and not self.count_only:
            self._checkpoint.append("back", msg.payload, msg.last)
        return []

    def _on_done(self, msg: KeyDone) -> list[Message]:
        if self._peer_done is not None:
            self._fail(self._unexpected(msg))
        self._peer_done = msg.intersection
        self._agree()
        return []

    # --- completion ----------------------------------------------------------------------

    def _ready_to_match(self) -> bool:
        """Everything we send is out, the peer's whole set is in and ours has come back re-blinded."""
        done = self._sent_last and self._peer_last and self._own_back_last
        return self.state is State.EXCHANGING and done and not (self._resend or self._resend_back)

    def _agree(self) -> None:
        """Once both sides have matched, check that they found the same size."""
        if self.state is State.MATCHED and self._peer_done is not None:
            if self._peer_done != self.final.intersection:
                self._fail(
                    f"peers disagree on the {self.key} intersection: "
                    f"{self.final.intersection} here, {self._peer_done} there"
                )
            self.state = State.DONE

    def _match(self) -> KeyResult:
        """Compare our doubly blinded values (all current records) with the peer's (its whole current set)."""
        began = time.perf_counter()
        try:
            return self._match_sets()
        finally:
            self.phases["match"] += time.perf_counter() - began

    def _match_sets(self) -> KeyResult:
        sent = (self._send, self._own_double, self._own_blinded)
        received = (self._peer_double, self._peer_blinded)
        if self.incremental:
            sent, received = psi_incremental.merged(self._kept_before, self._all, sent, self._peer_removed, received)
        if self._keep:
            self.memory = psi_incremental.kept(self._secret, self._run_salt, self._all, sent, received)
        own_idx, own = sent[0], sent[1]
        hits = np.flatnonzero(_members(own, received[0]))
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

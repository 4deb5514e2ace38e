"""Linking a few new records between two link runs, from the state incremental mode keeps (sans-I/O).

A record that reached a party's store after the last incremental link run has no link id. With the
``KeyMemory`` of that run kept on both sides (``tandem.protocols.psi``), one key's lookup is one
round trip, and it computes exactly what the next incremental run computes for that record:

    asker (has the new record x)          answerer (the peer)
    a*H_salt(x)                    ->     b*(a*H(x)), looked up among its own b*a*H(y) (``own_double``)
                                   <-     b*a*H(x), and whether it matched one of its records y

Both sides derive the link id from ``b*a*H(x)`` with ``link_ids``, as the run does, so the next
incremental run gives the same id. Keys go in the agreed priority, one round each, and a record
matched on one key is not sent on the next: the answerer never sees a lower-priority value of a
record that matched on a higher one, as in a run. ``Asker`` and ``Answerer`` hold one
(entity, key)'s state; they do no I/O.
"""

from __future__ import annotations

import numpy as np

from tandem.crypto.psi_group import POINT_BYTES, blind, hash_to_points, link_ids
from tandem.protocols.psi_sets import KeyMemory
from tandem.protocols.psi_sets import value_digests as _digests

MAX_POINTS = 16  # the most records one lookup may carry
_S = f"S{POINT_BYTES}"


def _raw(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=_S).tobytes()


def _split(buf: bytes) -> list[bytes]:
    return [buf[i : i + POINT_BYTES] for i in range(0, len(buf), POINT_BYTES)]


class _Sorted:
    """Membership and position among ``values`` (``S32``, shape ``(n,)``), by binary search (no per-value
    Python objects: the kept sets can hold millions)."""

    def __init__(self, values: np.ndarray):
        self.order = np.argsort(values, kind="stable")
        self.sorted = values[self.order]

    def find(self, value: bytes) -> int:
        """The index in ``values`` of ``value`` (32 bytes; an ``S32`` item, whose trailing zero bytes numpy
        strips, is padded back), or -1."""
        value = bytes(value).ljust(POINT_BYTES, b"\0")
        i = int(np.searchsorted(self.sorted, np.frombuffer(value, dtype=_S)[0]))
        if i < len(self.sorted) and _raw(self.sorted[i : i + 1]) == value:
            return int(self.order[i])
        return -1


def decode_points(texts: list[str]) -> bytes:
    """Hex points (64 hex digits each, at most ``MAX_POINTS``) -> ``n * 32`` bytes; ``ValueError`` (one line)."""
    if len(texts) > MAX_POINTS:
        raise ValueError(f"at most {MAX_POINTS} points per lookup, got {len(texts)}")
    try:
        out = b"".join(bytes.fromhex(t) for t in texts)
    except ValueError:
        raise ValueError("points must be hex strings of 32 bytes") from None
    if len(out) != POINT_BYTES * len(texts):
        raise ValueError("points must be hex strings of 32 bytes")
    return out


def encode_points(buf: bytes) -> list[str]:
    return [p.hex() for p in _split(buf)]


class Asker:
    """The side with the new records, for one (entity, key): its kept ``memory`` of the last run."""

    def __init__(self, entity: str, key: str, memory: KeyMemory):
        self.entity, self.key, self.memory = entity, key, memory
        self.domain = f"{entity}:{key}"
        self._own = _Sorted(memory.own_digest)
        self._peer = _Sorted(memory.peer_double)

    def was_in_last_run(self, value: str) -> bool:
        """Whether ``value`` (normalised) took part in the last run on this key: its outcome is known
        (had it matched, the record would be linked), so it is not asked again."""
        return self._own.find(_digests(self.memory.salt, [value])[0]) >= 0

    def blinded(self, values: list[str]) -> bytes:
        """``a*H(x)`` of each value, in order (``n * 32`` bytes): what a run would send for them."""
        return blind(self.memory.secret, hash_to_points(self.domain, self.memory.salt, values))

    def links(self, doubles: bytes, matched: list[bool]) -> list[str | None]:
        """The link id of each answered value the peer matched (``None`` where it did not).

        Raises ``ValueError`` if the peer matched a value that is not among the peer's values this side
        kept (its answer and the kept state disagree)."""
        out: list[str | None] = []
        for double, hit in zip(_split(doubles), matched, strict=True):
            if hit and self._peer.find(double) < 0:
                raise ValueError("the peer matched a value that is not in the link state kept here")
            out.append(link_ids(self.domain, double)[0] if hit else None)
        return out


class Answerer:
    """The side asked, for one (entity, key): its kept ``memory`` and its current records on that key
    (``ids`` shape ``(n,)`` int64, ``values`` shape ``(n,)`` normalised values or ``None``), so a kept value
    maps to the record that holds it now (a record gone or withdrawn since the run matches nothing)."""

    def __init__(self, entity: str, key: str, memory: KeyMemory, ids: np.ndarray, values: np.ndarray):
        self.entity, self.key, self.memory = entity, key, memory
        self.domain = f"{entity}:{key}"
        self._double = _Sorted(memory.own_double)
        usable = np.array([v is not None for v in values], dtype=bool)
        digests = _digests(memory.salt, [str(v) for v in values[usable]])
        owner = np.full(len(memory.own_digest), -1, dtype=np.int64)
        if len(digests) and len(memory.own_digest):
            now = _Sorted(digests)
            at = np.minimum(np.searchsorted(now.sorted, memory.own_digest), len(now.sorted) - 1)
            held = now.sorted[at] == memory.own_digest  # equal S32 values are equal 32-byte digests
            owner[held] = ids[usable][now.order[at[held]]]
        self._owner = owner

    def answer(self, points: bytes) -> list[tuple[bytes, int | None, str]]:
        """``(b*P, the local id of the record whose kept b*a*H(y) equals it or None, its link id)`` per point.

        Raises ``InvalidPoint`` for a malformed or low-order point."""
        doubles = blind(self.memory.secret, points) if points else b""
        out: list[tuple[bytes, int | None, str]] = []
        for double, lid in zip(_split(doubles), link_ids(self.domain, doubles), strict=True):
            i = self._double.find(double)
            owner = int(self._owner[i]) if i >= 0 and self._owner[i] >= 0 else None
            out.append((double, owner, lid))
        return out

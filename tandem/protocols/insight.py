"""Joint aggregates (``insight/1``) as two sans-I/O roles: the measure holder and the group holder.

Both hold the same linked customers in link-id order. The **measure holder** makes a fresh key
pair and sends, per customer, its packed slot values encrypted (1 for the count, then each
clamped fixed-point measure; zeros for a customer its own filters leave out). The **group
holder** sums the ciphertexts of each of its groups (leaving out the customers its filters
exclude) with the bucket-sum primitive of the encrypted histograms, adds a fresh encryption of
a random mask to every group's sums and sends them back. The measure holder decrypts only
masked sums, adds its share of the noise and returns them; the group holder removes the masks,
adds its own share of noise and releases the groups whose noisy count clears the threshold
(``min_group_size`` plus a margin that noise exceeds with probability below 1e-9, and an own
count of at least ``min_group_size`` on the group holder's side) with their figures. The
measure holder checks the release against the same rule. Nobody sees an exact group sum;
what each side learns is in docs/privacy.md.

Checks against a dishonest partner (the threat model in docs/privacy.md):
- the measure holder makes a fresh key pair per query (``he`` is for tests only), so ciphertexts of
  one query are of no use in another;
- before it decrypts anything for the group holder, the measure holder refuses masked sums that are
  not all distinct ciphertexts, or whose decrypted slots do not lie where sum + mask can
  (``looks_masked``): a row's own ciphertext, a repeated one, or a sum sent without a fresh mask;
- the group holder refuses noisy sums that its own group sizes and the query's declared per-row
  bounds (``Bounds``) rule out, allowing one honest noise share's margin: a count above the group's
  size, a sum outside ``[count * lo, count * hi]``.

``receive(msg)`` returns the messages to send; ``MeasureHolder.chunks()`` yields the encrypted
measures one message at a time (memory stays bounded by the chunk size).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator

import numpy as np

from tandem import protocol_versions as versions
from tandem.crypto.he import HeError, PublicHe, SecretHe, looks_masked, random_masks, row_bytes
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import (
    EncryptedMeasures,
    InsightDone,
    InsightKey,
    InsightRelease,
    MaskedSums,
    NoisySums,
)

PROTOCOL = versions.INSIGHT
CHUNK_ROWS = 50_000
_WIDE, _NARROW = 16, 8  # bytes per integer: masked sums, released figures
Progress = Callable[[str, float], None]
NoiseShare = Callable[[list[float], int], np.ndarray]  # (scales per slot, groups) -> (groups, slots) int64


class State(enum.Enum):
    START = "start"
    SENDING = "sending"
    WAIT_KEY = "wait_key"
    WAIT_MEASURES = "wait_measures"
    WAIT_SUMS = "wait_sums"
    WAIT_NOISY = "wait_noisy"
    WAIT_RELEASE = "wait_release"
    WAIT_DONE = "wait_done"
    DONE = "done"
    ERROR = "error"


def _ints_to_bytes(values: np.ndarray, width: int) -> bytes:
    return b"".join(int(v).to_bytes(width, "big", signed=True) for v in np.asarray(values, dtype=object).ravel())


def _ints_from_bytes(blob: bytes, shape: tuple[int, int], width: int) -> np.ndarray:
    if len(blob) != shape[0] * shape[1] * width:
        raise RemoteProtocolError("malformed insight figures: wrong length")
    flat = [int.from_bytes(blob[i : i + width], "big", signed=True) for i in range(0, len(blob), width)]
    return np.array(flat, dtype=object).reshape(shape)


class Release:
    """The rule both sides apply: a group is released iff its noisy count is at least ``min_group_size +
    margin`` (``margin`` 0 without noise)."""

    def __init__(self, min_group_size: int, margin: int):
        self.min_group_size, self.margin = min_group_size, margin

    def passes(self, counts: np.ndarray) -> np.ndarray:
        return np.asarray(counts, dtype=np.int64) >= self.min_group_size + self.margin


class Bounds:
    """What one counted customer may add to each slot, as the query declares it: ``slot_bounds`` ``[(lo,
    hi)]`` per slot in fixed-point units (``(1, 1)`` for the count; a customer left out adds 0 everywhere),
    ``margins`` per slot how far one honest noise share may move a figure (``tandem.insight.dp.share_margin``),
    ``names`` the slots' names for errors."""

    def __init__(self, slot_bounds: list[tuple[int, int]], margins: list[int], names: list[str]):
        if slot_bounds[:1] != [(1, 1)] or not len(slot_bounds) == len(margins) == len(names):
            raise LocalProtocolError("bounds: one (lo, hi) per slot, the count's (1, 1) first")
        self.slot_bounds, self.margins, self.names = slot_bounds, margins, names

    def check_rows(self, values: np.ndarray) -> None:
        """The measure holder's own rows: each all zero (left out) or counted with every value in bounds."""
        counted = values[:, 0] == 1
        if ((values[~counted] != 0).any()) or (values[counted, 0] != 1).any():
            raise LocalProtocolError("measure rows must count 1 or be all zero")
        for j, (lo, hi) in enumerate(self.slot_bounds[1:], 1):
            col = values[counted, j]
            if len(col) and (col.min() < lo or col.max() > hi):
                raise LocalProtocolError(f"measure {self.names[j]} has values outside its bounds [{lo}, {hi}]")

    def violation(self, figures: np.ndarray, sizes: np.ndarray) -> str | None:
        """The first group whose figures ``(groups, slots)`` (exact sums plus one noise share) no honest
        measure holder could have produced for groups of ``sizes`` customers on this side, else None."""
        m0 = self.margins[0]
        for g, n in enumerate(int(v) for v in sizes):
            count = int(figures[g, 0])
            if not -m0 <= count <= n + m0:
                return f"group {g} counts {count}, outside [0, {n}] ({n} customers on this side) beyond the noise"
            low_count, high_count = max(0, count - m0), min(n, count + m0)
            for j, (lo, hi) in enumerate(self.slot_bounds[1:], 1):
                x, m = int(figures[g, j]), self.margins[j]
                if not lo * low_count - m <= x <= hi * high_count + m:
                    return (
                        f"group {g}: {self.names[j]} sums to {x}, which {count} customers with values in "
                        f"[{lo}, {hi}] cannot reach beyond the noise"
                    )
        return None


class MeasureHolder(Role):
    """``values`` ``(n, slots)`` int64 >= 0 in link-id order, each row all zero or within ``bounds``;
    ``scales`` the noise scale of this party's share per slot (all 0: no noise), drawn by ``noise``
    (``tandem.insight.dp.noise_share``); ``he`` a key pair for tests only: by default each role makes a
    fresh one (one per query).

    After ``DONE``: ``groups_`` the released group positions, ``figures_`` ``(released, slots)`` int64.
    """

    def __init__(
        self,
        session: str,
        values: np.ndarray,
        n_groups: int,
        scales: list[float],
        release: Release,
        he: SecretHe | None = None,
        chunk_rows: int = CHUNK_ROWS,
        progress: Progress | None = None,
        *,
        noise: NoiseShare,
        bounds: Bounds,
    ):
        if values.ndim != 2 or values.shape[1] != len(scales) or (values < 0).any():
            raise LocalProtocolError("measure values must be (rows, slots) non-negative integers")
        bounds.check_rows(values)
        self.session, self.values, self.n_groups, self.scales, self.release = session, values, n_groups, scales, release
        self.he = he or SecretHe.generate()
        self.chunk_rows, self.progress, self.noise = chunk_rows, progress or (lambda what, f: None), noise
        self.state = State.START

    def start(self) -> list[Message]:
        self.state = State.SENDING
        return [InsightKey(self.session, len(self.values), self.values.shape[1], self.he.public_bytes())]

    def chunks(self) -> Iterator[Message]:
        """The encrypted measures, one chunk of rows per message; then the role waits for the sums."""
        if self.state is not State.SENDING:
            raise LocalProtocolError("chunks() follows start()")
        n = len(self.values)
        for first in range(0, max(n, 1), self.chunk_rows):
            rows = self.values[first : first + self.chunk_rows]
            self.progress("encrypting measures", min(1.0, (first + len(rows)) / max(n, 1)))
            last = first + self.chunk_rows >= n
            if last:
                self.state = State.WAIT_SUMS
            yield EncryptedMeasures(self.session, first, len(rows), last, self.he.dump(self.he.encrypt_slots(rows)))

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_sums(self, msg: MaskedSums) -> list[Message]:
        if msg.n_groups != self.n_groups:
            self._fail(f"masked sums of {msg.n_groups} groups, the query has {self.n_groups}")
        try:
            sums = self.he.load(msg.payload)
            if sums.rows != self.n_groups:
                self._fail("masked sums have the wrong number of groups")
            if len(set(row_bytes(sums))) != self.n_groups:
                self._fail("two groups' masked sums are the same ciphertext (a repeated sum)")
            masked = self.he.decrypt_slots(sums, self.values.shape[1])
        except HeError as exc:
            self._fail(str(exc))
        if not looks_masked(masked):
            self._fail("a group's sum is not masked (a row's own ciphertext, or a sum without a fresh mask)")
        noisy = masked + self.noise(self.scales, self.n_groups).astype(object)
        self.state = State.WAIT_RELEASE
        return [NoisySums(self.session, self.n_groups, _ints_to_bytes(noisy, _WIDE))]

    def _on_release(self, msg: InsightRelease) -> list[Message]:
        groups = list(msg.groups)
        if groups != sorted(set(groups)) or any(not 0 <= g < self.n_groups for g in groups):
            self._fail("released groups are not distinct positions of the query's groups")
        figures = _ints_from_bytes(msg.payload, (len(groups), self.values.shape[1]), _NARROW).astype(np.int64)
        if not self.release.passes(figures[:, 0]).all():
            self._fail("the release holds a group below the minimum group size")
        self.groups_, self.figures_ = groups, figures
        self.state = State.DONE
        return [InsightDone(self.session)]

    HANDLERS = {(State.WAIT_SUMS, MaskedSums): _on_sums, (State.WAIT_RELEASE, InsightRelease): _on_release}


class GroupHolder(Role):
    """``groups`` ``(n,)`` int64 in ``[-1, n_groups)`` in link-id order (``-1``: left out by this side);
    ``scales`` and ``bounds`` as agreed from the query; ``noise`` draws this side's share.

    After ``DONE``: ``groups_`` the released group positions, ``figures_`` ``(released, slots)`` int64.
    """

    def __init__(
        self,
        session: str,
        groups: np.ndarray,
        n_groups: int,
        scales: list[float],
        release: Release,
        progress: Progress | None = None,
        *,
        noise: NoiseShare,
        bounds: Bounds,
    ):
        self.session, self.groups, self.n_groups, self.scales, self.release = session, groups, n_groups, scales, release
        self.bounds = bounds
        self.own_counts = np.bincount(groups[groups >= 0], minlength=n_groups)
        self.progress, self.noise = progress or (lambda what, f: None), noise
        self.state = State.START
        self.he: PublicHe | None = None

    def start(self) -> list[Message]:
        self.state = State.WAIT_KEY
        return []

    @property
    def _he(self) -> PublicHe:
        """The measure holder's public key, known from its ``InsightKey`` on."""
        if self.he is None:
            raise LocalProtocolError(f"no public key yet in state {self.state.value}")
        return self.he

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_done(self, msg: InsightDone) -> list[Message]:
        self.state = State.DONE
        return []

    def _on_key(self, msg: InsightKey) -> list[Message]:
        if msg.n_rows != len(self.groups) or msg.n_slots != len(self.scales):
            self._fail(
                f"measures of {msg.n_rows} rows x {msg.n_slots} slots, this side has "
                f"{len(self.groups)} rows and the query {len(self.scales)} slots"
            )
        try:
            self.he = PublicHe.from_bytes(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        self._next_row, self._sums = 0, None
        self.state = State.WAIT_MEASURES
        return []

    def _on_measures(self, msg: EncryptedMeasures) -> list[Message]:
        he = self._he
        if msg.first != self._next_row or msg.rows < 0 or msg.first + msg.rows > len(self.groups):
            self._fail(f"encrypted measures of rows {msg.first}.. out of order (expected {self._next_row})")
        try:
            cts = he.load(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        cols = -(-len(self.scales) // he.slots_per_plaintext)
        if cts.rows != msg.rows or cts.cols != cols:
            self._fail("encrypted measures do not match the rows and slots announced")
        if msg.rows:
            sums = he.group_sums(cts, self.groups[msg.first : msg.first + msg.rows], self.n_groups)
            self._sums = sums if self._sums is None else he.add(self._sums, sums)
        self._next_row += msg.rows
        self.progress("summing by group", self._next_row / max(1, len(self.groups)))
        if not msg.last:
            return []
        if self._next_row != len(self.groups):
            self._fail(f"encrypted measures end after {self._next_row} of {len(self.groups)} rows")
        if self._sums is None:
            self._sums = he.encrypt_slots(np.zeros((self.n_groups, len(self.scales)), dtype=np.int64))
        self._masks = random_masks(self.n_groups, len(self.scales))
        masked = he.add_masks(self._sums, self._masks)
        self._sums = None
        self.state = State.WAIT_NOISY
        return [MaskedSums(self.session, self.n_groups, he.dump(masked))]

    def _on_noisy(self, msg: NoisySums) -> list[Message]:
        if msg.n_groups != self.n_groups:
            self._fail(f"noisy sums of {msg.n_groups} groups, the query has {self.n_groups}")
        noisy = _ints_from_bytes(msg.payload, (self.n_groups, len(self.scales)), _WIDE)
        theirs = noisy - self._masks  # exact sums plus the measure holder's noise share
        wrong = self.bounds.violation(theirs, self.own_counts)
        if wrong:
            self._fail(f"{wrong}: the measure holder's ciphertexts exceed the query's bounds")
        figures = theirs + self.noise(self.scales, self.n_groups).astype(object)
        if any(abs(int(v)) >= 1 << 63 for v in figures.ravel()):
            self._fail("noisy sums are out of range (wrong masks?)")
        figures = figures.astype(np.int64)
        keep = self.release.passes(figures[:, 0]) & (self.own_counts >= self.release.min_group_size)
        self.groups_, self.figures_ = np.flatnonzero(keep).tolist(), figures[keep]
        self.state = State.WAIT_DONE
        return [InsightRelease(self.session, self.groups_, _ints_to_bytes(self.figures_, _NARROW))]

    HANDLERS = {
        (State.WAIT_KEY, InsightKey): _on_key,
        (State.WAIT_MEASURES, EncryptedMeasures): _on_measures,
        (State.WAIT_NOISY, NoisySums): _on_noisy,
        (State.WAIT_DONE, InsightDone): _on_done,
    }

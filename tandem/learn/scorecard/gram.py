"""The second moments of the WoE design across two parties (``scorecard/1``, after binning): sans-I/O roles.

The regression and the correlation / VIF filter need only ``AᵀA`` and ``Aᵀy`` of the design
``A = [1, own WoE columns, passive WoE columns]`` over the training rows. The label holder computes every
entry it can alone: its own block, ``Aᵀy`` and the passive diagonal from the bins' counts and events (it
knows each passive bin's WoE from binning). The cross entries need which rows share a passive bin, which
only the passive party knows; they travel under the label holder's key:

- own column k x passive feature j: the label holder sends its own WoE columns encrypted (one ciphertext
  per row, columns packed as slots); the passive party sums them over the bins of j.
- passive j x passive l: the label holder sends each passive bin's WoE encrypted (one ciphertext per
  bin); the passive party weighs the WoE of l's bins by its own joint counts of (bin of j, bin of l).

Either way the passive party holds encrypted per-bin sums ``S(b)``, and the entry is ``Σ_b W_j(b) S(b)``.
It adds a fresh random mask ``r_b`` to every ``S(b)`` and also returns ``Σ_b r_b W_j(b)`` encrypted (the
masks weighted by the encrypted WoE table): the label holder decrypts both and subtracts, so it learns the
one entry and nothing of the per-bin sums (each is hidden to a statistical distance of 2^-39).

Fixed point: WoE values are rounded to ``2**-SCALE_BITS`` (``quantise_woe``) and shifted by
``2**OFFSET_BITS`` to be non-negative; all sums are exact integers, so the moments equal numpy products of
the quantised values on pooled rows (``Moments.from_rows``) to float rounding.
"""

from __future__ import annotations

import numpy as np

from tandem.crypto.he import HeError, PublicHe, SecretHe, random_masks
from tandem.errors import InputError
from tandem.learn.scorecard.shared import CHUNK_ROWS, MAX_FEATURES, State
from tandem.learn.scorecard.tables import BinTable
from tandem.protocols.errors import LocalProtocolError
from tandem.protocols.framing import frame_blobs, unframe_blobs
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import GramColumns, GramStart, GramSums

SCALE_BITS = 32
OFFSET_BITS = 37  # |WoE| < 2**(OFFSET_BITS - SCALE_BITS) = 32: a bin's event odds would be e^32 from the base
MAX_ROWS = 1 << 24  # a slot sums at most 2**62: rows * 2**(OFFSET_BITS + 1) stay below it
_Q, _OFF = 1 << SCALE_BITS, 1 << OFFSET_BITS


def quantise_woe(x: np.ndarray) -> np.ndarray:
    """WoE values (any shape, float64) rounded to the fixed-point grid every party and the reference use."""
    return np.round(np.asarray(x, dtype=np.float64) * _Q) / _Q


def _shifted(x: np.ndarray) -> np.ndarray:
    """Quantised WoE values -> non-negative Python ints ``round(x * 2**32) + 2**37`` (same shape)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all() or (np.abs(x) >= _OFF / _Q).any():
        raise InputError(f"WoE values must be finite and below {_OFF // _Q} in magnitude")
    return np.vectorize(lambda v: int(v) + _OFF, otypes=[object])(np.round(x * _Q))


def pair_order(n_features: int, n_own: int) -> list[tuple[int, int | None]]:
    """What ``GramSums`` holds, two blobs each: per passive feature j, ``(j, None)`` (against every own
    column, if there are any), then ``(j, l)`` for every later passive feature l."""
    out: list[tuple[int, int | None]] = []
    for j in range(n_features):
        if n_own:
            out.append((j, None))
        out.extend((j, lo) for lo in range(j + 1, n_features))
    return out


class ActiveGram(Role):
    """The label holder. ``y`` (n,) 0/1 labels of the training rows; ``own`` (n, k) float64 the quantised WoE
    of its own selected features (k may be 0); ``tables`` the ``BinTable`` of each selected passive feature,
    in that party's order; ``he`` its secret keys (those of binning).

    After ``DONE``: ``names_`` (own names, then passive names), ``xtx_`` ((1+k+f), (1+k+f)) float64 ``AᵀA``
    with the intercept first, ``xty_`` (1+k+f,) ``Aᵀy``.
    """

    def __init__(
        self,
        session: str,
        y: np.ndarray,
        own: np.ndarray,
        own_names: list[str],
        tables: list[BinTable],
        he: SecretHe,
        chunk_rows: int = CHUNK_ROWS,
    ):
        y, own = np.asarray(y, dtype=np.float64), np.asarray(own, dtype=np.float64).reshape(len(y), -1)
        if own.shape[1] != len(own_names) or len(tables) > MAX_FEATURES:
            raise InputError(f"one name per own column and at most {MAX_FEATURES} passive features are needed")
        if len(y) > MAX_ROWS:
            raise InputError(f"at most {MAX_ROWS:,} training rows, got {len(y):,}")
        for t in tables:
            if int(t.counts.sum()) != len(y):
                raise InputError(f"passive feature '{t.name}': its bins hold {t.counts.sum()} rows, not {len(y)}")
        self.session, self.y, self.own, self.own_names, self.tables, self.he = session, y, own, own_names, tables, he
        self.woe = [quantise_woe(t.woe) for t in tables]
        self.own_shifted = _shifted(own)
        self.chunk_rows = chunk_rows
        self.state = State.START
        self.names_: list[str] = []
        self.xtx_ = np.zeros((0, 0))
        self.xty_ = np.zeros(0)

    def start(self) -> list[Message]:
        n, k = len(self.y), self.own.shape[1]
        table = b""
        if self.tables:
            table = self.he.dump(self.he.encrypt_slots(_shifted(np.concatenate(self.woe)).reshape(-1, 1)))
        out: list[Message] = [GramStart(self.session, [t.name for t in self.tables], k, n, table)]
        if k and self.tables:
            starts = list(range(0, n, self.chunk_rows))
            for seq, first in enumerate(starts):
                cts = self.he.encrypt_slots(self.own_shifted[first : first + self.chunk_rows])
                part = min(self.chunk_rows, n - first)
                out.append(GramColumns(self.session, seq, first, part, seq == len(starts) - 1, self.he.dump(cts)))
        self.state = State.WAIT_SUMS
        return out

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _entry(self, j: int, masked, weighted, n_slots: int, other_sums: list[int]) -> np.ndarray:
        """Unmask ``Σ_i (W_j + off)(v + off)`` for each of ``n_slots`` paired columns v; return ``Σ_i W_j v``
        (float64, (n_slots,)); ``other_sums`` (n_slots,) Python ints: ``Σ_i round(v * 2**32)``."""
        shifted_w = _shifted(self.woe[j])
        try:
            sums = self.he.decrypt_slots(masked, n_slots)
            masks = self.he.decrypt_ints(weighted)
        except HeError:
            self._fail("gram sums are not readable ciphertexts of the agreed shape")
        if sums.shape != (len(shifted_w), n_slots) or masks.shape != (n_slots, 1):
            self._fail("gram sums have the wrong shape")
        n = len(self.y)
        w_sum = sum(int(w) * int(c) for w, c in zip(np.round(self.woe[j] * _Q), self.tables[j].counts))
        out = np.empty(n_slots)
        for s in range(n_slots):
            total = sum(int(w) * int(v) for w, v in zip(shifted_w, sums[:, s])) - int(masks[s, 0])
            exact = total - _OFF * (w_sum + int(other_sums[s])) - n * _OFF * _OFF
            out[s] = exact / (_Q * _Q)
        if (np.abs(out) > n * (_OFF / _Q) ** 2).any():
            self._fail(f"gram sums of passive feature '{self.tables[j].name}' are out of range")
        return out

    def _on_sums(self, msg: GramSums) -> list[Message]:
        k, f = self.own.shape[1], len(self.tables)
        order = pair_order(f, k)
        if msg.n_blobs != 2 * len(order):
            self._fail(f"gram sums hold {msg.n_blobs} blobs, {2 * len(order)} expected")
        try:
            blobs = [self.he.load(b) for b in unframe_blobs(msg.payload, msg.n_blobs)]
        except HeError:
            self._fail("gram sums are not readable ciphertexts")
        own_q = np.round(self.own * _Q)
        own_sums = [int(v) for v in own_q.sum(axis=0)] if k else []
        passive_sums = [
            sum(int(w) * int(c) for w, c in zip(np.round(wj * _Q), t.counts)) for wj, t in zip(self.woe, self.tables)
        ]
        p = 1 + k + f
        xtx = np.zeros((p, p))
        a = np.column_stack([np.ones(len(self.y)), self.own])
        xtx[: 1 + k, : 1 + k] = a.T @ a
        for j, (t, w) in enumerate(zip(self.tables, self.woe)):
            xtx[0, 1 + k + j] = xtx[1 + k + j, 0] = float(w @ t.counts)
            xtx[1 + k + j, 1 + k + j] = float((w * w) @ t.counts)
        for idx, (j, lo) in enumerate(order):
            masked, weighted = blobs[2 * idx], blobs[2 * idx + 1]
            if lo is None:
                xtx[1 : 1 + k, 1 + k + j] = xtx[1 + k + j, 1 : 1 + k] = self._entry(j, masked, weighted, k, own_sums)
            else:
                value = self._entry(j, masked, weighted, 1, [passive_sums[lo]])[0]
                xtx[1 + k + j, 1 + k + lo] = xtx[1 + k + lo, 1 + k + j] = value
        xty = np.concatenate(
            [[self.y.sum()], self.own.T @ self.y, [float(w @ t.events) for t, w in zip(self.tables, self.woe)]]
        )
        self.names_ = list(self.own_names) + [t.name for t in self.tables]
        self.xtx_, self.xty_ = xtx, xty
        self.state = State.DONE
        return []

    HANDLERS = {(State.WAIT_SUMS, GramSums): _on_sums}


class PassiveGram(Role):
    """A passive party. ``bins`` (n, F) int: the final bin of each training row in each of its features (shared
    order); ``n_bins`` (F,) the bins per feature; ``names`` its features' names as the label holder knows
    them; ``he`` the label holder's public key (from binning).

    Sums what ``GramStart`` / ``GramColumns`` carry over its bins, masks the sums and answers ``GramSums``.
    """

    def __init__(self, session: str, bins: np.ndarray, n_bins: list[int], names: list[str], he: PublicHe):
        bins = np.asarray(bins, dtype=np.int64)
        if bins.ndim != 2 or bins.shape[1] != len(names) or len(n_bins) != len(names):
            raise LocalProtocolError("bins must be (rows, features) with one name and bin count per feature")
        if len(bins) and ((bins < 0) | (bins >= np.asarray(n_bins))).any():
            raise LocalProtocolError("bin ids do not fit the bin counts")
        self.session, self.bins, self.n_bins, self.names, self.he = session, bins, list(n_bins), list(names), he
        self.state = State.START
        self.picked: list[int] = []
        self.tables: list = []
        self.n_own = 0
        self._sums: list = []
        self._next = (0, 0)

    def start(self) -> list[Message]:
        self.state = State.WAIT_KEY
        return []

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_start(self, msg: GramStart) -> list[Message]:
        if msg.n_rows != len(self.bins):
            self._fail(f"label holder has {msg.n_rows} training rows, this party {len(self.bins)}")
        if len(set(msg.features)) != len(msg.features) or set(msg.features) - set(self.names):
            self._fail("gram start names features this party does not have, or one twice")
        picked = sorted(self.names.index(x) for x in msg.features)
        if [self.names[i] for i in picked] != msg.features:
            self._fail("gram start does not name the features in this party's order")
        if not 0 <= msg.n_own <= MAX_FEATURES:
            self._fail(f"gram start announces {msg.n_own} own columns")
        if not picked:
            if msg.payload:
                self._fail("gram start without features holds a payload")
            self.state = State.DONE
            return [GramSums(self.session, 0, b"")]
        sizes = [self.n_bins[i] for i in picked]
        try:
            table = self.he.load(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        if table.rows != sum(sizes) or table.cols != 1:
            self._fail(f"gram start holds {table.rows} WoE ciphertexts, the features have {sum(sizes)} bins")
        ends = np.cumsum(sizes)
        self.tables = [table[list(range(e - s, e))] for s, e in zip(sizes, ends)]
        self.picked, self.n_own = picked, msg.n_own
        if msg.n_own == 0:
            return self._answer()
        self.state = State.WAIT_LABELS
        return []

    def _on_columns(self, msg: GramColumns) -> list[Message]:
        n = len(self.bins)
        if (msg.seq, msg.first) != self._next or msg.n_rows < 1 or msg.first + msg.n_rows > n:
            self._fail(f"gram columns chunk {msg.seq} (rows {msg.first}+{msg.n_rows}) out of order or range")
        if msg.last != (msg.first + msg.n_rows == n):
            self._fail("gram columns end before or after the last training row")
        try:
            cts = self.he.load(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        if cts.rows != msg.n_rows or cts.cols != -(-self.n_own // self.he.slots_per_plaintext):
            self._fail("gram columns do not match the rows and columns announced")
        rows = slice(msg.first, msg.first + msg.n_rows)
        parts = [self.he.group_sums(cts, self.bins[rows, j], self.n_bins[j]) for j in self.picked]
        self._sums = parts if msg.seq == 0 else [self.he.add(s, p) for s, p in zip(self._sums, parts)]
        self._next = (msg.seq + 1, msg.first + msg.n_rows)
        return self._answer() if msg.last else []

    def _masked(self, sums, table, n_slots: int) -> list[bytes]:
        masks = random_masks(sums.rows, n_slots)
        return [self.he.dump(self.he.add_masks(sums, masks)), self.he.dump(self.he.weighted_sums(masks.T, table))]

    def _answer(self) -> list[Message]:
        blobs: list[bytes] = []
        for j, lo in pair_order(len(self.picked), self.n_own):
            fj = self.picked[j]
            if lo is None:
                blobs += self._masked(self._sums[j], self.tables[j], self.n_own)
                continue
            fl = self.picked[lo]
            joint = np.zeros((self.n_bins[fj], self.n_bins[fl]), dtype=np.int64)
            np.add.at(joint, (self.bins[:, fj], self.bins[:, fl]), 1)
            sums = self.he.weighted_sums(joint.astype(object), self.tables[lo])
            blobs += self._masked(sums, self.tables[j], 1)
        self.state = State.DONE
        return [GramSums(self.session, len(blobs), frame_blobs(blobs))]

    HANDLERS = {(State.WAIT_KEY, GramStart): _on_start, (State.WAIT_LABELS, GramColumns): _on_columns}

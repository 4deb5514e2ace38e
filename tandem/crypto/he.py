"""Additively homomorphic encryption for federated boosting (sf-heu), behind a narrow door.

Okamoto-Uchiyama with 2048-bit keys by default (Paillier as an option). A row's gradient
and hessian travel as ONE plaintext: both are fixed-point integers with ``SCALE_BITS``
fractional bits, packed as ``g * 2**FIELD_BITS + h`` (``h >= 0``, so the low field never
borrows). Sums of packed values unpack exactly as long as the hessian sum stays below
``2**FIELD_BITS``: with ``h <= 1`` that holds for up to 2**31 rows.

Only ``SecretHe`` (the label holder) can decrypt. ``PublicHe`` (a passive party) can
only sum by bucket.

Insight uses the same door for integer sums by group: non-negative integers packed
``SLOT_BITS`` to a slot, several slots to a plaintext (``pack_slots``), summed by group with the
same bucket-sum primitive (``PublicHe.group_sums``) and hidden under fresh random masks
(``PublicHe.add_masks``) before the key holder decrypts them (``SecretHe.decrypt_slots``).
"""

from __future__ import annotations

import os
import secrets
import sys
from functools import lru_cache

import numpy as np
from heu import numpy as hnp
from heu import phe

from tandem.crypto.key_size import MAX_KEY_BITS, min_key_bits

SCALE_BITS = 32
FIELD_BITS = 64
# A bucket sum g * 2**64 + h stays below 2**127 in magnitude (|g|, h < 2**62 up to 2**27 rows of gradients
# in [-8, 8] after GOSS's amplification), so packed sums take 128 bits each, several to one ciphertext.
PACKED_SUM_BITS = 2 * FIELD_BITS
SCHEMES = {"ou": phe.SchemaType.OU, "paillier": phe.SchemaType.ZPaillier}
DEFAULT_SCHEME, DEFAULT_KEY_BITS = "ou", 2048
_FORMAT = hnp.MatrixSerializeFormat.Best

# Insight slots: a slot holds a sum below 2**SUM_BITS plus a mask drawn from [2**MASK_BITS, 2**(MASK_BITS + 1));
# their total stays below 2**SLOT_BITS, so slots never carry into each other, and the mask hides the sum to
# within a statistical distance of 2**(SUM_BITS - MASK_BITS) = 2**-39.
SUM_BITS, MASK_BITS, SLOT_BITS = 62, 101, 104


class HeError(ValueError):
    """Ciphertexts or keys that cannot be used (opaque on purpose)."""


def quantise(x: np.ndarray) -> np.ndarray:
    """Float gradients/hessians -> fixed-point int64 (shape kept)."""
    return np.round(np.asarray(x, dtype=np.float64) * (1 << SCALE_BITS)).astype(np.int64)


def dequantise(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) / (1 << SCALE_BITS)


def pack(g_q: np.ndarray, h_q: np.ndarray) -> np.ndarray:
    """Shape ``(n,)`` int64 pairs -> ``(n, 1)`` Python ints ``g * 2**64 + h``."""
    if (h_q < 0).any():
        raise ValueError("hessians must be non-negative")
    shift = 1 << FIELD_BITS
    return np.array([int(g) * shift + int(h) for g, h in zip(g_q.tolist(), h_q.tolist())], dtype=object).reshape(-1, 1)


def unpack(values) -> tuple[np.ndarray, np.ndarray]:
    """Packed sums (any shape of Python ints) -> ``(g_sum, h_sum)`` int64 arrays of that shape."""
    flat = np.asarray(values, dtype=object).ravel()
    mask = (1 << FIELD_BITS) - 1
    h = np.array([int(v) & mask for v in flat], dtype=np.int64)
    g = np.array([(int(v) - (int(v) & mask)) >> FIELD_BITS for v in flat], dtype=np.int64)
    shape = np.asarray(values, dtype=object).shape
    return g.reshape(shape), h.reshape(shape)


_pool_started = False


def _start_pool_quietly(kit) -> None:
    """sf-heu writes one info line to stdout when its thread pool starts (the first parallel call in a
    process); start it with stdout pointed at /dev/null, so command output (JSON included) stays clean."""
    global _pool_started
    if _pool_started:
        return
    _pool_started = True
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        kit.encryptor().encrypt(kit.array(np.zeros((4, 1), dtype=object), phe.BigintEncoderParams()))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


class PublicHe:
    """A passive party's view: the public key; add, subtract, bucket sums; (de)serialise."""

    def __init__(self, kit):
        self._kit = kit
        self._evaluator = kit.evaluator()
        _start_pool_quietly(kit)

    @classmethod
    def from_bytes(cls, public_key: bytes) -> PublicHe:
        return cls(_public_kit(bytes(public_key)))

    def load(self, blob: bytes):
        """Ciphertexts from their wire form."""
        try:
            return hnp.CiphertextArray.load_from(blob)
        except Exception:
            raise HeError("received malformed ciphertexts") from None

    @staticmethod
    def dump(ciphertexts) -> bytes:
        return ciphertexts.serialize(_FORMAT)

    def bucket_sums(self, ciphertexts, picks: np.ndarray, binned: np.ndarray, n_bins: int) -> list[bytes]:
        """Encrypted per-(feature, bin) sums as serialised passes: ``SecretHe.decrypt_bucket_sums`` reads
        them (one pass up to 127 bins, else two or three; ``tandem.protocols.framing`` frames them).

        ``ciphertexts`` is ``(m, 1)`` (one packed value per row), ``picks`` (k,) indexes it,
        ``binned`` (k, f) uint8 holds the bins of the picked rows, the last bin (``n_bins - 1``)
        being the missing-value bin. The library sums into at most 127 buckets, so more bins
        take two passes over clamped bins plus one over the rows with a missing value.
        """
        sums = BucketSums(self, n_bins)
        sums.add(ciphertexts, picks, binned)
        return sums.passes()

    def _pass_arrays(self, ciphertexts, picks: np.ndarray, binned: np.ndarray, n_bins: int) -> dict:
        """``bucket_sums`` before serialising: pass number -> encrypted sums (no entry for an empty pass)."""
        sub = ciphertexts[picks.tolist()]
        if n_bins <= 127:
            return {0: self._bucket_pass(sub, binned, n_bins)}
        b = binned.astype(np.int16)
        missing = b == n_bins - 1
        low = np.where(missing, 127, np.minimum(b, 127))  # bins 0..126 exact, the rest in 127
        high = np.where(missing, 0, np.clip(b - 127, 0, 127))  # bins 128.. exact, 0..127 + missing in 0
        passes = {0: self._bucket_pass(sub, low, 128), 1: self._bucket_pass(sub, high, 128)}
        with_missing = np.flatnonzero(missing.any(axis=1))
        if len(with_missing):
            passes[2] = self._bucket_pass(ciphertexts[picks[with_missing].tolist()], missing[with_missing], 2)
        return passes

    def _bucket_pass(self, sub, order: np.ndarray, n_buckets: int):
        select = np.ones((1, len(order)), dtype=np.int8)
        order = np.ascontiguousarray(order.astype(np.int8))
        return self._evaluator.feature_wise_bucket_sum(sub, select, order, n_buckets, False)

    @property
    def sums_per_ciphertext(self) -> int:
        """How many ``PACKED_SUM_BITS`` bucket sums ``pack_sums`` puts in one ciphertext (5 for OU 2048)."""
        bound = int(str(self._kit.public_key().plaintext_bound()))
        return max(1, (bound.bit_length() - 1) // PACKED_SUM_BITS)

    def pack_sums(self, sums):
        """``(m, 1)`` encrypted sums -> ``(ceil(m / per), 1)``: ciphertext ``i`` holds sums ``i * per + j`` at
        bits ``128 j`` (signed, Horner's rule with ciphertext x plaintext products); the last ciphertext's
        unused slots repeat sum ``m - 1`` (a value the key holder reads anyway), as arrays cannot be padded."""
        per, m = self.sums_per_ciphertext, sums.rows
        groups = -(-m // per)
        shift = self._kit.array(np.full((groups, 1), 1 << PACKED_SUM_BITS, dtype=object), phe.BigintEncoderParams())
        acc = None
        for j in reversed(range(per)):
            slot = sums[[min(g * per + j, m - 1) for g in range(groups)]]
            acc = slot if acc is None else self._evaluator.add(self._evaluator.mul(acc, shift), slot)
        return acc

    def encrypt_gh(self, g_q: np.ndarray, h_q: np.ndarray):
        """Encrypt packed fixed-point gradients and hessians: ``(n,)`` + ``(n,)`` -> ``(n, 1)`` ciphertexts
        (a public-key operation: ``encrypted_gh`` runs it in a worker process)."""
        plain = self._kit.array(pack(g_q, h_q), phe.BigintEncoderParams())
        return self._kit.encryptor().encrypt(plain)

    # --- Insight: sums by group of packed integer slots ---------------------------------------

    @property
    def slots_per_plaintext(self) -> int:
        """How many ``SLOT_BITS`` slots fit in one plaintext of this key (6 for OU 2048)."""
        bound = int(str(self._kit.public_key().plaintext_bound()))
        return max(1, (bound.bit_length() - 2) // SLOT_BITS)

    def encrypt_slots(self, values: np.ndarray):
        """Encrypt ``(n, s)`` non-negative integers below ``2**SUM_BITS``, packed: ``(n, ceil(s / per))``
        ciphertexts, ``per = slots_per_plaintext``."""
        plain = self._kit.array(pack_slots(values, self.slots_per_plaintext), phe.BigintEncoderParams())
        return self._kit.encryptor().encrypt(plain)

    def add(self, a, b):
        """Ciphertexts ``a + b`` (same shape)."""
        return self._evaluator.add(a, b)

    def group_sums(self, ciphertexts, groups: np.ndarray, n_groups: int):
        """Encrypted sums of the rows of each group: ``ciphertexts`` ``(m, c)``, ``groups`` ``(m,)`` ints in
        ``[0, n_groups)`` or ``-1`` (left out) -> ``(n_groups, c)`` ciphertexts.

        One bucket-sum pass, as for a histogram: the bucket-sum primitive takes at most 128 buckets, so
        groups are spread over ``ceil(n_groups / 127)`` columns of 127 groups each, the last bucket of a
        column collecting the rows of the other columns' groups (and then dropped).
        """
        groups = np.asarray(groups, dtype=np.int64)
        if len(groups) != ciphertexts.rows or ((groups < -1) | (groups >= n_groups)).any():
            raise ValueError("one group in [-1, n_groups) per ciphertext row")
        take = groups >= 0
        if not take.any():
            return self.encrypt_slots(np.zeros((n_groups, ciphertexts.cols * self.slots_per_plaintext), np.int64))
        if n_groups <= 128:
            order = np.where(take, groups, 0).reshape(-1, 1)
            return self._evaluator.feature_wise_bucket_sum(
                ciphertexts,
                take.astype(np.int8).reshape(1, -1),
                np.ascontiguousarray(order.astype(np.int8)),
                n_groups,
                False,
            )
        columns = -(-n_groups // 127)
        first = np.arange(columns) * 127
        local = groups[:, None] - first[None, :]
        order = np.where((local >= 0) & (local < 127), local, 127).astype(np.int8)
        sums = self._evaluator.feature_wise_bucket_sum(
            ciphertexts, take.astype(np.int8).reshape(1, -1), np.ascontiguousarray(order), 128, False
        )
        return sums[[(g // 127) * 128 + g % 127 for g in range(n_groups)]]

    def weighted_sums(self, weights: np.ndarray, ciphertexts):
        """Encrypted ``weights @ values``: ``weights`` ``(g, m)`` non-negative Python ints, ``ciphertexts``
        ``(m, 1)`` single-slot values -> ``(g, 1)`` ciphertexts (the plaintext-ciphertext product of the
        library; the scorecard's second moments use it)."""
        w = np.asarray(weights, dtype=object)
        if w.ndim != 2 or w.shape[1] != ciphertexts.rows or any(int(v) < 0 for v in w.ravel()):
            raise ValueError("weights must be (g, m) non-negative integers, m = the ciphertext rows")
        return self._evaluator.matmul(self._kit.array(w, phe.BigintEncoderParams()), ciphertexts)

    def add_masks(self, sums, masks: np.ndarray):
        """``sums`` ``(g, c)`` plus a FRESH encryption of ``masks`` ``(g, s)`` (from ``random_masks``): the
        result is re-randomised, so the key holder cannot tie it to the ciphertexts it made."""
        return self._evaluator.add(sums, self.encrypt_slots(masks))


class BucketSums:
    """``PublicHe.bucket_sums`` taken over rows that arrive in parts (ciphertexts streamed in chunks):
    ``add`` each part's rows, then ``passes()`` serialises the sums of all of them."""

    def __init__(self, he: PublicHe, n_bins: int):
        self._he, self._n_bins = he, n_bins
        self._sums: dict = {}

    def add(self, ciphertexts, picks: np.ndarray, binned: np.ndarray) -> None:
        """Add rows ``picks`` (k,) of ``ciphertexts`` ``(m, 1)`` with their bins ``binned`` (k, f) uint8."""
        if len(picks) == 0:
            return
        for i, part in self._he._pass_arrays(ciphertexts, picks, binned, self._n_bins).items():
            self._sums[i] = part if i not in self._sums else self._he.add(self._sums[i], part)

    def passes(self, packed: bool = False) -> list[bytes]:
        """The serialised passes; ``packed``: ``sums_per_ciphertext`` sums to each ciphertext (FATE's cipher
        compression: fewer bytes to send and fewer decryptions; ``decrypt_bucket_sums(..., packed=True)``)."""
        if not self._sums:
            raise ValueError("no rows to sum")
        he = self._he
        return [he.dump(he.pack_sums(self._sums[i]) if packed else self._sums[i]) for i in sorted(self._sums)]


class SecretHe(PublicHe):
    """The label holder's keys: everything ``PublicHe`` does, plus encrypt and decrypt."""

    @classmethod
    def generate(cls, scheme: str = DEFAULT_SCHEME, key_bits: int = DEFAULT_KEY_BITS) -> SecretHe:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}")
        if not min_key_bits() <= key_bits <= MAX_KEY_BITS:
            raise HeError(f"key size must be between {min_key_bits()} and {MAX_KEY_BITS} bits, got {key_bits}")
        return cls(hnp.setup(SCHEMES[scheme], key_bits))

    def public_bytes(self) -> bytes:
        return self._kit.public_key().__getstate__()

    def decrypt_sums(self, ciphertexts) -> tuple[np.ndarray, np.ndarray]:
        """Decrypt packed sums -> ``(g_sum, h_sum)`` fixed-point int64, shape ``(rows,)``."""
        values = self._kit.decryptor().decrypt(ciphertexts).to_numpy()
        g, h = unpack(values[:, 0])
        return g, h

    def decrypt_slots(self, ciphertexts, n_slots: int) -> np.ndarray:
        """Packed ``(g, c)`` ciphertexts -> ``(g, n_slots)`` Python ints (``HeError`` if they cannot be slots)."""
        if ciphertexts.cols != -(-n_slots // self.slots_per_plaintext):
            raise HeError("sums have the wrong shape")
        return unpack_slots(self._kit.decryptor().decrypt(ciphertexts).to_numpy(), n_slots, self.slots_per_plaintext)

    def decrypt_ints(self, ciphertexts) -> np.ndarray:
        """Ciphertexts -> their plaintexts as Python ints, same shape (for values that are not slots)."""
        return np.asarray(self._kit.decryptor().decrypt(ciphertexts).to_numpy(), dtype=object)

    def _decrypt_pass(self, blob: bytes, m: int, packed: bool) -> tuple[np.ndarray, np.ndarray]:
        """One pass of ``m`` sums -> ``(g_sum, h_sum)`` (m,) each (``HeError`` if it holds another number)."""
        cts = self.load(blob)
        if not packed:
            if cts.rows != m:
                raise HeError("bucket sums have the wrong size")
            return self.decrypt_sums(cts)
        per = self.sums_per_ciphertext
        if cts.cols != 1 or cts.rows != -(-m // per):
            raise HeError("bucket sums have the wrong size")
        half, low = 1 << (PACKED_SUM_BITS - 1), (1 << PACKED_SUM_BITS) - 1
        values = []
        for packed_sum in self.decrypt_ints(cts)[:, 0].tolist():
            for _ in range(per):
                v = ((packed_sum + half) & low) - half  # the lowest slot, signed
                values.append(v)
                packed_sum = (packed_sum - v) >> PACKED_SUM_BITS
        return unpack(values[:m])

    def decrypt_bucket_sums(
        self, passes: list[bytes], n_features: int, n_bins: int, packed: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``bucket_sums`` passes (``BucketSums.passes(packed)``) -> ``(g_sum, h_sum)`` fixed-point int64, each
        ``(n_features, n_bins)``."""
        if n_bins <= 127:
            if len(passes) != 1:
                raise HeError("malformed bucket sums")
            g, h = self._decrypt_pass(passes[0], n_features * n_bins, packed)
            return g.reshape(n_features, n_bins), h.reshape(n_features, n_bins)
        if not 2 <= len(passes) <= 3:
            raise HeError("malformed bucket sums")
        sizes = [n_features * 128, n_features * 128, n_features * 2]
        parts = [np.stack(self._decrypt_pass(blob, m, packed)) for blob, m in zip(passes, sizes, strict=False)]
        low, high = (p.reshape(2, n_features, 128) for p in parts[:2])
        missing = (
            parts[2].reshape(2, n_features, 2)[:, :, 1] if len(parts) == 3 else np.zeros((2, n_features), np.int64)
        )
        out = np.zeros((2, n_features, n_bins), dtype=np.int64)
        out[:, :, :127] = low[:, :, :127]
        out[:, :, 128 : n_bins - 1] = high[:, :, 1 : n_bins - 128]
        out[:, :, 127] = high[:, :, 0] - missing - low[:, :, :127].sum(axis=2)
        out[:, :, n_bins - 1] = missing
        return out[0], out[1]


def encrypted_gh(public_key: bytes, g_q: np.ndarray, h_q: np.ndarray) -> bytes:
    """``encrypt_gh`` serialised, from the public key alone: an engine worker's task. The library holds
    Python's lock while it encrypts, so in the node's own process the thread that sends the previous
    part would stand still meanwhile."""
    he = PublicHe.from_bytes(public_key)
    return he.dump(he.encrypt_gh(g_q, h_q))


@lru_cache(maxsize=8)
def _public_kit(public_key: bytes):
    """A kit for a received public key (reading one takes ~0.2 s; insight makes a fresh key per query)."""
    try:
        key = phe.PublicKey.__new__(phe.PublicKey)
        key.__setstate__(public_key)
        return hnp.setup(key)
    except Exception:  # the library raises several types for a bad key
        raise HeError("received an unusable public key") from None


def pack_slots(values: np.ndarray, per: int) -> np.ndarray:
    """``(n, s)`` non-negative integers -> ``(n, ceil(s / per))`` Python ints; slot ``j`` sits at bits
    ``[SLOT_BITS * (j % per), ...)`` of column ``j // per``."""
    rows = np.asarray(values, dtype=object)
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise ValueError("slots must be a 2-d array with at least one column")
    n, s = rows.shape
    cols = -(-s // per)
    out = np.empty((n, cols), dtype=object)
    limit = 1 << SLOT_BITS
    for c in range(cols):
        chunk = rows[:, c * per : (c + 1) * per].tolist()
        packed = []
        for row in chunk:
            acc = 0
            for k, v in enumerate(row):
                v = int(v)
                if not 0 <= v < limit:
                    raise ValueError("slot values must be in [0, 2**SLOT_BITS)")
                acc |= v << (SLOT_BITS * k)
            packed.append(acc)
        out[:, c] = packed
    return out


def unpack_slots(packed: np.ndarray, n_slots: int, per: int) -> np.ndarray:
    """Inverse of ``pack_slots``: ``(g, c)`` Python ints -> ``(g, n_slots)`` Python ints."""
    packed = np.asarray(packed, dtype=object)
    if packed.ndim != 2 or packed.shape[1] != -(-n_slots // per):
        raise HeError("sums have the wrong shape")
    mask = (1 << SLOT_BITS) - 1
    out = np.empty((packed.shape[0], n_slots), dtype=object)
    for j in range(n_slots):
        col = packed[:, j // per].tolist()
        shift = SLOT_BITS * (j % per)
        if any(int(v) < 0 or int(v) >> (SLOT_BITS * per) for v in col):
            raise HeError("sums are out of range")
        out[:, j] = [(int(v) >> shift) & mask for v in col]
    return out


def random_masks(n_groups: int, n_slots: int) -> np.ndarray:
    """``(n_groups, n_slots)`` Python ints, uniform in ``[2**MASK_BITS, 2**(MASK_BITS + 1))``, from ``secrets``."""
    out = np.empty((n_groups, n_slots), dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = (1 << MASK_BITS) | secrets.randbits(MASK_BITS)
    return out


def looks_masked(values: np.ndarray) -> bool:
    """Whether every decrypted slot of ``values`` lies where a sum below ``2**SUM_BITS`` plus a mask of
    ``random_masks`` can: ``[2**MASK_BITS, 2**(MASK_BITS + 1) + 2**SUM_BITS)``. A row's own ciphertext, or
    any sum of rows without a mask, decrypts below ``2**SUM_BITS`` and fails."""
    low, high = 1 << MASK_BITS, (1 << (MASK_BITS + 1)) + (1 << SUM_BITS)
    return all(low <= int(v) < high for v in np.asarray(values, dtype=object).ravel())


def row_bytes(ciphertexts) -> list[bytes]:
    """The wire form of each row of ``(g, c)`` ciphertexts (to compare rows: equal bytes, equal ciphertexts)."""
    return [b"".join(ciphertexts[r, c].serialize() for c in range(ciphertexts.cols)) for r in range(ciphertexts.rows)]

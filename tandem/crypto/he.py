"""Additively homomorphic encryption for federated boosting (sf-heu), behind a narrow door.

Okamoto-Uchiyama with 2048-bit keys by default (Paillier as an option). A row's gradient
and hessian travel as ONE plaintext: both are fixed-point integers with ``SCALE_BITS``
fractional bits, packed as ``g * 2**FIELD_BITS + h`` (``h >= 0``, so the low field never
borrows). Sums of packed values unpack exactly as long as the hessian sum stays below
``2**FIELD_BITS``: with ``h <= 1`` that holds for up to 2**31 rows.

Only ``SecretHe`` (the label holder) can decrypt. ``PublicHe`` (a passive party) can
only sum by bucket.
"""

from __future__ import annotations

import numpy as np
from heu import numpy as hnp
from heu import phe

SCALE_BITS = 32
FIELD_BITS = 64
SCHEMES = {"ou": phe.SchemaType.OU, "paillier": phe.SchemaType.ZPaillier}
DEFAULT_SCHEME, DEFAULT_KEY_BITS = "ou", 2048
_FORMAT = hnp.MatrixSerializeFormat.Best


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


class PublicHe:
    """A passive party's view: the public key; add, subtract, bucket sums; (de)serialise."""

    def __init__(self, kit):
        self._kit = kit
        self._evaluator = kit.evaluator()

    @classmethod
    def from_bytes(cls, public_key: bytes) -> "PublicHe":
        try:
            key = phe.PublicKey.__new__(phe.PublicKey)
            key.__setstate__(public_key)
            return cls(hnp.setup(key))
        except Exception:   # the library raises several types for a bad key
            raise HeError("received an unusable public key") from None

    def load(self, blob: bytes):
        """Ciphertexts from their wire form."""
        try:
            return hnp.CiphertextArray.load_from(blob)
        except Exception:
            raise HeError("received malformed ciphertexts") from None

    @staticmethod
    def dump(ciphertexts) -> bytes:
        return ciphertexts.serialize(_FORMAT)

    def rows(self, n_bins: int) -> "EncryptedRows":
        """An empty store of one tree's ciphertexts, filled chunk by chunk (``EncryptedRows.add``)."""
        return EncryptedRows(self._evaluator, n_bins)


class EncryptedRows:
    """A passive party's ciphertexts for one tree, arriving in chunks, with its bins of those rows;
    ``bucket_sums(mask)`` sums any subset of them per (feature, bin) without copying ciphertexts.
    Each chunk is summed into the root (all rows) as it is added, so that work overlaps with the
    label holder encrypting the next chunk; ``root_sums()`` gives the total.

    The library sums into at most 127 buckets, so more bins take two passes over clamped
    bins plus one over the rows with a missing value (``SecretHe.decrypt_bucket_sums``
    undoes the clamping).
    """

    def __init__(self, evaluator, n_bins: int):
        self._ev, self.n_bins = evaluator, n_bins
        self._chunks: list[tuple[object, list[np.ndarray], np.ndarray]] = []   # (cts, order maps, missing)
        self.size = 0

    def add(self, ciphertexts, binned: np.ndarray) -> None:
        """``ciphertexts`` (k, 1) for the next k rows, whose bins are ``binned`` (k, f) uint8."""
        if ciphertexts.rows != len(binned):
            raise HeError("ciphertexts do not match their rows")
        if self.n_bins <= 127:
            orders = [np.ascontiguousarray(binned.astype(np.int8))]
            missing = np.zeros((len(binned), 0), dtype=bool)
        else:
            b = binned.astype(np.int16)
            missing = b == self.n_bins - 1
            orders = [np.ascontiguousarray(np.where(missing, 127, np.minimum(b, 127)).astype(np.int8)),  # 0..126 exact
                      np.ascontiguousarray(np.where(missing, 0, np.clip(b - 127, 0, 127)).astype(np.int8))]  # 128.. exact
        self._chunks.append((ciphertexts, orders, missing))
        self.size += len(binned)
        sums = self._sums(ciphertexts, orders, missing, np.ones(len(binned), dtype=bool))
        self._root = sums if len(self._chunks) == 1 else [self._add(a, b) for a, b in zip(self._root, sums)]

    def root_sums(self) -> bytes:
        """Encrypted sums of every row added, in wire form."""
        if not self._chunks:
            raise ValueError("no rows to sum")
        return self._wire(self._root)

    def bucket_sums(self, mask: np.ndarray) -> bytes:
        """Encrypted sums of the rows where ``mask`` (size,) is set, in wire form."""
        total, start = None, 0
        for cts, orders, missing in self._chunks:
            end = start + cts.rows
            if mask[start:end].any():
                sums = self._sums(cts, orders, missing, mask[start:end])
                total = sums if total is None else [self._add(a, b) for a, b in zip(total, sums)]
            start = end
        if total is None:
            raise ValueError("no rows to sum")
        return self._wire(total)

    def _wire(self, sums: list) -> bytes:
        blobs = [PublicHe.dump(p) for p in sums if p is not None]
        return blobs[0] if self.n_bins <= 127 else b"".join(len(b).to_bytes(8, "big") + b for b in blobs)

    def _add(self, a, b):
        return b if a is None else a if b is None else self._ev.add(a, b)

    def _sums(self, cts, orders, missing, sel: np.ndarray) -> list:
        select = sel.astype(np.int8).reshape(1, -1)
        buckets = self.n_bins if self.n_bins <= 127 else 128
        out = [self._ev.feature_wise_bucket_sum(cts, select, order, buckets, False) for order in orders]
        if self.n_bins > 127:
            rows = np.flatnonzero(sel & missing.any(axis=1))
            out.append(self._ev.feature_wise_bucket_sum(cts[rows.tolist()], np.ones((1, len(rows)), np.int8),
                                                        np.ascontiguousarray(missing[rows].astype(np.int8)), 2, False)
                       if len(rows) else None)
        return out


class SecretHe(PublicHe):
    """The label holder's keys: everything ``PublicHe`` does, plus encrypt and decrypt."""

    @classmethod
    def generate(cls, scheme: str = DEFAULT_SCHEME, key_bits: int = DEFAULT_KEY_BITS) -> "SecretHe":
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}")
        return cls(hnp.setup(SCHEMES[scheme], key_bits))

    def public_bytes(self) -> bytes:
        return self._kit.public_key().__getstate__()

    def encrypt_gh(self, g_q: np.ndarray, h_q: np.ndarray):
        """Encrypt packed fixed-point gradients and hessians: ``(n,)`` + ``(n,)`` -> ``(n, 1)`` ciphertexts."""
        plain = self._kit.array(pack(g_q, h_q), phe.BigintEncoderParams())
        return self._kit.encryptor().encrypt(plain)

    def decrypt_sums(self, ciphertexts) -> tuple[np.ndarray, np.ndarray]:
        """Decrypt packed sums -> ``(g_sum, h_sum)`` fixed-point int64, shape ``(rows,)``."""
        values = self._kit.decryptor().decrypt(ciphertexts).to_numpy()
        g, h = unpack(values[:, 0])
        return g, h

    def decrypt_bucket_sums(self, blob: bytes, n_features: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
        """``bucket_sums`` output -> ``(g_sum, h_sum)`` fixed-point int64, each ``(n_features, n_bins)``."""
        if n_bins <= 127:
            g, h = self.decrypt_sums(self.load(blob))
            if g.size != n_features * n_bins:
                raise HeError("bucket sums have the wrong size")
            return g.reshape(n_features, n_bins), h.reshape(n_features, n_bins)
        parts = []
        for blob_part in _unframe(blob):
            g, h = self.decrypt_sums(self.load(blob_part))
            parts.append(np.stack([g, h]))
        sizes = [p.shape[1] for p in parts]
        if sizes[:2] != [n_features * 128] * 2 or len(parts) > 3 or sizes[2:] not in ([], [n_features * 2]):
            raise HeError("bucket sums have the wrong size")
        low, high = (p.reshape(2, n_features, 128) for p in parts[:2])
        missing = parts[2].reshape(2, n_features, 2)[:, :, 1] if len(parts) == 3 else np.zeros((2, n_features), np.int64)
        out = np.zeros((2, n_features, n_bins), dtype=np.int64)
        out[:, :, :127] = low[:, :, :127]
        out[:, :, 128:n_bins - 1] = high[:, :, 1:n_bins - 128]
        out[:, :, 127] = high[:, :, 0] - missing - low[:, :, :127].sum(axis=2)
        out[:, :, n_bins - 1] = missing
        return out[0], out[1]


def _unframe(blob: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(blob):
        if i + 8 > len(blob):
            raise HeError("malformed bucket sums")
        n = int.from_bytes(blob[i:i + 8], "big")
        out.append(blob[i + 8:i + 8 + n])
        i += 8 + n
    if i != len(blob) or not out:
        raise HeError("malformed bucket sums")
    return out

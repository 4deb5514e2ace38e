"""How several blobs and row bitmaps travel inside one message's binary payload.

``frame_blobs`` writes each blob behind its length (``width`` bytes, big-endian): 4 bytes for
the payloads of the boost messages, 8 for the passes of encrypted bucket sums with more than
127 bins (``bucket_sums_payload``) and for the two parts of a node's histograms (``histogram_payload``:
the bucket structure as a bitmap, then the bucket sums). A row bitmap is ``numpy.packbits`` of an ``(n,)`` bool mask,
zero-padded to whole bytes. Reading either raises ``RemoteProtocolError``.
"""

from __future__ import annotations

import numpy as np

from tandem.protocols.errors import RemoteProtocolError

SINGLE_PASS_BINS = 127  # up to this many bins, encrypted bucket sums are one unframed blob


def frame_blobs(blobs: list[bytes], width: int = 4) -> bytes:
    return b"".join(len(b).to_bytes(width, "big") + b for b in blobs)


def unframe_blobs(payload: bytes, count: int | None = None, width: int = 4) -> list[bytes]:
    """The blobs of ``frame_blobs``; ``count`` (if given) must match."""
    out: list[bytes] = []
    i = 0
    while i < len(payload) and (count is None or len(out) < count):
        if i + width > len(payload):
            raise RemoteProtocolError("malformed framed payload")
        n = int.from_bytes(payload[i : i + width], "big")
        out.append(payload[i + width : i + width + n])
        i += width + n
    if i != len(payload) or (count is not None and len(out) != count):
        raise RemoteProtocolError("malformed framed payload")
    return out


def pack_mask(mask: np.ndarray) -> bytes:
    """``(n,)`` bool -> ``ceil(n / 8)`` bytes."""
    return np.packbits(mask.astype(bool)).tobytes()


def unpack_mask(blob: bytes, n: int) -> np.ndarray:
    """Inverse of ``pack_mask`` for ``n`` rows; the padding bits must be zero."""
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8))
    if len(bits) < n or len(bits) >= n + 8 or bits[n:].any():
        raise RemoteProtocolError("malformed row bitmap")
    return bits[:n].astype(bool)


def bucket_sums_payload(passes: list[bytes], n_bins: int) -> bytes:
    """The wire form of ``PublicHe.bucket_sums`` passes: the one pass itself up to
    ``SINGLE_PASS_BINS`` bins, else the passes framed with 8-byte lengths."""
    return passes[0] if n_bins <= SINGLE_PASS_BINS else frame_blobs(passes, width=8)


def bucket_sums_passes(payload: bytes, n_bins: int) -> list[bytes]:
    """Inverse of ``bucket_sums_payload``."""
    if n_bins <= SINGLE_PASS_BINS:
        return [payload]
    passes = unframe_blobs(payload, width=8)
    if not passes:
        raise RemoteProtocolError("malformed bucket sums")
    return passes


def histogram_payload(buckets: np.ndarray, passes: list[bytes], n_bins: int) -> bytes:
    """One node's ``EncryptedHistograms`` payload: ``buckets`` (f, n_bins) bool, the bucket
    structure the sums are taken over (packed), then the bucket sums (``bucket_sums_payload``)."""
    return frame_blobs([pack_mask(buckets.ravel()), bucket_sums_payload(passes, n_bins)], width=8)


def histogram_parts(payload: bytes, n_features: int, n_bins: int) -> tuple[np.ndarray, list[bytes]]:
    """Inverse of ``histogram_payload``: ``(buckets (f, n_bins) bool, passes)``."""
    buckets, sums = unframe_blobs(payload, 2, width=8)
    return unpack_mask(buckets, n_features * n_bins).reshape(n_features, n_bins), bucket_sums_passes(sums, n_bins)

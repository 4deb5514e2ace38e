"""Bin merging for passive features: no bucket sum the active party decrypts covers fewer than
``min_bin_rows`` rows.

A passive party's per-bin sums of gradients and hessians are decrypted exactly by the active
party, which knows every row's gradient: a bin holding one row at a node names that row's bin.
So, per node and feature, the passive party merges consecutive bins into *buckets* of at least
``k`` rows (of the tree's sample at that node) and sums per bucket; split candidates are only
the bucket boundaries. Both roles and the plaintext reference apply these functions, so their
trees stay identical.

A bucket structure ("cuts") of ``f`` features over ``n_bins`` bins is an ``(f, n_bins)`` bool
array: for ``b < missing_bin``, ``cuts[j, b]`` says value bin ``b`` ends a bucket
(``cuts[j, missing_bin - 1]`` is always true); ``cuts[j, missing_bin]`` says the missing-value
bin is a bucket of its own, else it is merged into the last value bucket (missing values then
always go right). A bucket's sum is reported at its last bin; its other bins read zero.

Siblings share one structure, a coarsening of their parent's: every bucket holds at least ``k``
rows in *both* children, so the sibling the active party derives as parent minus child is
covered too. A feature whose rows cannot fill two buckets becomes one bucket, the whole node,
whose sums the active party knows anyway (it knows the node's rows and their gradients).
"""

from __future__ import annotations

import numpy as np

MIN_BIN_ROWS = 5  # a passive party's default (its node config: ``[train] min_bin_rows``)


def bin_counts(binned: np.ndarray, n_bins: int) -> np.ndarray:
    """Rows per (feature, bin): ``binned`` (k, f) uint8 -> (f, n_bins) int64."""
    return np.stack([np.bincount(binned[:, j], minlength=n_bins) for j in range(binned.shape[1])]).astype(np.int64)


def all_cuts(n_features: int, n_bins: int) -> np.ndarray:
    """Every bin its own bucket (no merging): (f, n_bins) all true."""
    return np.ones((n_features, n_bins), dtype=bool)


def merge_bins(
    counts: list[np.ndarray], k: int, parent: np.ndarray | None = None, categorical: np.ndarray | None = None
) -> np.ndarray:
    """The bucket structure (f, n_bins) bool of one node (``counts`` one (f, n_bins) array) or of a
    pair of siblings (two), each bucket holding at least ``k`` rows in every one of them.

    ``parent``: the parent's structure, which the result coarsens (only its bucket ends can end
    a bucket, the missing bin stays merged once merged). ``k <= 1``: no merging.

    ``categorical`` (f,) bool: features whose bins are categories, never merged with each other (the
    split order, by gradient ratio, is not the bin order): such a feature keeps every bin its own
    bucket where each bin holds no row or at least ``k`` rows in every node (and its parent kept
    them), and is one bucket, the whole node (no candidate), otherwise.
    """
    c = np.stack(counts)  # (m, f, n_bins)
    m, f, n_bins = c.shape
    mb = n_bins - 1
    allowed = all_cuts(f, n_bins) if parent is None else parent.astype(bool)
    if k <= 1:
        return allowed.copy()
    cuts = np.zeros((f, n_bins), dtype=bool)
    acc = np.zeros((m, f), dtype=np.int64)
    for b in range(mb):  # greedy, left to right: close a bucket once every node holds k rows
        acc += c[:, :, b]
        close = allowed[:, b] & (acc >= k).all(axis=0)
        cuts[close, b] = True
        acc[:, close] = 0
    tail = ~cuts[:, mb - 1]  # rows after the last closed bucket (< k somewhere): into the previous one
    last = mb - 1 - np.argmax(cuts[:, mb - 1 :: -1], axis=1)  # last closed end (garbage where none)
    had = cuts[:, :mb].any(axis=1)
    cuts[np.flatnonzero(tail & had), last[tail & had]] = False
    cuts[:, mb - 1] = True
    one_bucket = cuts[:, :mb].sum(axis=1) == 1
    values_ok = (c[:, :, :mb].sum(axis=2) >= k).all(axis=0)
    cuts[:, mb] = allowed[:, mb] & (c[:, :, mb] >= k).all(axis=0) & ~(one_bucket & ~values_ok)
    if categorical is not None and categorical.any():
        whole = allowed.all(axis=1) & ((c == 0) | (c >= k)).all(axis=(0, 2))
        cuts[categorical] = False
        cuts[categorical, mb - 1] = True
        cuts[categorical & whole] = True
    return cuts


def bucket_bins(cuts: np.ndarray) -> np.ndarray:
    """Bin -> the bin its bucket's sum is reported at (the bucket's last bin): (f, n_bins) uint8."""
    f, n_bins = cuts.shape
    mb = n_bins - 1
    ends = np.where(cuts[:, :mb], np.arange(mb), mb)  # a bin's own index where it ends a bucket
    to = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]  # the first end at or after each bin
    return np.concatenate([to, np.where(cuts[:, mb], mb, mb - 1)[:, None]], axis=1).astype(np.uint8)


def to_buckets(binned: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Rows' bins (k, f) uint8 -> the bins their buckets are reported at (k, f) uint8."""
    to = bucket_bins(cuts)
    return np.take_along_axis(to.T, binned.astype(np.intp), axis=0) if len(binned) else binned.copy()


def coarsen(hist: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """A histogram (f, n_bins, 2) under a finer structure -> under ``cuts`` (sums moved to each
    bucket's last bin; exact: fixed-point values with power-of-two scale add without rounding)."""
    to = bucket_bins(cuts)
    out = np.zeros_like(hist)
    for j in range(hist.shape[0]):
        np.add.at(out[j], to[j], hist[j])
    return out


def is_cut(cuts: np.ndarray, feature: int, bin_: int, missing_left: bool) -> bool:
    """Whether the split (feature, bin_, missing_left) lies on this structure's bucket boundaries."""
    mb = cuts.shape[1] - 1
    return bool(0 <= bin_ < mb - 1 and cuts[feature, bin_] and (cuts[feature, mb] or not missing_left))

"""Find the best split of a node from its histogram (XGBoost's gain, with a learned missing direction)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.learn.options import DEFAULTS

_TOL = 1e-9


@dataclass(frozen=True)
class SplitParams:
    l2: float = DEFAULTS.l2  # lambda
    min_child_weight: float = DEFAULTS.min_child_weight  # minimum hessian sum in a child
    min_gain: float = 0.0  # gamma


@dataclass(frozen=True)
class Split:
    """Rows with ``bin <= bin_`` go left; missing values go left iff ``missing_left``."""

    feature: int
    bin_: int
    missing_left: bool
    gain: float
    left_g: float
    left_h: float


def leaf_weight(g: float, h: float, l2: float) -> float:
    return -g / (h + l2)


def best_split(
    hist: np.ndarray,
    missing_bin: int,
    params: SplitParams,
    features: np.ndarray | None = None,
    cuts: np.ndarray | None = None,
) -> Split | None:
    """The split with the largest gain over ``features`` (default: all), or ``None``.

    ``hist`` has shape ``(f, n_bins, 2)``; bin ``missing_bin`` holds missing values. ``cuts``
    (f, n_bins) bool, the bucket structure of ``tandem.learn.buckets`` (default: every bin its
    own bucket): only bucket boundaries are candidates, and a missing bin merged into the last
    value bucket cannot go left.
    Exact ties keep the first candidate in the order (missing right, then left; features
    ascending; bins ascending), so every builder of the same histograms picks the same split.
    """
    values = hist[:, :missing_bin, :]  # (f, b, 2) value bins
    missing = hist[:, missing_bin, :]  # (f, 2)
    total = values.sum(axis=1) + missing  # (f, 2); equal for every feature
    G, H = total[0]
    lam = params.l2
    parent = G * G / (H + lam)
    cum = np.cumsum(values, axis=1)[:, :-1, :]  # left sums for bin <= k, k < b-1
    best: Split | None = None
    best_gain = params.min_gain
    feats = range(hist.shape[0]) if features is None else features
    for missing_left in (False, True):
        left = cum + (missing[:, None, :] if missing_left else 0.0)
        gl, hl = left[..., 0], left[..., 1]
        gr, hr = G - gl, H - hl
        ok = (hl >= params.min_child_weight) & (hr >= params.min_child_weight)
        if cuts is not None:
            ok &= cuts[:, : missing_bin - 1] & (cuts[:, missing_bin : missing_bin + 1] | (not missing_left))
        gain = np.where(ok, gl * gl / (hl + lam) + gr * gr / (hr + lam) - parent, -np.inf) / 2
        for j in feats:
            if gain.shape[1] == 0:
                continue
            k = int(np.argmax(gain[j]))
            if gain[j, k] > best_gain + _TOL * max(1.0, abs(best_gain)):  # rounding noise never flips a choice
                best_gain = float(gain[j, k])
                best = Split(int(j), k, missing_left, best_gain, float(gl[j, k]), float(hl[j, k]))
    return best

"""Find the best split of a node from its histogram (XGBoost's gain, with a learned missing direction).

A numeric feature's candidates are its bin boundaries. A categorical feature's (LightGBM's rule):
its non-empty value bins (hessian sum > 0) sorted by ``sum_g / (sum_h + l2)`` (ties by bin id),
each proper prefix of that order being the set of bins that goes left.
"""

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
    """Rows with ``bin <= bin_`` go left (categorical: rows whose bin is in ``left_bins``, and then
    ``bin_`` is -1); missing values go left iff ``missing_left``."""

    feature: int
    bin_: int
    missing_left: bool
    gain: float
    left_g: float
    left_h: float
    left_bins: tuple[int, ...] = ()


def leaf_weight(g: float, h: float, l2: float) -> float:
    return -g / (h + l2)


def best_split(
    hist: np.ndarray,
    missing_bin: int,
    params: SplitParams,
    features: np.ndarray | None = None,
    cuts: np.ndarray | None = None,
    categorical: np.ndarray | None = None,
) -> Split | None:
    """The split with the largest gain over ``features`` (default: all), or ``None``.

    ``hist`` has shape ``(f, n_bins, 2)``; bin ``missing_bin`` holds missing values. ``cuts``
    (f, n_bins) bool, the bucket structure of ``tandem.learn.buckets`` (default: every bin its
    own bucket): only bucket boundaries are candidates, and a missing bin merged into the last
    value bucket cannot go left. ``categorical`` (f,) bool: the categorical features (default: none).
    Exact ties keep the first candidate in the order (missing right, then left; features
    ascending; bins ascending, categorical: shorter prefixes first), so every builder of the same
    histograms picks the same split.
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
            if categorical is not None and categorical[j]:
                if cuts is not None and not cuts[j].all():  # merged into one bucket: no candidate
                    continue
                found = _category_split(values[j], missing[j] if missing_left else None, G, H, parent, params)
                if found is not None and found[0] > best_gain + _TOL * max(1.0, abs(best_gain)):
                    best_gain, left_g, left_h, left_bins = found
                    best = Split(int(j), -1, missing_left, best_gain, left_g, left_h, left_bins)
                continue
            if gain.shape[1] == 0:
                continue
            k = int(np.argmax(gain[j]))
            if gain[j, k] > best_gain + _TOL * max(1.0, abs(best_gain)):  # rounding noise never flips a choice
                best_gain = float(gain[j, k])
                best = Split(int(j), k, missing_left, best_gain, float(gl[j, k]), float(hl[j, k]))
    return best


def _category_split(
    values: np.ndarray, missing: np.ndarray | None, G: float, H: float, parent: float, params: SplitParams
) -> tuple[float, float, float, tuple[int, ...]] | None:
    """The best prefix of one categorical feature's bins ``values`` (b, 2) in ratio order, with the
    missing sums ``missing`` (2,) going left (``None``: right): ``(gain, left_g, left_h, left bins)``."""
    present = np.flatnonzero(values[:, 1] > 0)
    if len(present) < 2:
        return None
    lam = params.l2
    ratio = values[present, 0] / (values[present, 1] + lam)
    order = present[np.lexsort((present, ratio))]
    left = np.cumsum(values[order], axis=0)[:-1] + (0.0 if missing is None else missing)
    gl, hl = left[:, 0], left[:, 1]
    gr, hr = G - gl, H - hl
    ok = (hl >= params.min_child_weight) & (hr >= params.min_child_weight)
    gain = np.where(ok, gl * gl / (hl + lam) + gr * gr / (hr + lam) - parent, -np.inf) / 2
    k = int(np.argmax(gain))
    if not np.isfinite(gain[k]):
        return None
    return float(gain[k]), float(gl[k]), float(hl[k]), tuple(sorted(int(b) for b in order[: k + 1]))

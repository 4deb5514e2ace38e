"""Binning: real-valued features -> small integer bins (the first stage, as in scikit-learn's HGB).

Each feature gets at most ``max_bins - 1`` bins for values (cut at quantiles of the
training data) and one extra bin, ``max_bins - 1``, for missing values. Bins are
``uint8``, so ``max_bins <= 256``.
"""

from __future__ import annotations

import numpy as np

from tandem.errors import InputError

SUBSAMPLE = 200_000  # rows used to find the quantiles


class Binner:
    """``fit`` finds cut points per feature; ``transform`` maps values to bins.

    ``thresholds_[j]`` (shape ``(k_j,)``) are the upper edges: value ``v`` goes to bin
    ``searchsorted(thresholds_[j], v, side="left")``; NaN goes to ``missing_bin``.
    """

    def __init__(self, max_bins: int = 32, seed: int = 0):
        self.max_bins = max_bins
        self.seed = seed

    @property
    def missing_bin(self) -> int:
        return self.max_bins - 1

    def fit(self, X: np.ndarray) -> Binner:
        if not 3 <= self.max_bins <= 256:
            raise InputError(f"bins must be between 3 and 256, got {self.max_bins}")
        X = _as_float(X)
        if len(X) > SUBSAMPLE:
            X = X[np.random.default_rng(self.seed).choice(len(X), SUBSAMPLE, replace=False)]
        self.thresholds_ = [self._cuts(X[:, j]) for j in range(X.shape[1])]
        self.n_bins_ = np.array([len(t) + 1 for t in self.thresholds_], dtype=np.int32)
        return self

    def _cuts(self, col: np.ndarray) -> np.ndarray:
        values = col[~np.isnan(col)]
        if len(values) == 0:
            return np.array([], dtype=np.float64)
        distinct = np.unique(values)
        n_value_bins = self.max_bins - 1
        if len(distinct) <= n_value_bins:
            return (distinct[:-1] + distinct[1:]) / 2  # one bin per distinct value
        qs = np.quantile(values, np.linspace(0, 1, n_value_bins + 1)[1:-1], method="midpoint")
        return np.unique(qs)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Shape ``(n, f)`` floats -> ``(n, f)`` uint8 bins."""
        X = _as_float(X)
        if X.shape[1] != len(self.thresholds_):
            raise InputError(f"expected {len(self.thresholds_)} features, got {X.shape[1]}")
        out = np.empty(X.shape, dtype=np.uint8)
        for j, t in enumerate(self.thresholds_):
            col = X[:, j]
            b = np.searchsorted(t, col, side="left")
            b[np.isnan(col)] = self.missing_bin
            out[:, j] = b
        return out

    def threshold(self, feature: int, bin_: int) -> float:
        """The real value that separates bins ``<= bin_`` from the rest (``x <= threshold`` goes left)."""
        t = self.thresholds_[feature]
        return float(t[bin_]) if bin_ < len(t) else float("inf")


def _as_float(X) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("features must be numeric") from None
    if X.ndim != 2:
        raise InputError(f"features must be a 2-D table, got shape {X.shape}")
    if np.isinf(X).any():
        raise InputError("features contain infinite values")
    return X

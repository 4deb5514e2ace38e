"""Binning: features -> small integer bins (the first stage, as in scikit-learn's HGB).

Each feature gets at most ``max_bins - 1`` bins for values and one extra bin, ``max_bins - 1``,
for missing values. Bins are ``uint8``, so ``max_bins <= 256``. A numeric feature is cut at
quantiles of the training data. A categorical feature (text; ``None`` or NaN missing) gets one
bin per category seen in at least ``MIN_CATEGORY_ROWS`` training rows (the most frequent
``max_bins - 2`` if there are more), in sorted order, then one "other" bin for the rare
categories and any category unseen in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tandem.errors import InputError

SUBSAMPLE = 200_000  # rows used to find the quantiles
MIN_CATEGORY_ROWS = 5  # a category seen in fewer training rows shares the "other" bin


class Binner:
    """``fit`` finds cut points per feature; ``transform`` maps values to bins.

    ``thresholds_[j]`` (shape ``(k_j,)``) are the upper edges: value ``v`` goes to bin
    ``searchsorted(thresholds_[j], v, side="left")``; NaN goes to ``missing_bin``.
    ``categorical``: the indices of the categorical features; ``X`` is then an object array (n, f).
    ``categories_[j]``: feature j's categories with a bin of their own (bin = position; bin
    ``len(categories_[j])`` is "other"), ``None`` for a numeric feature (whose ``thresholds_[j]``
    are empty for a categorical one); ``categorical_`` (f,) bool.
    """

    def __init__(self, max_bins: int = 32, seed: int = 0, categorical: tuple[int, ...] | list[int] = ()):
        self.max_bins = max_bins
        self.seed = seed
        self.categorical = categorical

    @property
    def missing_bin(self) -> int:
        return self.max_bins - 1

    def fit(self, X: np.ndarray) -> Binner:
        if not 3 <= self.max_bins <= 256:
            raise InputError(f"bins must be between 3 and 256, got {self.max_bins}")
        X, cat = _split_columns(X, self.categorical)
        self.categorical_ = cat
        self.categories_: list[list[str] | None] = [
            self._categories(X[:, j]) if cat[j] else None for j in range(X.shape[1])
        ]
        num = _as_float(X[:, ~cat]) if cat.any() else _as_float(X)
        if len(num) > SUBSAMPLE:
            num = num[np.random.default_rng(self.seed).choice(len(num), SUBSAMPLE, replace=False)]
        cuts = iter([self._cuts(num[:, j]) for j in range(num.shape[1])])
        self.thresholds_ = [np.array([], dtype=np.float64) if c else next(cuts) for c in cat]
        self.n_bins_ = n_bins(self.thresholds_, self.categories_)
        return self

    def _categories(self, col: np.ndarray) -> list[str]:
        text = _text(col)
        counts = text[text.notna()].value_counts()
        counts = counts[counts >= MIN_CATEGORY_ROWS]
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_bins - 2]
        return sorted(str(k) for k, _ in ranked)

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
        """Shape ``(n, f)`` features -> ``(n, f)`` uint8 bins."""
        cats = getattr(self, "categories_", [None] * len(self.thresholds_))
        cat = np.array([c is not None for c in cats], dtype=bool)
        X = _as_float(X) if not cat.any() else np.asarray(X, dtype=object)
        if X.ndim != 2 or X.shape[1] != len(self.thresholds_):
            raise InputError(f"expected {len(self.thresholds_)} features, got shape {X.shape}")
        out = np.empty(X.shape, dtype=np.uint8)
        for j, t in enumerate(self.thresholds_):
            categories = cats[j]
            if categories is not None:
                text = _text(X[:, j])
                b = pd.Index(categories, dtype=object).get_indexer(text.fillna("").to_numpy(dtype=object))
                b[b < 0] = len(categories)  # rare or unseen: "other"
                b[text.isna().to_numpy()] = self.missing_bin
                out[:, j] = b
                continue
            col = _as_float(X[:, j : j + 1])[:, 0] if cat.any() else X[:, j]
            b = np.searchsorted(t, col, side="left")
            b[np.isnan(col)] = self.missing_bin
            out[:, j] = b
        return out

    def category_names(self, feature: int, bins: list[int] | tuple[int, ...]) -> list[str | None]:
        """The categories of a categorical feature's ``bins``; ``None`` names the "other" bin."""
        categories = self.categories_[feature] or []
        return [categories[b] if b < len(categories) else None for b in bins]

    def threshold(self, feature: int, bin_: int) -> float:
        """The real value that separates bins ``<= bin_`` from the rest (``x <= threshold`` goes left)."""
        t = self.thresholds_[feature]
        return float(t[bin_]) if bin_ < len(t) else float("inf")


def n_bins(thresholds: list[np.ndarray], categories: list[list[str] | None]) -> np.ndarray:
    """Bins in use per feature (missing not counted): (f,) int32."""
    return np.array([len(t) + 1 if c is None else len(c) + 1 for t, c in zip(thresholds, categories)], dtype=np.int32)


def _split_columns(X, categorical) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as a 2-D array (object when some feature is categorical) and the (f,) bool mask."""
    if not len(categorical):
        X = _as_float(X)
        return X, np.zeros(X.shape[1], dtype=bool)
    X = np.asarray(X, dtype=object)
    if X.ndim != 2:
        raise InputError(f"features must be a 2-D table, got shape {X.shape}")
    cat = np.zeros(X.shape[1], dtype=bool)
    index = np.asarray(categorical, dtype=np.int64)
    if ((index < 0) | (index >= X.shape[1])).any():
        raise InputError(f"categorical feature indices {list(categorical)} outside the {X.shape[1]} features")
    cat[index] = True
    return X, cat


def _text(col: np.ndarray) -> pd.Series:
    """A categorical column as text (``str`` of each value), NaN for missing (``None`` or NaN)."""
    s = pd.Series(col, dtype=object)
    missing = s.isna()
    return s.where(missing, s.astype(str)).where(~missing, np.nan)


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

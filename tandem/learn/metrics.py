"""Scoring metrics for binary outcomes (``y`` in {0, 1}, higher score = riskier)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _check(y, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(float)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError(f"y and score must be 1-D of equal length, got {y.shape} and {score.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must hold only 0 and 1")
    pos = y.sum()
    if pos == 0 or pos == len(y):
        raise ValueError("y must hold both classes")
    return y, score


def roc_auc(y, score) -> float:
    """Area under the ROC curve (ties count one half), via the rank-sum statistic."""
    y, score = _check(y, score)
    ranks = rankdata(score)
    pos = y.sum()
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def ks_statistic(y, score) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score CDFs of the two classes."""
    y, score = _check(y, score)
    order = np.argsort(score, kind="mergesort")
    ys, ss = y[order], score[order]
    last = np.r_[ss[1:] != ss[:-1], True]          # evaluate only at the end of each run of ties
    cdf_pos = np.cumsum(ys)[last] / ys.sum()
    cdf_neg = np.cumsum(1 - ys)[last] / (1 - ys).sum()
    return float(np.max(np.abs(cdf_pos - cdf_neg)))

"""Scoring metrics for binary outcomes (``y`` in {0, 1}, higher score = riskier)."""

from __future__ import annotations

import numpy as np


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


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (n,), ties given the mean of their ranks (scipy's ``rankdata``, without
    importing scipy, which costs every command about a second)."""
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    edges = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1], True])  # where each run of ties starts, and the end
    group = np.cumsum(np.r_[True, sx[1:] != sx[:-1]]) - 1
    ranks = np.empty(len(x))
    ranks[order] = ((edges[:-1] + edges[1:] + 1) / 2.0)[group]
    return ranks


def roc_auc(y, score) -> float:
    """Area under the ROC curve (ties count one half), via the rank-sum statistic."""
    y, score = _check(y, score)
    ranks = average_ranks(score)
    pos = y.sum()
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def ks_statistic(y, score) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score CDFs of the two classes."""
    y, score = _check(y, score)
    order = np.argsort(score, kind="mergesort")
    ys, ss = y[order], score[order]
    last = np.r_[ss[1:] != ss[:-1], True]  # evaluate only at the end of each run of ties
    cdf_pos = np.cumsum(ys)[last] / ys.sum()
    cdf_neg = np.cumsum(1 - ys)[last] / (1 - ys).sum()
    return float(np.max(np.abs(cdf_pos - cdf_neg)))


def gini(y, score) -> float:
    """Gini coefficient (accuracy ratio) = 2 AUC - 1."""
    return 2 * roc_auc(y, score) - 1


def deciles(y, score, bins: int = 10) -> list[dict]:
    """Rows sorted by score (riskiest first) in ``bins`` equal groups: count, mean score,
    observed rate, lift (observed rate / overall rate), cumulative share of positives."""
    y, score = _check(y, score)
    order = np.argsort(-score, kind="mergesort")
    groups = np.array_split(order, bins)
    base = y.mean()
    out, cum = [], 0.0
    for i, g in enumerate(groups, 1):
        cum += y[g].sum()
        out.append(
            {
                "decile": i,
                "rows": int(len(g)),
                "mean_score": float(score[g].mean()),
                "observed_rate": float(y[g].mean()),
                "lift": float(y[g].mean() / base),
                "cumulative_capture": float(cum / y.sum()),
            }
        )
    return out


def summary(y, score) -> dict:
    """AUC, KS, Gini, Brier score, and the decile table (lift and calibration)."""
    y_arr, s = _check(y, score)
    return {
        "auc": roc_auc(y_arr, s),
        "ks": ks_statistic(y_arr, s),
        "gini": gini(y_arr, s),
        "brier": float(np.mean((s - y_arr) ** 2)) if s.min() >= 0 and s.max() <= 1 else None,
        "deciles": deciles(y_arr, s),
    }

"""What every boosting round shares between the plaintext reference and the federated roles:
parameters, gradients, GOSS row sampling and early stopping on validation rows.

Both implementations call these same functions with the same arguments, so their trees
stay identical with GOSS and early stopping on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tandem.crypto.he import dequantise, quantise
from tandem.errors import InputError
from tandem.learn.metrics import roc_auc
from tandem.learn.options import DEFAULTS
from tandem.learn.splitting import SplitParams, leaf_weight


@dataclass(frozen=True)
class BoostParams:
    n_trees: int = DEFAULTS.trees
    max_depth: int = DEFAULTS.max_depth
    learning_rate: float = DEFAULTS.learning_rate
    bins: int = DEFAULTS.bins
    split: SplitParams = field(default_factory=SplitParams)
    first_tree_active_only: bool = DEFAULTS.first_tree_active_only  # tree 0 on the label holder's features only
    goss: tuple[float, float] | None = None  # (top rate, other rate), or None for every training row
    early_stopping_rounds: int = DEFAULTS.early_stopping  # 0: off; else rounds without a better score
    seed: int = 0
    goss_seed: int | None = None  # GOSS's random part; None: ``seed``. Federated: the label holder's private draw

    def check(self) -> BoostParams:
        if self.n_trees < 1 or self.max_depth < 1 or not 0 < self.learning_rate <= 1:
            raise InputError("trees and max depth must be >= 1 and the learning rate in (0, 1]")
        if not 3 <= self.bins <= 256:
            raise InputError(f"bins must be between 3 and 256, got {self.bins}")
        if self.split.l2 < 0 or self.split.min_child_weight <= 0 or self.split.min_gain < 0:
            raise InputError("l2 and min gain must be >= 0 and min child weight > 0")
        if self.goss is not None:
            top, other = self.goss
            if not (0 < top < 1 and 0 < other < 1 and top + other <= 1):
                raise InputError(f"GOSS rates must be in (0, 1) with top + other <= 1, got {top} and {other}")
        if self.early_stopping_rounds < 0:
            raise InputError("early stopping rounds must be >= 0")
        return self


def gradients(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic loss: ``(grad, hess)`` of raw scores ``raw`` (n,) against labels ``y`` (n,)."""
    prob = 1.0 / (1.0 + np.exp(-raw))
    return prob - y, prob * (1 - prob)


def round_rows(
    grad: np.ndarray, hess: np.ndarray, train: np.ndarray, params: BoostParams, tree: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows one tree is grown on and their fixed-point gradients and hessians.

    ``train`` (k,) sorted row indices. Returns ``(sample, g_q, h_q)``: ``sample`` (m,) sorted
    row indices (all of ``train`` without GOSS), ``g_q``/``h_q`` (n,) int64, zero outside
    the sample. With GOSS (LightGBM's gradient-based one-side sampling) the sample is the
    ``top`` share of rows by |gradient| and a random ``other`` share of the rest, whose
    gradients and hessians are scaled by ``(1 - top) / other``; the random part depends
    only on ``goss_seed`` (else ``seed``) and the tree number, so a resumed run draws the same rows.
    """
    weight = np.ones(len(train))
    sample = train
    if params.goss is not None:
        top_rate, other_rate = params.goss
        order = np.argsort(-np.abs(grad[train]), kind="stable")
        n_top, n_other = int(top_rate * len(train)), int(other_rate * len(train))
        rest = order[n_top:]
        seed = params.seed if params.goss_seed is None else params.goss_seed
        other = np.random.default_rng([seed, tree]).choice(rest, size=min(n_other, len(rest)), replace=False)
        picked = np.concatenate([order[:n_top], other])
        weight = np.concatenate([np.ones(n_top), np.full(len(other), (1 - top_rate) / other_rate)])
        at = np.argsort(picked)
        sample, weight = train[picked[at]], weight[at]
    g_q, h_q = np.zeros(len(grad), dtype=np.int64), np.zeros(len(grad), dtype=np.int64)
    g_q[sample], h_q[sample] = quantise(grad[sample] * weight), quantise(hess[sample] * weight)
    return sample, g_q, h_q


def root_value(g_q: np.ndarray, h_q: np.ndarray, sample: np.ndarray, params: BoostParams) -> float:
    """The output of a tree's root (learning rate applied), from the sample's sums."""
    g, h = float(dequantise(g_q[sample]).sum()), float(dequantise(h_q[sample]).sum())
    return params.learning_rate * leaf_weight(g, h, params.split.l2)


def validation_score(y: np.ndarray, raw: np.ndarray) -> float:
    """Higher is better: AUC when both classes are present, else minus the log loss."""
    if 0 < y.sum() < len(y):
        return roc_auc(y, raw)
    p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-12, 1 - 1e-12)
    return float((y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def trees_to_keep(scores: list[float], patience: int, finished: bool) -> int | None:
    """With early stopping: how many trees to keep once training should stop, else ``None``.

    ``scores`` holds the validation score after each tree; the best (earliest on a tie) wins.
    """
    best = int(np.argmax(scores)) + 1
    return best if finished or len(scores) - best >= patience else None


def valid_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """A random validation mask (n,) bool, for callers that bring no mask of their own."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: max(1, int(n * fraction))]] = True
    return mask

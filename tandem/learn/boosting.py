"""A thin estimator over the stages: binning -> histogram -> splitting -> grower -> predictor.

``HistBoostingClassifier`` is the plaintext reference (all features in one place) that the
federated booster is tested against.
"""

from __future__ import annotations

import numpy as np

from tandem.crypto.he import dequantise, quantise
from tandem.errors import InputError
from tandem.learn.binning import Binner
from tandem.learn.grower import Tree, grow_tree, predict_binned
from tandem.learn.histogram import build_histogram
from tandem.learn.metrics import roc_auc
from tandem.learn.splitting import SplitParams


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class HistBoostingClassifier:
    """Gradient-boosted trees for a binary label (logistic loss), scikit-learn style.

    ``__init__`` only stores arguments; ``fit`` returns ``self``; fitted attributes end in ``_``.
    """

    def __init__(self, n_trees: int = 50, max_depth: int = 5, learning_rate: float = 0.1, bins: int = 32,
                 l2: float = 1.0, min_child_weight: float = 1.0, min_gain: float = 0.0,
                 early_stopping_rounds: int | None = None, validation_fraction: float = 0.1, seed: int = 0,
                 first_tree_features: int | None = None):
        self.n_trees, self.max_depth, self.learning_rate, self.bins = n_trees, max_depth, learning_rate, bins
        self.l2, self.min_child_weight, self.min_gain = l2, min_child_weight, min_gain
        self.early_stopping_rounds, self.validation_fraction, self.seed = (early_stopping_rounds,
                                                                            validation_fraction, seed)
        self.first_tree_features = first_tree_features   # grow tree 0 on the first k features only

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("n_trees", "max_depth", "learning_rate", "bins", "l2",
                                              "min_child_weight", "min_gain", "early_stopping_rounds",
                                              "validation_fraction", "seed")}

    def fit(self, X, y) -> "HistBoostingClassifier":
        y = _binary_label(y)
        self.binner_ = Binner(self.bins, self.seed).fit(X)
        binned = self.binner_.transform(X)
        if len(binned) != len(y):
            raise InputError(f"X has {len(binned)} rows but y has {len(y)}")
        train = np.arange(len(y))
        valid = None
        if self.early_stopping_rounds:
            perm = np.random.default_rng(self.seed).permutation(len(y))
            n_valid = max(1, int(len(y) * self.validation_fraction))
            valid, train = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
        p = np.clip(y[train].mean(), 1e-6, 1 - 1e-6)
        self.base_score_ = float(np.log(p / (1 - p)))
        raw = np.full(len(y), self.base_score_)
        params = SplitParams(self.l2, self.min_child_weight, self.min_gain)
        n_bins = self.bins
        self.trees_: list[Tree] = []
        best, best_round = -np.inf, 0
        for _ in range(self.n_trees):
            prob = sigmoid(raw)
            g_q, h_q = quantise(prob - y), quantise(prob * (1 - prob))
            grad, hess = dequantise(g_q), dequantise(h_q)
            tree, _ = grow_tree(binned, grad, hess, train,
                                build=lambda rows: build_histogram(binned, g_q, h_q, rows, n_bins),
                                missing_bin=self.binner_.missing_bin, params=params, max_depth=self.max_depth,
                                learning_rate=self.learning_rate,
                                features=np.arange(self.first_tree_features)
                                if self.first_tree_features and not self.trees_ else None)
            self.trees_.append(tree)
            raw += predict_binned(tree, binned, self.binner_.missing_bin)
            if valid is not None:
                score = roc_auc(y[valid], raw[valid]) if 0 < y[valid].sum() < len(valid) else -_logloss(y[valid], raw[valid])
                if score > best:
                    best, best_round = score, len(self.trees_)
                elif len(self.trees_) - best_round >= self.early_stopping_rounds:
                    break
        if valid is not None:
            self.trees_ = self.trees_[:best_round]
        return self

    def decision_function(self, X) -> np.ndarray:
        binned = self.binner_.transform(X)
        raw = np.full(len(binned), self.base_score_)
        for tree in self.trees_:
            raw += predict_binned(tree, binned, self.binner_.missing_bin)
        return raw

    def predict_proba(self, X) -> np.ndarray:
        """Shape ``(n, 2)``: probabilities of class 0 and class 1."""
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1 - p, p])


def _binary_label(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or not np.isin(y, (0.0, 1.0)).all():
        raise InputError("label must be binary (0/1)")
    if y.min() == y.max():
        raise InputError("label has only one class")
    return y


def _logloss(y: np.ndarray, raw: np.ndarray) -> float:
    p = np.clip(sigmoid(raw), 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

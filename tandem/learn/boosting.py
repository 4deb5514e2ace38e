"""A thin estimator over the stages: binning -> histogram -> splitting -> grower -> predictor.

``HistBoostingClassifier`` is the plaintext reference (all features in one place) that the
federated booster is tested against: both grow each round from ``tandem.learn.rounds``.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tandem.crypto.he import dequantise
from tandem.errors import InputError
from tandem.learn.binning import Binner
from tandem.learn.grower import grow_tree
from tandem.learn.histogram import build_histogram
from tandem.learn.options import DEFAULTS as D
from tandem.learn.rounds import BoostParams, gradients, round_rows, trees_to_keep, valid_rows, validation_score
from tandem.learn.splitting import SplitParams
from tandem.learn.tree import Tree, predict_binned

PARAMS = (
    "n_trees",
    "max_depth",
    "learning_rate",
    "bins",
    "l2",
    "min_child_weight",
    "min_gain",
    "goss",
    "early_stopping_rounds",
    "validation_fraction",
    "seed",
    "goss_seed",
    "first_tree_features",
    "min_bin_rows",
    "passive_from",
    "categorical",
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class HistBoostingClassifier:
    """Gradient-boosted trees for a binary label (logistic loss), scikit-learn style.

    ``__init__`` only stores arguments; ``fit`` returns ``self``; fitted attributes end in ``_``.
    ``goss``: ``(top_rate, other_rate)`` or ``None``; ``first_tree_features``: grow tree 0 on
    the first k features only. ``passive_from``: features from this index on are treated as a
    passive party's, their bins merged per node into buckets of at least ``min_bin_rows`` rows
    as ``PassiveBoost`` merges them (``tandem.learn.buckets``); ``None``: no merging (the plain
    estimator). ``categorical``: indices of categorical features (text, ``None`` missing; ``X`` is
    then an object array), each category a bin (``tandem.learn.binning``), split as sets of
    categories (``tandem.learn.splitting``).
    """

    def __init__(
        self,
        n_trees: int = D.trees,
        max_depth: int = D.max_depth,
        learning_rate: float = D.learning_rate,
        bins: int = D.bins,
        l2: float = D.l2,
        min_child_weight: float = D.min_child_weight,
        min_gain: float = 0.0,
        goss: tuple[float, float] | None = None,
        early_stopping_rounds: int = D.early_stopping,
        validation_fraction: float = D.validation_fraction,
        seed: int = 0,
        goss_seed: int | None = None,
        first_tree_features: int | None = None,
        min_bin_rows: int = 0,
        passive_from: int | None = None,
        categorical: tuple[int, ...] | list[int] = (),
    ):
        self.n_trees, self.max_depth, self.learning_rate, self.bins = n_trees, max_depth, learning_rate, bins
        self.l2, self.min_child_weight, self.min_gain, self.goss = l2, min_child_weight, min_gain, goss
        self.early_stopping_rounds, self.validation_fraction = early_stopping_rounds, validation_fraction
        self.goss_seed = goss_seed
        self.seed, self.first_tree_features = seed, first_tree_features
        self.min_bin_rows, self.passive_from = min_bin_rows, passive_from
        self.categorical = categorical

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in PARAMS}

    def boost_params(self) -> BoostParams:
        return BoostParams(
            self.n_trees,
            self.max_depth,
            self.learning_rate,
            self.bins,
            SplitParams(self.l2, self.min_child_weight, self.min_gain),
            bool(self.first_tree_features),
            self.goss,
            self.early_stopping_rounds or 0,
            self.seed,
            self.goss_seed,
        ).check()

    def fit(self, X, y, valid: np.ndarray | None = None) -> HistBoostingClassifier:
        """``valid`` (n,) bool: rows held out for early stopping (default: a random
        ``validation_fraction`` when early stopping is on)."""
        params = self.boost_params()
        y = binary_label(y)
        self.binner_ = Binner(self.bins, self.seed, self.categorical).fit(X)
        binned = self.binner_.transform(X)
        if len(binned) != len(y):
            raise InputError(f"X has {len(binned)} rows but y has {len(y)}")
        if valid is None:
            valid = (
                valid_rows(len(y), self.validation_fraction, self.seed)
                if params.early_stopping_rounds
                else np.zeros(len(y), dtype=bool)
            )
        train, held = np.flatnonzero(~valid), np.flatnonzero(valid)
        if params.early_stopping_rounds and len(held) == 0:
            raise InputError("early stopping needs validation rows")
        p = np.clip(y[train].mean(), 1e-6, 1 - 1e-6)
        self.base_score_ = float(np.log(p / (1 - p)))
        raw = np.full(len(y), self.base_score_)
        self.trees_: list[Tree] = []
        self.scores_: list[float] = []
        merged = None if self.passive_from is None else np.arange(binned.shape[1]) >= self.passive_from
        for t in range(params.n_trees):
            grad, hess = gradients(raw, y)
            sample, g_q, h_q = round_rows(grad, hess, train, params, t)
            features = np.arange(self.first_tree_features) if self.first_tree_features and t == 0 else None
            tree, _ = grow_tree(
                binned,
                dequantise(g_q),
                dequantise(h_q),
                sample,
                build=partial(build_histogram, binned, g_q, h_q, n_bins=params.bins),
                missing_bin=self.binner_.missing_bin,
                params=params.split,
                max_depth=params.max_depth,
                learning_rate=params.learning_rate,
                features=features,
                min_bin_rows=self.min_bin_rows,
                merged=merged,
                categorical=self.binner_.categorical_,
            )
            self.trees_.append(tree)
            raw += predict_binned(tree, binned, self.binner_.missing_bin)
            if params.early_stopping_rounds:
                self.scores_.append(validation_score(y[held], raw[held]))
                keep = trees_to_keep(self.scores_, params.early_stopping_rounds, t == params.n_trees - 1)
                if keep is not None:
                    self.trees_ = self.trees_[:keep]
                    break
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


def binary_label(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or not np.isin(y, (0.0, 1.0)).all():
        raise InputError("label must be binary (0/1)")
    if y.min() == y.max():
        raise InputError("label has only one class")
    return y

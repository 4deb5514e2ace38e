"""The scorecard as the decision service's customer model: the same scorer interface as a boosted model's
part (``tandem.decide.scoring``), so ``[decide]`` picks either by the model file it names.

Per request the marketplace sends, as ``marketplace_bits``, the one-hot of its final bin in each of its
selected features (features in model order, each feature's bins in bin order). The bank decodes the
bins, adds each feature's logit contribution (coefficient x WoE) to its own part and answers; the
reason codes are the features that lost the most points against their best bin, the marketplace's
together as "marketplace behaviour". What the bank learns per scored customer: the marketplace's final
bin of each selected feature (the boosted model's bits tell it the side of each split).
"""

from __future__ import annotations

import math

import numpy as np

from tandem.decide.scoring import ScoringError
from tandem.learn.scorecard.model import check
from tandem.learn.scorecard.prebin import Prebins


class _Features:
    """The selected features of one model part: pre-binnings, merges and per-bin logit contributions."""

    def __init__(self, entries: list[dict], contribution_of):
        self.names = [e["name"] for e in entries]
        self.prebins = [Prebins.from_json(e["prebins"]) for e in entries]
        self.assign = [np.asarray(e["assign"], dtype=np.int64) for e in entries]
        self.values = [np.asarray(contribution_of(e), dtype=np.float64) for e in entries]

    def bins(self, X: np.ndarray) -> np.ndarray:
        """(n, f) final bins of rows ``X`` (n, f) raw values in ``names`` order."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out = np.zeros((len(X), len(self.names)), dtype=np.int64)
        for j, (p, a) in enumerate(zip(self.prebins, self.assign)):
            out[:, j] = a[p.transform(X[:, j])]
        return out


class PassiveScorecardScorer:
    """The marketplace's part: rows ``X`` (n, f) in ``names`` order -> one-hot bits (n, Σ bins)."""

    def __init__(self, model: dict):
        check(model, "passive")
        self.version = model["model_id"]
        self._features = _Features(model["features"], lambda e: e["contribution"])
        self.names = self._features.names
        self._offsets = np.cumsum([0] + [len(v) for v in self._features.values])
        self.split_ids = list(range(int(self._offsets[-1])))  # one bit per final bin

    def bits(self, X: np.ndarray) -> np.ndarray:
        bins = self._features.bins(X)
        out = np.zeros((len(bins), len(self.split_ids)), dtype=bool)
        for j in range(bins.shape[1]):
            out[np.arange(len(bins)), self._offsets[j] + bins[:, j]] = True
        return out

    def row_bits(self, x) -> np.ndarray:
        return self.bits(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]


class ActiveScorecardScorer:
    """The bank's part. ``names`` its own selected features (model order); ``n_bits`` the one-hot width of the
    marketplace's bins; ``score(x, bits) -> (pd, contributions)`` where contributions are points lost in logit
    units (>= 0) per own feature and, summed, under the marketplace's party name."""

    def __init__(self, model: dict):
        check(model, "active")
        self.version = model["model_id"]
        self.intercept = float(model["intercept"])
        own = [e for e in model["features"] if "prebins" in e]
        passive = [e for e in model["features"] if "prebins" not in e]
        self._own = _Features(own, lambda e: e["coef"] * np.asarray(e["woe"]))
        self.names = self._own.names
        self._passive = [e["coef"] * np.asarray(e["woe"], dtype=np.float64) for e in passive]
        self._offsets = np.cumsum([0] + [len(v) for v in self._passive])
        self.n_bits = int(self._offsets[-1])
        self.parties = [model["peer"]] if passive else []

    def passive_bins(self, bits: np.ndarray) -> np.ndarray:
        """(n, f) the marketplace's bins from one-hot ``bits`` (n, n_bits); ValueError unless one-hot."""
        bits = np.atleast_2d(bits)
        out = np.zeros((len(bits), len(self._passive)), dtype=np.int64)
        for j in range(len(self._passive)):
            block = bits[:, self._offsets[j] : self._offsets[j + 1]]
            if (block.sum(axis=1) != 1).any():
                raise ValueError("marketplace_bits must set exactly one bin of each marketplace feature")
            out[:, j] = block.argmax(axis=1)
        return out

    def _logits(self, X: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits (n,) and the contributions (n, f_own), (n, f_passive) they sum."""
        own_bins, passive_bins = self._own.bins(X), self.passive_bins(bits)
        own = np.zeros(own_bins.shape)
        for j, v in enumerate(self._own.values):
            own[:, j] = v[own_bins[:, j]]
        passive = np.zeros(passive_bins.shape)
        for j, v in enumerate(self._passive):
            passive[:, j] = v[passive_bins[:, j]]
        return self.intercept + own.sum(axis=1) + passive.sum(axis=1), own, passive

    def score(self, x: np.ndarray, bits: np.ndarray) -> tuple[float, dict[str, float]]:
        try:
            logit, own, passive = self._logits(np.asarray(x, dtype=np.float64).reshape(1, -1), bits)
        except ValueError as exc:
            raise ScoringError(str(exc)) from None
        lost = {n: float(own[0, j] - self._own.values[j].min()) for j, n in enumerate(self.names)}
        if self.parties:
            lost[self.parties[0]] = float(sum(passive[0, j] - v.min() for j, v in enumerate(self._passive)))
        return float(1 / (1 + math.exp(-float(logit[0])))), lost

    def score_batch(self, X: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """PD of each row: ``X`` (n, f) own raw values, ``bits`` (n, n_bits)."""
        return 1 / (1 + np.exp(-self._logits(X, bits)[0]))

"""Scorecard points: the fitted model as base points plus points per feature per bin, and reason codes.

``Scaling``: odds are good:bad, ``factor = pdo / ln 2``, ``offset = base_score - factor·ln(base_odds)`` and
``score = offset - factor·logit(PD)`` (``logit(PD) = ln(bad:good)``), so doubling the odds adds ``pdo``
points. With optbinning's ``WoE = ln(%non-event / %event)`` good bins have positive WoE and the fitted
coefficients come out negative, so good bins earn points. A row's score is ``base + Σ_j points_j(bin_j)``
with ``base = offset - factor·intercept`` and ``points_j(b) = -factor·coef_j·woe_j(b)``: exactly
``offset - factor·logit(PD)``. Floats stay exact; ``PointsTable.rounded`` is for display only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.fit import Fitted
from tandem.learn.scorecard.model import check
from tandem.learn.scorecard.options import SCORECARD_DEFAULTS, ScorecardOptions
from tandem.learn.scorecard.tables import BinTable


@dataclass(frozen=True)
class Scaling:
    """Points scale: ``pdo`` points double the odds (good:bad); ``base_odds`` score ``base_score``."""

    pdo: float = SCORECARD_DEFAULTS.pdo
    base_score: float = SCORECARD_DEFAULTS.base_score
    base_odds: float = SCORECARD_DEFAULTS.base_odds

    def __post_init__(self) -> None:
        ScorecardOptions(pdo=self.pdo, base_score=self.base_score, base_odds=self.base_odds).check()

    @classmethod
    def of(cls, opts: ScorecardOptions) -> Scaling:
        return cls(opts.pdo, opts.base_score, opts.base_odds)

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    def score_from_logit(self, logit):
        """Score(s) of ``logit(PD)`` (float or array)."""
        return self.offset - self.factor * np.asarray(logit, dtype=np.float64)

    def pd_from_score(self, score):
        """Probability of default of score(s) (float or array): the inverse of ``score_from_logit``."""
        logit = (self.offset - np.asarray(score, dtype=np.float64)) / self.factor
        return 1.0 / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class Explanation:
    """One row's ``score``, its ``pd`` and ``reasons``: (feature, points lost) pairs, most lost first."""

    score: float
    pd: float
    reasons: tuple[tuple[str, float], ...]


@dataclass(frozen=True, eq=False)
class PointsTable:
    """``base`` points and ``points[name]`` (n_bins,) float64 per final bin of each feature, in ``names``
    order; ``best[name]``: the most points a bin holding training rows gives (reason codes' reference)."""

    names: tuple[str, ...]
    base: float
    points: dict[str, np.ndarray]
    best: dict[str, float]
    scaling: Scaling

    def scores(self, bins: np.ndarray) -> np.ndarray:
        """(n,) total scores of rows' final bin ids ``bins`` (n, p) int, one column per feature."""
        bins = self._bins(bins, 2)
        total = np.full(len(bins), self.base)
        for j, name in enumerate(self.names):
            total += self.points[name][bins[:, j]]
        return total

    def explain(self, bins, k: int = SCORECARD_DEFAULTS.reason_codes) -> Explanation:
        """One row's final bin ids ``bins`` ((p,) in ``names`` order, or feature -> bin id) -> its score, PD
        and the ``k`` features whose points fall furthest below their best bin's (only features that lost
        points; ties in feature order)."""
        if isinstance(bins, Mapping):
            missing = [name for name in self.names if name not in bins]
            if missing:
                raise InputError(f"no bin id for features {missing}")
            bins = [bins[name] for name in self.names]
        row = self._bins(bins, 1)
        earned = [float(self.points[name][row[j]]) for j, name in enumerate(self.names)]
        lost = [(name, self.best[name] - earned[j]) for j, name in enumerate(self.names)]
        lost = sorted((pair for pair in lost if pair[1] > 0), key=lambda pair: -pair[1])
        score = self.base + math.fsum(earned)
        return Explanation(score, float(self.scaling.pd_from_score(score)), tuple(lost[:k]))

    def rounded(self) -> tuple[int, dict[str, list[int]]]:
        """Base and bin points rounded to whole points, for display only (scores use the exact floats)."""
        return round(self.base), {name: [round(float(v)) for v in self.points[name]] for name in self.names}

    def _bins(self, bins, ndim: int) -> np.ndarray:
        bins = np.asarray(bins)
        if bins.ndim != ndim or bins.shape[-1] != len(self.names) or not np.issubdtype(bins.dtype, np.integer):
            raise InputError(f"bin ids must be integers, one per feature {list(self.names)}, got shape {bins.shape}")
        for j, name in enumerate(self.names):
            column = bins[..., j]
            if column.size and (column.min() < 0 or column.max() >= len(self.points[name])):
                raise InputError(f"bin id of feature '{name}' outside 0..{len(self.points[name]) - 1}")
        return bins


def points_table(fitted: Fitted, tables: dict[str, BinTable], scaling: Scaling) -> PointsTable:
    """The points of ``fitted`` whose features' WoE come from ``tables`` (feature -> its final bins)."""
    missing = [name for name in fitted.names if name not in tables]
    if missing:
        raise InputError(f"no bin table for features {missing}")
    woe = {name: tables[name].woe for name in fitted.names}
    counts = {name: tables[name].counts for name in fitted.names}
    return _points(fitted.names, fitted.intercept, fitted.coef, woe, counts, scaling)


def model_points(model: dict, scaling: Scaling) -> PointsTable:
    """The points of the label holder's model part (``model.active_model``: intercept, each feature's
    coefficient, WoE per final bin as scoring uses it, training rows per bin), every party's features."""
    check(model, "active")
    try:
        names = tuple(str(f["name"]) for f in model["features"])
        coef = np.array([float(f["coef"]) for f in model["features"]])
        woe = {f["name"]: np.asarray(f["woe"], dtype=np.float64) for f in model["features"]}
        counts = {f["name"]: np.asarray(f["counts"], dtype=np.int64) for f in model["features"]}
        intercept = float(model["intercept"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the scorecard model part is not usable: {exc}") from None
    if any(len(woe[n]) != len(counts[n]) for n in names):
        raise InputError("a scorecard feature's WoE and counts differ in length")
    return _points(names, intercept, coef, woe, counts, scaling)


def _points(names, intercept: float, coef: np.ndarray, woe: dict, counts: dict, scaling: Scaling) -> PointsTable:
    """The one rule: ``base = offset - factor·intercept``, ``points_j = -factor·coef_j·woe_j`` per bin;
    ``best_j`` over the bins that hold training rows (all bins if none does)."""
    points: dict[str, np.ndarray] = {}
    best: dict[str, float] = {}
    for j, name in enumerate(names):
        points[name] = -scaling.factor * float(coef[j]) * woe[name]
        seen = counts[name] > 0
        best[name] = float(points[name][seen].max() if seen.any() else points[name].max())
    base = scaling.offset - scaling.factor * intercept
    return PointsTable(tuple(names), base, points, best, scaling)

"""Differential-privacy noise for insight queries, through OpenDP (the only module that imports it).

Each released figure is an integer sum (a count, or a fixed-point sum of clamped values) plus
two independent shares of discrete Laplace noise, one drawn by each party. A party knows its
own share, so what it learns about the other party's data is protected by the other share
alone: each share is calibrated on its own to the query's epsilon. The epsilon is split evenly
over the slots the query releases (sequential composition); a slot whose one-customer
contribution is at most ``sensitivity`` gets scale ``sensitivity / epsilon_slot``, checked
against OpenDP's own privacy map.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

THRESHOLD_DELTA = 1e-9  # chance that a group below the minimum size passes the noisy threshold


@lru_cache(maxsize=1)
def _dp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _mechanism(scale: float):
    dp = _dp()
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    return dp.m.make_laplace(*space, scale=scale)


def slot_scales(epsilon: float, sensitivities: list[int]) -> list[float]:
    """Noise scale of each party's share, per slot (fixed-point units), for a query spending ``epsilon``.

    Raises ``ValueError`` if OpenDP's privacy map does not certify the split (a bug, not bad input).
    """
    per_slot = epsilon / len(sensitivities)
    scales = [s / per_slot for s in sensitivities]
    spent = sum(_mechanism(b).map(s) for b, s in zip(scales, sensitivities))
    if spent > epsilon * (1 + 1e-9):
        raise ValueError(f"noise calibration spends {spent} > epsilon {epsilon}")
    return scales


def noise_share(scales: list[float], n_groups: int) -> np.ndarray:
    """One party's noise: ``(n_groups, len(scales))`` int64, column ``j`` discrete Laplace of scale ``scales[j]``."""
    out = np.zeros((n_groups, len(scales)), dtype=np.int64)
    for j, b in enumerate(scales):
        out[:, j] = _mechanism(b)([0] * n_groups)
    return out


def share_sd(scale: float) -> float:
    """Standard deviation of one discrete Laplace share: ``sqrt(2a) / (1 - a)``, ``a = exp(-1/scale)``."""
    if scale <= 0:
        return 0.0
    a = math.exp(-1.0 / scale)
    return math.sqrt(2 * a) / (1 - a)


def released_sd(scale: float) -> float:
    """Standard deviation of a released figure's noise (two independent shares)."""
    return math.sqrt(2) * share_sd(scale)


@lru_cache(maxsize=64)
def threshold_margin(scale: float, delta: float = THRESHOLD_DELTA) -> int:
    """The smallest ``t >= 0`` with ``P(Z1 + Z2 >= t) <= delta`` for two independent discrete Laplace shares of
    ``scale``: a group is released only if its noisy count is at least the minimum size plus ``t``, so a
    group below the minimum appears with probability below ``delta``. 0 without noise.

    The sum has ``P(S = u) = c**2 * a**u * (u + 1 + 2a**2 / (1 - a**2))`` for ``u >= 0``
    (``a = exp(-1/scale)``, ``c = (1 - a) / (1 + a)``); its tail is summed numerically.
    """
    if scale <= 0:
        return 0
    a = math.exp(-1.0 / scale)
    c = (1 - a) / (1 + a)
    extra = 1 + 2 * a * a / (1 - a * a)
    top = int(scale * (math.log(1 / delta) + 20) * 2) + 50
    u = np.arange(top + 1, dtype=np.float64)
    pmf = c * c * np.exp(u * math.log(a)) * (u + extra)
    tail = np.cumsum(pmf[::-1])[::-1]  # tail[t] = P(S >= t), up to the truncated remainder
    return int(np.argmax(tail <= delta))


CHECK_DELTA = 1e-12  # chance that one honest noise share leaves its margin (checks of the figures' bounds)


@lru_cache(maxsize=64)
def share_margin(scale: float, delta: float = CHECK_DELTA) -> int:
    """The smallest ``t >= 0`` with ``P(|Z| > t) <= delta`` for one discrete Laplace share ``Z`` of ``scale``
    (``P(|Z| > t) = 2 a**(t+1) / (1 + a)``, ``a = exp(-1/scale)``): how far one honest share can move a
    figure. The group holder allows this much on each figure it checks against the query's bounds, so an
    honest query is refused with probability below ``groups * slots * delta``. 0 without noise."""
    if scale <= 0:
        return 0
    a = math.exp(-1.0 / scale)
    return max(0, math.ceil(math.log(delta * (1 + a) / 2) / math.log(a)) - 1)

"""The scorecard's logistic regression, from aggregates: one Newton step on the moments, then calibration.

1. ``newton_step``: ONE Newton step of L2-regularised logistic regression from the intercept-only model
   needs nothing but ``AᵀA`` and ``Aᵀy`` (``Moments``), so the federated run and the pooled reference get
   the same coefficients. It ranks nearly as well as the exact fit (Give Me Some Credit, 10 WoE features:
   test AUC 0.85865 against sklearn's exact 0.85827) but its probabilities are off (mean PD 0.125 against a
   base rate of 0.067): the Hessian is taken at the base rate for every row.
2. ``calibrate``: exact two-parameter logistic regression of y on the step's score (Platt scaling), run by
   the label holder on the scores of a share of the training rows; it fixes the level and the slope
   without changing the ranking.

The final model is ``logit(PD) = a + c·(β0 + xᵀβ)``: intercept ``a + c·β0``, coefficients ``c·β``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.moments import Moments


def newton_step(m: Moments, l2: float) -> np.ndarray:
    """(p+1,) coefficients (intercept first) after one Newton step from ``β0 = (logit p̄, 0, .., 0)``,
    ``p̄ = events / n``: ``β0 + H⁻¹g`` with ``H = p̄(1-p̄)·AᵀA + l2·R`` (R: identity, intercept entry 0)
    and ``g = Aᵀy - p̄·Aᵀ1`` (the penalty's gradient ``l2·R·β0`` is 0)."""
    m.check()
    if not np.isfinite(l2) or l2 < 0:
        raise InputError(f"l2 must be a finite number >= 0, got {l2}")
    pbar = m.events / m.n
    beta0 = np.zeros(m.p + 1)
    beta0[0] = np.log(pbar / (1 - pbar))
    ridge = np.full(m.p + 1, float(l2))
    ridge[0] = 0.0
    hessian = pbar * (1 - pbar) * m.xtx + np.diag(ridge)
    gradient = m.xty - pbar * m.xtx[:, 0]
    try:
        step = np.linalg.solve(hessian, gradient)
    except np.linalg.LinAlgError:
        raise InputError(f"the WoE features {list(m.names)} are collinear and l2 = 0: no Newton step") from None
    return beta0 + step


@dataclass(frozen=True)
class Calibration:
    """``logit(PD) = a + c·score``; ``iterations``: Newton steps taken."""

    a: float
    c: float
    iterations: int


def _loss(theta: np.ndarray, S: np.ndarray, y: np.ndarray) -> float:
    eta = S @ theta
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta))


def calibrate(scores: np.ndarray, y: np.ndarray, tol: float = 1e-12, max_iter: int = 100) -> Calibration:
    """Exact (unpenalised) logistic regression of ``y`` (k,) 0/1 on ``[1, scores]`` (k,) by Newton with
    step halving; converged when the Newton step's norm is below ``tol·(1 + |θ|)``."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
    if scores.ndim != 1 or y.shape != scores.shape:
        raise InputError(f"calibration needs scores and labels of the same length, got {scores.shape}, {y.shape}")
    if not np.isfinite(scores).all():
        raise InputError("calibration scores hold a non-finite value")
    if not np.isin(y, (0, 1)).all():
        raise InputError("calibration labels must hold only 0 and 1")
    y = y.astype(np.float64)
    events = float(y.sum())
    if not 0 < events < len(y):
        raise InputError(f"calibration rows hold {events:g} events in {len(y)} rows; both classes needed")
    S = np.column_stack([np.ones(len(scores)), scores])
    theta = np.array([np.log(events / (len(y) - events)), 0.0])
    if np.ptp(scores) == 0:
        raise InputError("calibration scores are constant: no slope to fit")
    loss = _loss(theta, S, y)
    for it in range(1, max_iter + 1):
        p = np.exp(-np.logaddexp(0.0, -(S @ theta)))  # the sigmoid, without overflow
        hessian = S.T @ (S * (p * (1 - p))[:, None])
        try:
            step = np.linalg.solve(hessian, S.T @ (y - p))
        except np.linalg.LinAlgError:  # p reached 0 and 1: the scores separate the classes
            raise InputError(
                f"calibration did not converge in {it} iterations (the scores separate the classes)"
            ) from None
        if float(np.linalg.norm(step)) <= tol * (1.0 + float(np.linalg.norm(theta))):
            return Calibration(float(theta[0] + step[0]), float(theta[1] + step[1]), it)
        t = 1.0
        for _ in range(40):  # halve until the log-loss does not rise (Newton may overshoot far from θ*)
            new_loss = _loss(theta + t * step, S, y)
            if new_loss <= loss + 1e-12 * abs(loss):
                break
            t /= 2
        theta, loss = theta + t * step, new_loss
    raise InputError(f"calibration did not converge in {max_iter} iterations")


@dataclass(frozen=True, eq=False)
class Fitted:
    """The scorecard model: ``logit(PD) = intercept + x·coef`` for WoE features ``x`` (p,) in ``names``
    order; ``step`` (p+1,) the Newton step's coefficients and ``calibration`` the (a, c) put on them."""

    names: tuple[str, ...]
    intercept: float
    coef: np.ndarray
    step: np.ndarray
    calibration: Calibration

    @classmethod
    def from_step(cls, names, step: np.ndarray, calibration: Calibration) -> Fitted:
        """Fold the calibration into the step's coefficients (``a + c·β0``, ``c·β``)."""
        step = np.array(step, dtype=np.float64)
        names = tuple(names)
        if step.shape != (len(names) + 1,):
            raise InputError(f"a step for {len(names)} features needs {len(names) + 1} coefficients, got {step.shape}")
        a, c = calibration.a, calibration.c
        coef = c * step[1:]
        step.setflags(write=False)
        coef.setflags(write=False)
        return cls(names, a + c * float(step[0]), coef, step, calibration)

    def logit(self, X_woe: np.ndarray) -> np.ndarray:
        """(n,) ``logit(PD)`` of rows ``X_woe`` (n, p)."""
        X_woe = np.asarray(X_woe, dtype=np.float64)
        if X_woe.ndim != 2 or X_woe.shape[1] != len(self.names):
            raise InputError(f"X must be (n, {len(self.names)}) for features {list(self.names)}, got {X_woe.shape}")
        return self.intercept + X_woe @ self.coef

    def pd(self, X_woe: np.ndarray) -> np.ndarray:
        """(n,) probability of default of rows ``X_woe`` (n, p)."""
        return 1.0 / (1.0 + np.exp(-self.logit(X_woe)))


def step_scores(step: np.ndarray, X_woe: np.ndarray) -> np.ndarray:
    """(n,) the Newton step's linear score ``β0 + X·β`` of rows ``X_woe`` (n, p): calibration's input."""
    return float(step[0]) + np.asarray(X_woe, dtype=np.float64) @ np.asarray(step[1:])


def calibration_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """(n,) bool: ``round(fraction·n)`` (at least 1) training rows drawn at random by ``seed``, whose step
    scores calibrate (``ScorecardOptions.calibration_fraction``); the same rows for the same seed."""
    if not 0 < fraction <= 1:
        raise InputError(f"calibration_fraction must be in (0, 1], got {fraction}")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, max(1, round(fraction * n)), replace=False)] = True
    return mask


def fit_pooled(names, X: np.ndarray, y: np.ndarray, l2: float, calibration_rows: np.ndarray) -> Fitted:
    """The pooled reference: ``X`` (n, p) WoE features of every training row and ``y`` (n,) 0/1 give the
    moments and the Newton step; the rows ``calibration_rows`` ((n,) bool mask or index array) calibrate."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    step = newton_step(Moments.from_rows(names, X, y), l2)
    rows = np.asarray(calibration_rows)
    if rows.dtype == bool and rows.shape != (len(X),):
        raise InputError(f"calibration_rows mask must be ({len(X)},), got {rows.shape}")
    if rows.dtype != bool and not np.issubdtype(rows.dtype, np.integer):
        raise InputError("calibration_rows must be a bool mask or an integer index array")
    return Fitted.from_step(names, step, calibrate(step_scores(step, X[rows]), y[rows]))

"""Feature selection the way a risk team does it, from each feature's IV and the ``Moments`` only.

Three filters, in order, each feature's fate one line of a report table:

1. IV: a feature with ``IV < iv_min`` goes (the caller drops these before moments exist; re-applied here);
2. correlation: features in descending IV, a feature whose WoE correlates ``|r| > max_corr`` with one
   already kept goes (of a correlated pair the lower-IV one goes);
3. VIF: while the largest variance inflation factor of the kept features exceeds ``max_vif``, that feature
   goes (of equal VIFs the lower-IV one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.moments import Moments
from tandem.learn.scorecard.options import ScorecardOptions

CONSTANT_RTOL = 1e-10  # a feature whose variance is below this share of its mean square is constant
TIE_RTOL = 1e-9  # VIFs this close count as equal (two features alone always have the same VIF)


def _scatter(m: Moments) -> np.ndarray:
    """(p, p) centred scatter ``Σ_i (x_i - x̄)(x_i - x̄)ᵀ`` from the Gram."""
    s = m.xtx[0, 1:]
    out = m.xtx[1:, 1:] - np.outer(s, s) / m.n
    return (out + out.T) / 2


def correlation(m: Moments) -> np.ndarray:
    """(p, p) Pearson correlation of the WoE features; NaN in the row and column of a constant feature."""
    scatter = _scatter(m)
    var = np.diag(scatter).copy()
    var[var <= CONSTANT_RTOL * np.diag(m.xtx)[1:]] = 0.0  # Σx² - (Σx)²/n of a constant is rounding noise
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.where(var > 0, np.sqrt(np.maximum(var, 0)), np.nan)
        out = scatter / np.outer(sd, sd)
    np.fill_diagonal(out, np.where(var > 0, 1.0, np.nan))
    return np.clip(out, -1.0, 1.0)


def vif(m: Moments) -> np.ndarray:
    """(p,) variance inflation factors ``1 / (1 - R²_j)``, R²_j of feature j regressed on the others and an
    intercept; inf for a constant feature or one the others explain exactly."""
    corr = correlation(m)
    constant = np.isnan(np.diag(corr))
    out = np.full(m.p, np.inf)
    live = np.flatnonzero(~constant)
    c = corr[np.ix_(live, live)]
    for k, j in enumerate(live):
        others = np.r_[0:k, k + 1 : len(live)]
        if len(others) == 0:
            out[j] = 1.0
            continue
        b = np.linalg.lstsq(c[np.ix_(others, others)], c[others, k], rcond=None)[0]
        unexplained = 1.0 - float(c[k, others] @ b)  # 1 - R²
        out[j] = 1.0 / unexplained if unexplained > 1e-12 else np.inf
    return out


@dataclass(frozen=True)
class SelectionRow:
    """One feature's line of the report: its IV and ``status`` ("selected" or why it was dropped)."""

    name: str
    iv: float
    status: str


@dataclass(frozen=True)
class Selection:
    """``selected``: the kept features in descending IV; ``rows``: every feature's line, descending IV."""

    selected: tuple[str, ...]
    rows: list[SelectionRow]


def _order(names, iv: dict[str, float]) -> list[str]:
    return sorted(names, key=lambda name: (-iv[name], name))


def select(iv: dict[str, float], m: Moments, opts: ScorecardOptions) -> Selection:
    """Select features from ``iv`` (feature -> IV; may include features already dropped for low IV, which
    then need no moments) and the moments ``m`` of the features that passed."""
    opts.check()
    m.check()
    unknown = [name for name in m.names if name not in iv]
    if unknown:
        raise InputError(f"no IV for features {unknown}")
    if any(not np.isfinite(v) or v < 0 for v in iv.values()):
        raise InputError("every IV must be a finite number >= 0")
    status: dict[str, str] = {}
    for name in iv:
        if iv[name] < opts.iv_min:
            status[name] = f"IV {iv[name]:.4f} < {opts.iv_min:g}"
        elif name not in m.names:
            raise InputError(f"feature '{name}' has IV {iv[name]:.4f} >= iv_min but no moments")
    candidates = _order([name for name in m.names if name not in status], iv)

    corr = correlation(m.subset(candidates)) if candidates else np.zeros((0, 0))
    kept: list[int] = []
    for j, name in enumerate(candidates):
        r = np.abs(np.nan_to_num(corr[j, kept])) if kept else np.zeros(0)
        if len(r) and r.max() > opts.max_corr:
            k = kept[int(np.argmax(r))]
            status[name] = f"correlated with {candidates[k]} (r = {corr[j, k]:+.2f})"
        else:
            kept.append(j)

    names = [candidates[j] for j in kept]
    while len(names) > 1:
        v = vif(m.subset(names))
        worst = float(v.max())
        if worst <= opts.max_vif:
            break
        ties = np.flatnonzero(v == worst if np.isinf(worst) else v >= worst * (1 - TIE_RTOL))
        j = int(ties[-1])  # names are in descending IV: the last tie has the lowest
        status[names[j]] = f"VIF {worst:.1f} > {opts.max_vif:g}"
        del names[j]

    for name in names:
        status[name] = "selected"
    rows = [SelectionRow(name, float(iv[name]), status[name]) for name in _order(status, iv)]
    return Selection(tuple(names), rows)

"""The options of the scorecard, declared once: name, default, help and the check of a value.

``BinningOptions``: the label holder's ``optimal`` step reads every one; a passive party's pre-binning
reads only ``max_n_prebins``, ``special_codes`` and its own ``min_bin_rows`` (its node config, ``[train]
min_bin_rows``: the label holder cannot lower it). ``ScorecardOptions``: feature selection
(``selection``), the regression (``fit``) and the points scale (``points``), all read by the label holder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from tandem.errors import InputError
from tandem.learn.buckets import MIN_BIN_ROWS

TRENDS = ("auto", "auto_heuristic", "auto_asc_desc", "ascending", "descending", "convex", "concave", "peak", "valley")
MAX_PREBINS = 250  # value pre-bins, special bins and the missing bin of one feature fit one uint8 id


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class BinningOptions:
    """Options of one binning run (pooled reference and federated run read the same object)."""

    # optbinning's CP solver time grows steeply with pre-bins: per feature at 120k rows ~0.14 s for 20,
    # ~2.4 s for 50, minutes for 200 (2-core machine, 2026-12-03)
    max_n_prebins: int = _option(20, "Most quantile pre-bins per numeric feature (before the minimum-count merge).")
    min_bin_rows: int = _option(
        MIN_BIN_ROWS, "Fewest training rows a pre-bin may hold; smaller ones are merged, never returned alone."
    )
    max_n_bins: int | None = _option(None, "Most final value bins per feature (None: no limit).")
    monotonic_trend: str | None = _option(
        "auto_asc_desc", f"Event-rate trend of the final bins: {', '.join(TRENDS)} or None (no constraint)."
    )
    special_codes: tuple[float | str, ...] = _option(
        (), "Values that are codes, not measurements (-999, 'unknown'): each gets a bin of its own."
    )

    def check(self) -> BinningOptions:
        """Raise ``InputError`` (one line naming the option) for a bad value; return ``self``."""
        if not 2 <= self.max_n_prebins <= MAX_PREBINS - 2:
            raise InputError(f"max_n_prebins must be between 2 and {MAX_PREBINS - 2}, got {self.max_n_prebins}")
        if self.min_bin_rows < 1:
            raise InputError(f"min_bin_rows must be >= 1, got {self.min_bin_rows}")
        if self.max_n_bins is not None and self.max_n_bins < 2:
            raise InputError(f"max_n_bins must be >= 2 or None, got {self.max_n_bins}")
        if self.monotonic_trend is not None and self.monotonic_trend not in TRENDS:
            trends = ", ".join(TRENDS)
            raise InputError(f"monotonic_trend must be one of {trends} or None, got {self.monotonic_trend!r}")
        if len(set(map(str, self.special_codes))) != len(self.special_codes):
            raise InputError("special_codes must not repeat a code")
        if len(self.special_codes) > 16:
            raise InputError(f"at most 16 special codes, got {len(self.special_codes)}")
        return self

    def optbinning_kwargs(self) -> dict[str, Any]:
        """The ``optbinning.OptimalBinning`` arguments these options fix (the same for every caller).

        The MIP solver, not CP-SAT: CP-SAT searches with parallel workers and, where two binnings tie on the
        objective, may return either depending on timing (seen on Give Me Some Credit under load: a federated
        and a pooled fit of the same counts differed by 7e-8 in IV); the MIP solver returns the same binning
        every run, as fast here (0.05-0.3 s per feature at 20-100 pre-bins, 120k rows)."""
        return {"max_n_bins": self.max_n_bins, "monotonic_trend": self.monotonic_trend, "solver": "mip"}


@dataclass(frozen=True)
class ScorecardOptions:
    """Options of feature selection, regression and points (pooled reference and federated run alike)."""

    iv_min: float = _option(0.02, "Least information value a feature needs to enter the regression.")
    max_corr: float = _option(
        0.7, "Largest |Pearson correlation| of two selected features' WoE (else the lower-IV goes)."
    )
    max_vif: float = _option(10.0, "Largest variance inflation factor of a selected feature (else the highest goes).")
    l2: float = _option(1.0, "L2 penalty of the Newton step, on the summed log-likelihood (intercept not penalised).")
    calibration_fraction: float = _option(
        0.25, "Share of training rows whose step scores calibrate the PD (Platt scaling); in (0, 1]."
    )
    pdo: float = _option(20.0, "Points to double the odds (good:bad).")
    base_score: float = _option(600.0, "Score at the base odds.")
    base_odds: float = _option(50.0, "Odds (good:bad) that score base_score points.")
    reason_codes: int = _option(4, "Reason codes per scored row: the features with most points lost.")

    def check(self) -> ScorecardOptions:
        """Raise ``InputError`` (one line naming the option) for a bad value; return ``self``."""
        for name in ("iv_min", "max_corr", "max_vif", "l2", "calibration_fraction", "pdo", "base_score", "base_odds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        if self.iv_min < 0:
            raise InputError(f"iv_min must be >= 0, got {self.iv_min}")
        if not 0 < self.max_corr <= 1:
            raise InputError(f"max_corr must be in (0, 1], got {self.max_corr}")
        if self.max_vif < 1:
            raise InputError(f"max_vif must be >= 1 (a VIF is never below 1), got {self.max_vif}")
        if self.l2 < 0:
            raise InputError(f"l2 must be >= 0, got {self.l2}")
        if not 0 < self.calibration_fraction <= 1:
            raise InputError(f"calibration_fraction must be in (0, 1], got {self.calibration_fraction}")
        if self.pdo <= 0:
            raise InputError(f"pdo must be > 0, got {self.pdo}")
        if self.base_odds <= 0:
            raise InputError(f"base_odds must be > 0, got {self.base_odds}")
        if isinstance(self.reason_codes, bool) or not isinstance(self.reason_codes, int) or self.reason_codes < 0:
            raise InputError(f"reason_codes must be an integer >= 0, got {self.reason_codes!r}")
        return self


DEFAULTS = BinningOptions()
HELP = {f.name: f.metadata["help"] for f in fields(BinningOptions)}
SCORECARD_DEFAULTS = ScorecardOptions()
SCORECARD_HELP = {f.name: f.metadata["help"] for f in fields(ScorecardOptions)}

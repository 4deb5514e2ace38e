"""The binning options of the scorecard, declared once: name, default, help and the check of a value.

The label holder's ``optimal`` step reads every option; a passive party's pre-binning reads only
``max_n_prebins``, ``special_codes`` and its own ``min_bin_rows`` (its node config, ``[train]
min_bin_rows``: the label holder cannot lower it).
"""

from __future__ import annotations

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
        """The ``optbinning.OptimalBinning`` arguments these options fix (the same for every caller)."""
        return {"max_n_bins": self.max_n_bins, "monotonic_trend": self.monotonic_trend, "solver": "cp"}


DEFAULTS = BinningOptions()
HELP = {f.name: f.metadata["help"] for f in fields(BinningOptions)}

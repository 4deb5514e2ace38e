"""A feature's final bins: counts, event rate, weight of evidence (WoE) and information value (IV).

Final bins come in ``Layout`` order: ``n_value_bins`` value bins (numeric: ascending; categorical: the
order optbinning gives, by event rate), then one bin per special pre-bin, then the missing bin. WoE and
IV follow optbinning's ``BinningTable`` exactly: ``WoE = ln(%non-event / %event)`` and
``IV = (%non-event - %event) * WoE`` per bin, both 0 for a bin without events or without non-events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tandem.learn.scorecard.prebin import Layout


@dataclass(frozen=True)
class BinTable:
    """``assign`` (n_prebins,) int64: pre-bin -> final bin; ``events`` and ``counts`` (n_bins,) int64 per
    final bin; ``edges``: the final value bins' edges or categories, where the feature's own party fills
    them in (``Prebins.final_edges``; the label holder does not know a passive party's)."""

    name: str
    layout: Layout
    assign: np.ndarray
    n_value_bins: int
    events: np.ndarray
    counts: np.ndarray
    edges: list | None = field(default=None, compare=False)

    @classmethod
    def from_prebins(cls, name: str, layout: Layout, assign: np.ndarray, events: np.ndarray, counts: np.ndarray):
        """Aggregate per-pre-bin ``events`` / ``counts`` (n_prebins,) over ``assign``."""
        assign = np.asarray(assign, dtype=np.int64)
        n_value_bins = int(assign[: layout.n_values].max()) + 1
        n = n_value_bins + layout.n_special + 1
        ev = np.bincount(assign, weights=np.asarray(events, np.float64), minlength=n).astype(np.int64)
        ct = np.bincount(assign, weights=np.asarray(counts, np.float64), minlength=n).astype(np.int64)
        return cls(name, layout, assign, n_value_bins, ev, ct)

    @property
    def n_bins(self) -> int:
        return len(self.counts)

    @property
    def nonevents(self) -> np.ndarray:
        return self.counts - self.events

    @property
    def _pure(self) -> np.ndarray:
        return (self.events == 0) | (self.nonevents == 0)

    @property
    def event_rate(self) -> np.ndarray:
        """(n_bins,) float64; 0 where a bin is pure (optbinning's convention)."""
        ok = ~self._pure
        out = np.zeros(self.n_bins)
        out[ok] = self.events[ok] / self.counts[ok]
        return out

    @property
    def woe(self) -> np.ndarray:
        """(n_bins,) float64, ``ln(%non-event / %event)``, 0 for pure bins."""
        ok = ~self._pure
        out = np.zeros(self.n_bins)
        t_ev, t_ne = self.events.sum(), self.nonevents.sum()
        out[ok] = np.log(1 / self.event_rate[ok] - 1) + np.log(t_ev / t_ne)
        return out

    @property
    def iv_bins(self) -> np.ndarray:
        """(n_bins,) float64, Jeffrey's divergence per bin, 0 for pure bins."""
        ok = ~self._pure
        out = np.zeros(self.n_bins)
        p_ev = self.events[ok] / self.events.sum()
        p_ne = self.nonevents[ok] / self.nonevents.sum()
        out[ok] = (p_ev - p_ne) * np.log(p_ev / p_ne)
        return out

    @property
    def iv(self) -> float:
        return float(self.iv_bins.sum())

    def woe_of(self, prebin_ids: np.ndarray) -> np.ndarray:
        """Rows' pre-bin ids (n,) -> their final bins' WoE (n,) float64."""
        return self.woe[self.assign[np.asarray(prebin_ids, dtype=np.int64)]]

    def bin_of(self, prebin_ids: np.ndarray) -> np.ndarray:
        """Rows' pre-bin ids (n,) -> their final bin ids (n,) int64."""
        return self.assign[np.asarray(prebin_ids, dtype=np.int64)]


def assign_problem(assign: np.ndarray, layout: Layout) -> str | None:
    """Why ``assign`` (pre-bin -> final bin) is not a merge the label holder can honestly send (None if
    it is): value pre-bins cover final value bins ``0 .. g-1`` (numeric: in order, consecutive pre-bins
    only; categorical: any grouping, in optbinning's event-rate order), then each special pre-bin and the
    missing pre-bin keep a bin of their own (``g + s``, last)."""
    a = np.asarray(assign)
    if a.shape != (layout.n_prebins,):
        return f"{len(a)} pre-bins instead of {layout.n_prebins}"
    v = a[: layout.n_values]
    if v.min(initial=0) < 0:
        return "bin ids must not be negative"
    g = int(v.max()) + 1
    if layout.kind == "numeric" and (v[0] != 0 or not np.isin(np.diff(v), (0, 1)).all()):
        return "a numeric feature's bins must merge consecutive pre-bins in order"
    if set(v.tolist()) != set(range(g)):
        return "value bins must be numbered 0.. without gaps"
    if a[layout.n_values :].tolist() != list(range(g, g + layout.n_special + 1)):
        return "special and missing pre-bins must keep bins of their own"
    return None


def assign_wire(assign: np.ndarray) -> str:
    """The wire form of a merge: the final bin of each pre-bin, comma-separated."""
    return ",".join(str(int(b)) for b in assign)


def parse_assign(text: str) -> np.ndarray | None:
    """Inverse of ``assign_wire`` (None if ``text`` is not comma-separated small integers)."""
    parts = text.split(",")
    if not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    return np.array([int(p) for p in parts], dtype=np.int64)

"""A query's released figures as a table: one row per released group, each measure with its 95% noise margin.

Measures come from the released slot sums (post-processing, which spends no budget): a mean is
a field's sum over the count, a share of a flag its sum over the count, a ratio share one sum
over another; means are clipped to the field's bounds, shares and sums to be non-negative.
The ``±95%`` columns are 1.96 standard deviations of the noise (first-order for ratios); they
do not include the bias of clamping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tandem.insight.dp import released_sd
from tandem.insight.query import FIXED_POINT, Measure, Query

Z95 = 1.96


@dataclass
class InsightResult:
    """``groups`` the released positions of ``query``'s groups, ``figures`` ``(released, slots)`` int64
    (count, then fixed-point sums), ``scales`` each party's noise scale per slot (0: no noise)."""

    query: Query
    query_id: str
    groups: list[int]
    figures: np.ndarray
    scales: list[float]
    margin: int

    @property
    def suppressed(self) -> int:
        return self.query.n_groups - len(self.groups)

    @property
    def columns(self) -> list[str]:
        keys = [g.split(".", 1)[1] for g in self.query.group_by]
        out = keys + ["count", "count ±95%", "share of count"]
        for m in self.measures:
            out += [m.label, f"{m.label} ±95%"]
        return out

    @property
    def measures(self) -> list[Measure]:
        """The measures besides the count (which every result has)."""
        return [m for m in self.query.measures if m.kind != "count"]

    def rows(self) -> list[list]:
        """One list per released group, in ``columns`` order."""
        q = self.query
        sd = [released_sd(b) for b in self.scales]
        total = max(1, int(self.figures[:, 0].sum())) if len(self.groups) else 1
        out = []
        for g, fig in zip(self.groups, self.figures):
            count = int(fig[0])
            row = [*q.group_labels(g), count, Z95 * sd[0], count / total]
            for m in self.measures:
                value, spread = _measure(m, q, fig, sd)
                row += [value, Z95 * spread]
            out.append(row)
        return out

    def to_arrow(self) -> pa.Table:
        cols = self.columns
        rows = self.rows()
        return pa.table(
            {c: [r[i] for r in rows] for i, c in enumerate(cols)},
            schema=pa.schema(
                [
                    (c, pa.string() if i < len(self.query.group_by) else pa.int64() if c == "count" else pa.float64())
                    for i, c in enumerate(cols)
                ]
            ),
        )

    def to_event(self) -> dict:
        """A JSON-ready form (a node's ``result`` event); ``from_event`` reads it back."""
        return {
            "query_id": self.query_id,
            "query": self.query.to_json(),
            "groups": self.groups,
            "figures": self.figures.tolist(),
            "scales": self.scales,
            "margin": self.margin,
        }

    @classmethod
    def from_event(cls, event: dict) -> InsightResult:
        figures = np.array(event["figures"], dtype=np.int64).reshape(len(event["groups"]), len(event["scales"]))
        return cls(
            Query.from_json(event["query"]),
            event["query_id"],
            list(event["groups"]),
            figures,
            list(event["scales"]),
            int(event["margin"]),
        )


def shown(v):
    """A figure for the eye: whole numbers from 100 up, two decimals from 1, four below."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if not isinstance(v, float):
        return v
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.4f}"


def _measure(m: Measure, q: Query, fig: np.ndarray, sd: list[float]) -> tuple[float, float]:
    """A measure's value and noise standard deviation from one group's figures."""
    slot = {name: i for i, name in enumerate(q.slots)}
    count, sd_count = max(float(fig[0]), 1.0), sd[0]
    a = slot[m.fields[0]]
    total, sd_total = fig[a] / FIXED_POINT, sd[a] / FIXED_POINT
    if m.kind == "sum":
        return max(0.0, total), sd_total
    if m.kind == "share" and len(m.fields) == 2:
        b = slot[m.fields[1]]
        whole, sd_whole = fig[b] / FIXED_POINT, sd[b] / FIXED_POINT
        ratio = total / whole if whole > 0 else math.nan
        spread = math.sqrt(sd_total**2 + (ratio * sd_whole) ** 2) / whole if whole > 0 else math.nan
        return max(0.0, ratio), spread
    mean = total / count
    spread = math.sqrt(sd_total**2 + (mean * sd_count) ** 2) / count
    lo, hi = (0.0, 1.0) if m.kind == "share" else q.bounds(m.fields[0])
    return float(np.clip(mean, lo, hi)), spread

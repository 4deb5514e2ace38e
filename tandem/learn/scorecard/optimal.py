"""Optimal binning: the only module that imports optbinning.

``merge_from_counts`` runs ``optbinning.OptimalBinning`` on a *count replica* of one feature: pre-bin
``k`` becomes ``events[k]`` rows with label 1 and ``counts[k] - events[k]`` with label 0 at x = k
(categorical: token ``c<k>``), special pre-bin ``s`` rows at code ``-(s+1)`` (``s<s>``), the missing
pre-bin's as missing values, and ``user_splits`` fixes the pre-bins (``k + 0.5``, or one group per
token). With ``user_splits`` optbinning skips its own pre-binning and sees nothing but the per-pre-bin
event and non-event counts and their total, so the replica gives the same bins, WoE and IV as
optbinning on the pooled rows with the same pre-bins (``reference_fit``), whichever party holds the
feature. The label holder runs it on the counts it decrypted (passive features) or counted (its own).
"""

from __future__ import annotations

import warnings

import numpy as np
from optbinning import OptimalBinning  # type: ignore[import-untyped]

from tandem.learn.scorecard.options import BinningOptions
from tandem.learn.scorecard.prebin import Layout, Prebins
from tandem.learn.scorecard.tables import BinTable


def merge_from_counts(
    name: str, layout: Layout, events: np.ndarray, counts: np.ndarray, opts: BinningOptions
) -> BinTable:
    """Final bins of one feature from its per-pre-bin ``events`` and ``counts`` (n_prebins,) int64."""
    events, counts = np.asarray(events, np.int64), np.asarray(counts, np.int64)
    numeric = layout.kind == "numeric"
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for k in range(layout.n_prebins):
        if k < layout.n_values:
            value: float | str | None = float(k) if numeric else f"c{k}"
        elif k < layout.missing:
            s = k - layout.n_values
            value = -(s + 1.0) if numeric else f"s{s}"
        else:
            value = np.nan if numeric else None
        xs.append(np.full(int(counts[k]), value, dtype=np.float64 if numeric else object))
        ys.append(np.r_[np.ones(int(events[k]), np.int64), np.zeros(int(counts[k] - events[k]), np.int64)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if numeric:
        splits: list = list(np.arange(layout.n_values - 1) + 0.5)
        specials: dict[str, list] | None = {f"s{s}": [-(s + 1.0)] for s in range(layout.n_special)} or None
    else:
        splits = [np.array([f"c{k}"], dtype=object) for k in range(layout.n_values)]
        specials = {f"s{s}": [f"s{s}"] for s in range(layout.n_special)} or None
    ob = _fit(layout.kind, x, y, splits, specials, opts)
    if numeric:
        cuts = np.round(np.asarray(ob.splits, dtype=np.float64) - 0.5).astype(np.int64)
        value_assign = np.searchsorted(cuts, np.arange(layout.n_values), side="left")
    else:
        value_assign = _category_assign(ob.splits, {f"c{k}": k for k in range(layout.n_values)}, layout.n_values)
    return _table(ob, name, layout, value_assign, events, counts)


def reference_fit(x: np.ndarray, y: np.ndarray, prebins: Prebins, opts: BinningOptions) -> BinTable:
    """optbinning on the pooled raw column ``x`` (n,) and labels ``y`` (n,) 0/1 with ``prebins``' pre-bins
    as ``user_splits`` (the reference every federated result is tested against)."""
    layout, y = prebins.layout, np.asarray(y, np.int64)
    ob = _fit(layout.kind, prebins.pooled_input(x), y, prebins.user_splits(), prebins.special_codes(), opts)
    if layout.kind == "numeric":
        cut_values = np.asarray(ob.splits, dtype=np.float64)
        cuts = np.searchsorted(prebins.edges, cut_values)
        if not np.array_equal(prebins.edges[np.minimum(cuts, len(prebins.edges) - 1)], cut_values):
            raise ValueError(f"optbinning split feature '{prebins.name}' away from its pre-bin edges")
        value_assign = np.searchsorted(cuts, np.arange(layout.n_values), side="left")
    else:
        value_assign = _category_assign(ob.splits, prebins.cat_to, layout.n_values)
    ids = prebins.transform(x)
    counts = np.bincount(ids, minlength=layout.n_prebins)
    events = np.bincount(ids, weights=y.astype(np.float64), minlength=layout.n_prebins).astype(np.int64)
    return _table(ob, prebins.name, layout, value_assign, events, counts)


def bin_own(name: str, x: np.ndarray, y: np.ndarray, opts: BinningOptions) -> tuple[Prebins, BinTable]:
    """The label holder's own feature: pre-bin ``x`` (n,) and merge on its own counts with labels ``y``
    (n,) 0/1 — the same code path as a passive feature's."""
    prebins = Prebins.fit(name, x, opts)
    ids = prebins.transform(x)
    n = prebins.layout.n_prebins
    counts = np.bincount(ids, minlength=n)
    events = np.bincount(ids, weights=np.asarray(y, np.float64), minlength=n).astype(np.int64)
    table = merge_from_counts(name, prebins.layout, events, counts, opts)
    return prebins, BinTable(
        name, table.layout, table.assign, table.n_value_bins, table.events, table.counts,
        prebins.final_edges(table.assign),
    )  # fmt: skip


def _fit(kind: str, x: np.ndarray, y: np.ndarray, splits: list, specials: dict | None, opts: BinningOptions):
    ob = OptimalBinning(
        dtype="numerical" if kind == "numeric" else "categorical",
        user_splits=splits,
        special_codes=specials,
        **opts.optbinning_kwargs(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ob.fit(x, y)
    if ob.status not in ("OPTIMAL", "FEASIBLE"):
        raise ValueError(f"optbinning found no binning ({ob.status}); loosen monotonic_trend or max_n_bins")
    return ob


def _category_assign(splits: list, to_prebin: dict[str, int], n_values: int) -> np.ndarray:
    """optbinning's categorical splits (final bins as lists of categories) -> value pre-bin -> final bin."""
    out = np.full(n_values, -1, dtype=np.int64)
    for b, group in enumerate(splits):
        for c in group:
            out[to_prebin[str(c)]] = b
    if (out < 0).any():
        raise ValueError("optbinning left a category pre-bin out of its bins")
    return out


def _table(ob, name: str, layout: Layout, value_assign, events, counts) -> BinTable:
    """The ``BinTable`` of a fit, checked against optbinning's own counts."""
    g = int(np.max(value_assign)) + 1
    assign = np.r_[value_assign, np.arange(g, g + layout.n_special + 1)].astype(np.int64)
    table = BinTable.from_prebins(name, layout, assign, events, counts)
    bt = ob.binning_table
    ev, ne = np.asarray(bt.n_event, np.int64), np.asarray(bt.n_nonevent, np.int64)
    if layout.n_special == 0:  # optbinning keeps an empty "Special" row
        ev, ne = np.r_[ev[:g], ev[-1:]], np.r_[ne[:g], ne[-1:]]
    if not (np.array_equal(ev, table.events) and np.array_equal(ev + ne, table.counts)):
        raise ValueError(f"optbinning's table of feature '{name}' disagrees with its bins")
    return table

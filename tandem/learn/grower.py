"""Grow one tree level by level from histograms, with the subtraction trick."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tandem.learn.buckets import all_cuts, bin_counts, coarsen, merge_bins
from tandem.learn.splitting import SplitParams, best_split, leaf_weight
from tandem.learn.tree import Tree, goes_left, predict_binned

HistogramBuilder = Callable[[np.ndarray], np.ndarray]  # rows (k,) -> (f, n_bins, 2)


def grow_tree(
    binned: np.ndarray,
    grad: np.ndarray,
    hess: np.ndarray,
    rows: np.ndarray,
    *,
    build: HistogramBuilder,
    missing_bin: int,
    params: SplitParams,
    max_depth: int,
    learning_rate: float,
    features: np.ndarray | None = None,
    min_bin_rows: int = 0,
    merged: np.ndarray | None = None,
    categorical: np.ndarray | None = None,
) -> tuple[Tree, np.ndarray]:
    """Grow a tree over ``rows``; return it and each row's leaf output (shape ``(len(rows),)``).

    ``build(rows)`` returns the histogram of those rows; a child's sibling histogram is the
    parent's minus the child's, so only the smaller child is ever built. ``features`` limits
    the splits to those feature indices (default: all). ``merged`` (f,) bool: the features whose
    bins are merged per node into buckets of at least ``min_bin_rows`` rows, as a passive party
    merges its own (``tandem.learn.buckets``; default: none). ``categorical`` (f,) bool: the
    categorical features (``tandem.learn.splitting``; default: none).
    """
    f, n_bins = binned.shape[1], missing_bin + 1
    sub = np.flatnonzero(merged) if merged is not None and min_bin_rows > 1 else np.array([], dtype=np.intp)

    def structure(row_sets: list[np.ndarray], parent: np.ndarray | None) -> np.ndarray | None:
        if not len(sub):
            return None
        cuts = all_cuts(f, n_bins)
        counts = [bin_counts(binned[np.ix_(r, sub)], n_bins) for r in row_sets]
        cats = None if categorical is None else categorical[sub]
        cuts[sub] = merge_bins(counts, min_bin_rows, None if parent is None else parent[sub], cats)
        return cuts

    def bucketed(hist: np.ndarray, cuts: np.ndarray | None) -> np.ndarray:
        return hist if cuts is None else coarsen(hist, cuts)

    tree = Tree()
    g, h = float(grad[rows].sum()), float(hess[rows].sum())
    root = tree.add(learning_rate * leaf_weight(g, h, params.l2))
    root_cuts = structure([rows], None)
    frontier = [(root, rows, bucketed(build(rows), root_cuts), root_cuts)]
    for _depth in range(max_depth):
        next_frontier = []
        for node, node_rows, hist, cuts in frontier:
            split = best_split(hist, missing_bin, params, features, cuts, categorical)
            if split is None:
                continue
            go_left = goes_left(
                binned[node_rows, split.feature], split.bin_, split.missing_left, missing_bin, split.left_bins
            )
            left_rows, right_rows = node_rows[go_left], node_rows[~go_left]
            small, large = (left_rows, right_rows) if len(left_rows) <= len(right_rows) else (right_rows, left_rows)
            child_cuts = structure([left_rows, right_rows], cuts)
            small_hist = bucketed(build(small), child_cuts)
            large_hist = bucketed(hist, child_cuts) - small_hist
            left_hist, right_hist = (small_hist, large_hist) if small is left_rows else (large_hist, small_hist)
            li, ri = tree.split(node, split, hist[0, :, 0].sum(), hist[0, :, 1].sum(), learning_rate, params.l2)
            next_frontier += [(li, left_rows, left_hist, child_cuts), (ri, right_rows, right_hist, child_cuts)]
        frontier = next_frontier
        if not frontier:
            break
    return tree, predict_binned(tree, binned[rows], missing_bin)

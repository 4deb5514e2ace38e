"""Grow one tree level by level from histograms, with the subtraction trick."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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
) -> tuple[Tree, np.ndarray]:
    """Grow a tree over ``rows``; return it and each row's leaf output (shape ``(len(rows),)``).

    ``build(rows)`` returns the histogram of those rows; a child's sibling histogram is the
    parent's minus the child's, so only the smaller child is ever built. ``features`` limits
    the splits to those feature indices (default: all).
    """
    tree = Tree()
    g, h = float(grad[rows].sum()), float(hess[rows].sum())
    root = tree.add(learning_rate * leaf_weight(g, h, params.l2))
    frontier = [(root, rows, build(rows))]
    for _depth in range(max_depth):
        next_frontier = []
        for node, node_rows, hist in frontier:
            split = best_split(hist, missing_bin, params, features)
            if split is None:
                continue
            go_left = goes_left(binned[node_rows, split.feature], split.bin_, split.missing_left, missing_bin)
            left_rows, right_rows = node_rows[go_left], node_rows[~go_left]
            small, large = (left_rows, right_rows) if len(left_rows) <= len(right_rows) else (right_rows, left_rows)
            small_hist = build(small)
            large_hist = hist - small_hist
            left_hist, right_hist = (small_hist, large_hist) if small is left_rows else (large_hist, small_hist)
            li, ri = tree.split(node, split, hist[0, :, 0].sum(), hist[0, :, 1].sum(), learning_rate, params.l2)
            next_frontier += [(li, left_rows, left_hist), (ri, right_rows, right_hist)]
        frontier = next_frontier
        if not frontier:
            break
    return tree, predict_binned(tree, binned[rows], missing_bin)

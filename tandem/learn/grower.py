"""Grow one tree level by level from histograms, with the subtraction trick."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tandem.learn.splitting import Split, SplitParams, best_split, leaf_weight

HistogramBuilder = Callable[[np.ndarray], np.ndarray]     # rows (k,) -> (f, n_bins, 2)


@dataclass
class Tree:
    """A fitted tree as flat arrays; node 0 is the root; ``left``/``right`` are -1 at leaves."""

    feature: list[int] = field(default_factory=list)
    bin_: list[int] = field(default_factory=list)
    missing_left: list[bool] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)        # leaf output (learning rate applied)
    gain: list[float] = field(default_factory=list)

    def add(self, value: float) -> int:
        for name, v in (("feature", -1), ("bin_", -1), ("missing_left", False), ("left", -1), ("right", -1),
                        ("value", value), ("gain", 0.0)):
            getattr(self, name).append(v)
        return len(self.value) - 1

    @property
    def n_leaves(self) -> int:
        return sum(1 for x in self.left if x < 0)


def grow_tree(binned: np.ndarray, grad: np.ndarray, hess: np.ndarray, rows: np.ndarray, *,
              build: HistogramBuilder, missing_bin: int, params: SplitParams, max_depth: int,
              learning_rate: float, features: np.ndarray | None = None) -> tuple[Tree, np.ndarray]:
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
            go_left = _goes_left(binned[node_rows, split.feature], split, missing_bin)
            left_rows, right_rows = node_rows[go_left], node_rows[~go_left]
            small, large = (left_rows, right_rows) if len(left_rows) <= len(right_rows) else (right_rows, left_rows)
            small_hist = build(small)
            large_hist = hist - small_hist
            left_hist, right_hist = (small_hist, large_hist) if small is left_rows else (large_hist, small_hist)
            total_g, total_h = hist[0, :, 0].sum(), hist[0, :, 1].sum()
            li = tree.add(learning_rate * leaf_weight(split.left_g, split.left_h, params.l2))
            ri = tree.add(learning_rate * leaf_weight(total_g - split.left_g, total_h - split.left_h, params.l2))
            _set_split(tree, node, split, li, ri)
            next_frontier += [(li, left_rows, left_hist), (ri, right_rows, right_hist)]
        frontier = next_frontier
        if not frontier:
            break
    return tree, predict_binned(tree, binned[rows], missing_bin)


def _set_split(tree: Tree, node: int, split: Split, left: int, right: int) -> None:
    tree.feature[node], tree.bin_[node], tree.missing_left[node] = split.feature, split.bin_, split.missing_left
    tree.left[node], tree.right[node], tree.gain[node] = left, right, split.gain


def _goes_left(bins: np.ndarray, split: Split, missing_bin: int) -> np.ndarray:
    return np.where(bins == missing_bin, split.missing_left, bins <= split.bin_)


def predict_binned(tree: Tree, binned: np.ndarray, missing_bin: int) -> np.ndarray:
    """Leaf outputs for rows of binned features (shape ``(n, f)`` -> ``(n,)``)."""
    feature, bin_, miss = np.array(tree.feature), np.array(tree.bin_), np.array(tree.missing_left)
    left, right, value = np.array(tree.left), np.array(tree.right), np.array(tree.value)
    node = np.zeros(len(binned), dtype=np.int64)
    rows = np.arange(len(binned))
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return value[node]
        r, n = rows[inner], node[inner]
        b = binned[r, feature[n]]
        go_left = np.where(b == missing_bin, miss[n], b <= bin_[n])
        node[r] = np.where(go_left, left[n], right[n])

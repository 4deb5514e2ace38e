"""One tree's shape and its two rules, written once for every grower and every scorer.

``goes_left`` is the go-left rule of a split (bin ``<= bin_`` goes left; the missing-value bin goes
where ``missing_left`` says); ``Tree.split`` applies a chosen split to a node (two children with
their leaf outputs); ``leaves`` routes rows through a tree, each node decided either by this
party's bins or by another party's go-left bits. The plaintext grower, the SecureBoost roles,
federated prediction and the decision scorers (one row or a batch) all use these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tandem.learn.splitting import Split, leaf_weight


def goes_left(bins: Any, bin_: Any, missing_left: Any, missing_bin: int, left_bins: Any = ()) -> Any:
    """The go-left rule, elementwise: numpy arrays give a bool array, Python scalars a bool (bitwise
    operators, so the online path, one row at a time, pays no numpy call). A categorical split
    (``left_bins`` non-empty: the value bins that go left) ignores ``bin_``."""
    if len(left_bins):
        inside = np.isin(bins, left_bins) if isinstance(bins, np.ndarray) else bins in left_bins
        return ((bins == missing_bin) & missing_left) | inside
    return ((bins == missing_bin) & missing_left) | ((bins != missing_bin) & (bins <= bin_))


@dataclass
class Tree:
    """A fitted tree as flat arrays; node 0 is the root; ``left``/``right`` are -1 at leaves."""

    feature: list[int] = field(default_factory=list)
    bin_: list[int] = field(default_factory=list)
    missing_left: list[bool] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)  # leaf output (learning rate applied)
    gain: list[float] = field(default_factory=list)
    left_bins: list[tuple[int, ...]] = field(default_factory=list)  # categorical splits: value bins going left

    def add(self, value: float) -> int:
        for name, v in (
            ("feature", -1),
            ("bin_", -1),
            ("missing_left", False),
            ("left", -1),
            ("right", -1),
            ("value", value),
            ("gain", 0.0),
            ("left_bins", ()),
        ):
            getattr(self, name).append(v)
        return len(self.value) - 1

    def split(
        self, node: int, split: Split, total_g: float, total_h: float, learning_rate: float, l2: float
    ) -> tuple[int, int]:
        """Split leaf ``node`` (whose rows sum to ``total_g``/``total_h``); return the children's ids."""
        li = self.add(learning_rate * leaf_weight(split.left_g, split.left_h, l2))
        ri = self.add(learning_rate * leaf_weight(total_g - split.left_g, total_h - split.left_h, l2))
        self.feature[node], self.bin_[node], self.missing_left[node] = split.feature, split.bin_, split.missing_left
        self.left[node], self.right[node], self.gain[node] = li, ri, split.gain
        self.left_bins[node] = split.left_bins
        return li, ri


def leaves(
    tree: Tree, binned: np.ndarray, missing_bin: int, bits: np.ndarray | None = None, column: np.ndarray | None = None
) -> np.ndarray:
    """The leaf (n,) int64 each row of ``binned`` (n, f) reaches.

    A node with ``column[node] >= 0`` (``column`` (nodes,) int) is another party's split: its rows
    follow ``bits[:, column[node]]`` (``bits`` (n, k) bool go-left bits); the others use ``binned``.
    """
    feature, bin_, miss = np.array(tree.feature), np.array(tree.bin_), np.array(tree.missing_left)
    left, right = np.array(tree.left), np.array(tree.right)
    column = np.full(len(feature), -1) if column is None or bits is None else np.asarray(column)
    theirs = column >= 0
    feature = np.where(theirs | (feature < 0), 0, feature)  # their nodes index no column of ``binned``
    categorical = np.array([len(s) > 0 for s in tree.left_bins], dtype=bool)
    if categorical.any():  # bin -> go-left table of each categorical node
        table = np.zeros((len(feature), missing_bin + 1), dtype=bool)
        for c in np.flatnonzero(categorical):
            table[c, list(tree.left_bins[c])] = True
            table[c, missing_bin] = miss[c]
    node = np.zeros(len(binned), dtype=np.int64)
    rows = np.arange(len(binned))
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return node
        r, n = rows[inner], node[inner]
        bins = binned[r, feature[n]]
        go_left = goes_left(bins, bin_[n], miss[n], missing_bin)
        if categorical.any():
            go_left = np.where(categorical[n], table[n, bins], go_left)
        if bits is not None and theirs.any():
            go_left = np.where(theirs[n], bits[r, np.maximum(column[n], 0)], go_left)
        node[r] = np.where(go_left, left[n], right[n])


def predict_binned(tree: Tree, binned: np.ndarray, missing_bin: int) -> np.ndarray:
    """Leaf outputs for rows of binned features (shape ``(n, f)`` -> ``(n,)``)."""
    return np.array(tree.value)[leaves(tree, binned, missing_bin)]

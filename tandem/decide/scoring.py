"""Scoring with each party's part of a federated model, one row at a time or in batch.

The passive party (the marketplace) turns its features for a row into one go-left bit per
split of its own, in the canonical order (split ids sorted); ``encode_bits`` packs them
for the wire. The label holder (the bank) walks the trees with its own features and those
bits; per-row contributions (each split's change of the node value, attributed to the
split's feature, Saabas-style) give the reason codes. Batch scores use the same walk
vectorised, so the online and batch scores are equal.
"""

from __future__ import annotations

import base64
import binascii
import math
from bisect import bisect_left

import numpy as np

from tandem.errors import InputError
from tandem.learn import model_io
from tandem.learn.tree import Tree, goes_left, leaves
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.framing import pack_mask, unpack_mask


class ScoringError(ValueError):
    """Input a model cannot score (its text is safe to show to the caller)."""


def encode_bits(bits: np.ndarray) -> str:
    """``(k,)`` bool -> base64 text of the packed bits (the row bitmap of ``tandem.protocols.framing``)."""
    return base64.b64encode(pack_mask(bits)).decode()


def decode_bits(text: str, k: int) -> np.ndarray:
    """Inverse of ``encode_bits`` for a model with ``k`` passive splits; ``ScoringError`` if malformed."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ScoringError("marketplace_bits is not base64") from None
    try:
        return unpack_mask(raw, k)
    except RemoteProtocolError:
        raise ScoringError(f"marketplace_bits must hold {k} bits for this model version") from None


def bin_row(thresholds: list[list[float]], missing_bin: int, x) -> list[int]:
    """One row's bins, as ``Binner.transform`` gives them (``bisect_left`` = ``searchsorted`` left),
    without numpy's per-call cost: the online path scores one row at a time."""
    return [missing_bin if math.isnan(v) else bisect_left(t, v) for t, v in zip(thresholds, x)]


def _refuse_categorical(version: str, binner, names: list[str]) -> None:
    """The scorers bin numeric values only: one ``InputError`` naming a model's categorical features."""
    if binner.categorical_.any():
        columns = ", ".join(repr(names[j]) for j in np.flatnonzero(binner.categorical_))
        raise InputError(
            f"model {version}: feature(s) {columns} are categorical; the decision service "
            "scores numeric features only (not supported yet)"
        )


class PassiveScorer:
    """A passive party's part of a model: features ``(n, fp)`` -> go-left bits ``(n, k)``."""

    def __init__(self, model: dict):
        self.version = model["model_id"]
        self.binner, self.names, splits = model_io.passive_splits(model)
        _refuse_categorical(self.version, self.binner, self.names)
        self.split_ids = sorted(splits)
        self._f = np.array([splits[s][0] for s in self.split_ids], dtype=np.int64)
        self._b = np.array([splits[s][1] for s in self.split_ids], dtype=np.int64)
        self._m = np.array([splits[s][2] for s in self.split_ids], dtype=bool)
        self._thresholds = [t.tolist() for t in self.binner.thresholds_]
        self._splits = list(zip(self._f.tolist(), self._b.tolist(), self._m.tolist()))

    def bits(self, X: np.ndarray) -> np.ndarray:
        """Go-left bits ``(n, k)`` of rows ``X`` (n, fp)."""
        binned = self.binner.transform(np.atleast_2d(X))[:, self._f]
        return goes_left(binned, self._b, self._m, self.binner.missing_bin)

    def row_bits(self, x) -> np.ndarray:
        """``bits`` of one row (k,), in plain Python (the online path)."""
        missing = self.binner.missing_bin
        b = bin_row(self._thresholds, missing, x)
        return np.array([goes_left(b[f], bb, m, missing) for f, bb, m in self._splits], dtype=bool)


class ActiveScorer:
    """The label holder's part of a model. ``names`` are its own features, in model order.

    ``score(x, bits)`` -> ``(pd, contributions)`` for one row: ``x`` (fa,) raw feature values,
    ``bits`` (k,) the passive party's go-left bits; contributions map a feature name (or the
    passive party's name for all its splits) to its share of the raw score.
    """

    def __init__(self, model: dict):
        self.version = model["model_id"]
        self.binner, self.names, self.base_score, trees, ids = model_io.active_trees(model)
        _refuse_categorical(self.version, self.binner, self.names)
        self.split_ids = sorted({sid for t in ids for _, sid in t.values()})
        index = {sid: i for i, sid in enumerate(self.split_ids)}
        self.parties = sorted({party for t in ids for party, _ in t.values()})
        self._trees: list[tuple] = []
        self._batch: list[tuple[Tree, np.ndarray]] = []
        for tree, tid in zip(trees, ids):
            passive = np.array([index[tid[n][1]] if n in tid else -1 for n in range(len(tree.value))])
            owner = [
                tid[n][0] if n in tid else (self.names[tree.feature[n]] if tree.feature[n] >= 0 else "")
                for n in range(len(tree.value))
            ]
            self._batch.append((tree, passive))
            self._trees.append(
                (
                    np.array(tree.feature),
                    np.array(tree.bin_),
                    np.array(tree.missing_left),
                    np.array(tree.left),
                    np.array(tree.right),
                    np.array(tree.value),
                    passive,
                    owner,
                )
            )
        self._lists = [tuple(a.tolist() if isinstance(a, np.ndarray) else a for a in t) for t in self._trees]
        self._thresholds = [t.tolist() for t in self.binner.thresholds_]

    @property
    def n_bits(self) -> int:
        return len(self.split_ids)

    def score(self, x: np.ndarray, bits: np.ndarray) -> tuple[float, dict[str, float]]:
        missing = self.binner.missing_bin
        binned = bin_row(self._thresholds, missing, x)
        bits = bits.tolist()
        raw, contributions = self.base_score, dict[str, float]()
        for feature, bin_, miss, left, right, value, passive, owner in self._lists:
            node = 0
            while left[node] >= 0:
                if passive[node] >= 0:
                    go_left = bits[passive[node]]
                else:
                    go_left = goes_left(binned[feature[node]], bin_[node], miss[node], missing)
                child = left[node] if go_left else right[node]
                contributions[owner[node]] = contributions.get(owner[node], 0.0) + value[child] - value[node]
                node = child
            raw += value[node]
        return float(1 / (1 + math.exp(-raw))), contributions

    def score_batch(self, X: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """PD of each row: ``X`` (n, fa), ``bits`` (n, k)."""
        binned = self.binner.transform(X)
        missing = self.binner.missing_bin
        raw = np.full(len(binned), self.base_score)
        for tree, passive in self._batch:
            raw += np.array(tree.value)[leaves(tree, binned, missing, bits, passive)]
        return 1 / (1 + np.exp(-raw))

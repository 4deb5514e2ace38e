"""Federated prediction: the passive parties send go-left bitmaps of their splits (never feature
values); the active party routes every row through the trees with them and its own bins."""

from __future__ import annotations

import numpy as np

from tandem.learn.tree import Tree, goes_left, leaves
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.framing import frame_blobs, pack_mask
from tandem.protocols.wire import PredictBitmaps, PredictRequest


def passive_bitmaps(
    request: PredictRequest,
    binned: np.ndarray,
    splits: dict[str, tuple[int, int, bool, tuple[int, ...]]],
    missing_bin: int,
) -> PredictBitmaps:
    """The passive side of prediction: go-left bitmaps of its splits; never feature values.

    ``splits`` maps split id -> (feature, bin, missing_left, left bins) on this party's binned
    features (left bins: a categorical split's set, empty for a numeric one).
    """
    if request.n_rows != len(binned):
        raise RemoteProtocolError(f"active party predicts {request.n_rows} rows, this party has {len(binned)}")
    blobs = []
    for split_id in request.split_ids:
        if split_id not in splits:
            raise RemoteProtocolError(f"unknown split id {split_id[:16]!r} (model version mismatch?)")
        f, b, m, left = splits[split_id]
        blobs.append(pack_mask(goes_left(binned[:, f], b, m, missing_bin, left)))
    return PredictBitmaps(request.session, request.model, frame_blobs(blobs))


def predict_federated(
    trees: list[Tree],
    split_ids: list[dict[int, tuple[int, str]]],
    base_score: float,
    binned: np.ndarray,
    missing_bin: int,
    bitmaps: dict[tuple[int, str], np.ndarray],
) -> np.ndarray:
    """Raw scores (n,) from the active party's binned features (n, fa) and the passive parties'
    go-left bitmaps: ``bitmaps[(party, split id)]`` (n,) bool for each node in ``split_ids[t]``;
    the other nodes are the active party's own splits."""
    raw = np.full(len(binned), base_score)
    for tree, ids in zip(trees, split_ids, strict=True):
        nodes = sorted(ids)
        column = np.full(len(tree.value), -1, dtype=np.int64)
        column[nodes] = np.arange(len(nodes))
        bits = np.column_stack([bitmaps[ids[n]] for n in nodes]) if nodes else np.zeros((len(binned), 0), bool)
        raw += np.array(tree.value)[leaves(tree, binned, missing_bin, bits, column)]
    return raw

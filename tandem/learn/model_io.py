"""Each party's part of a federated model as versioned JSON (never pickle).

Active part: base score, the binning of its own features, and the trees; a passive split
is stored as (party, opaque split id) with no feature, bin or threshold; a split of a categorical
feature as its set of bins going left (with their categories, for the reader). Passive part: the
binning of its own features and its split table (split id -> feature name, bin, threshold,
missing direction). Both carry the same ``model_id`` so that mismatched versions are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tandem.atomic import write_atomically
from tandem.errors import InputError
from tandem.learn.binning import Binner, n_bins
from tandem.learn.tree import Tree

FORMAT = "tandem-boost/2"


def _threshold(binner: Binner, feature: int, bin_: int) -> float | None:
    """The split threshold, or ``None`` when every non-missing value goes left."""
    t = binner.threshold(feature, bin_)
    return None if np.isinf(t) else t


def _binner_json(binner: Binner, names: list[str]) -> dict:
    """``categories`` (only when some feature is categorical): per feature its categories in bin
    order (the bin after them is "other"), ``null`` for a numeric feature."""
    out = {"max_bins": binner.max_bins, "features": names, "thresholds": [t.tolist() for t in binner.thresholds_]}
    categories = getattr(binner, "categories_", [])
    if any(c is not None for c in categories):
        out["categories"] = categories
    return out


def _binner_from(d: dict) -> tuple[Binner, list[str]]:
    b = Binner(d["max_bins"])
    b.thresholds_ = [np.array(t, dtype=np.float64) for t in d["thresholds"]]
    stored = d.get("categories", [None] * len(b.thresholds_))
    b.categories_ = [None if c is None else [str(v) for v in c] for c in stored]
    if len(b.categories_) != len(b.thresholds_):
        raise InputError("model binning: categories and thresholds describe different feature counts")
    b.categorical_ = np.array([c is not None for c in b.categories_], dtype=bool)
    b.n_bins_ = n_bins(b.thresholds_, b.categories_)
    return b, list(d["features"])


def active_json(
    model_id: str,
    party: str,
    binner: Binner,
    names: list[str],
    base_score: float,
    trees: list[Tree],
    split_ids: list[dict[int, tuple[int, str]]],
    passive_parties: list[str],
    params: dict,
) -> dict:
    """``split_ids[t][node] = (k, split id)`` names a split of ``passive_parties[k]``."""
    fa = len(names)
    out_trees = []
    for tree, ids in zip(trees, split_ids):
        nodes = []
        for n in range(len(tree.value)):
            node: dict[str, object] = {"left": tree.left[n], "right": tree.right[n], "value": tree.value[n]}
            if tree.left[n] >= 0:
                if n in ids:
                    node.update(party=passive_parties[ids[n][0]], split_id=ids[n][1], gain=tree.gain[n])
                elif tree.left_bins[n]:
                    f, left = tree.feature[n], list(tree.left_bins[n])
                    node.update(
                        party=party,
                        feature=names[f],
                        left_bins=left,
                        left_categories=binner.category_names(f, left),  # None: the "other" bin
                        missing_left=tree.missing_left[n],
                        gain=tree.gain[n],
                    )
                else:
                    f, b = tree.feature[n], tree.bin_[n]
                    node.update(
                        party=party,
                        feature=names[f],
                        bin=b,
                        threshold=_threshold(binner, f, b),
                        missing_left=tree.missing_left[n],
                        gain=tree.gain[n],
                    )
            nodes.append(node)
        out_trees.append(nodes)
    if any(f >= fa and n not in ids for t, ids in zip(trees, split_ids) for n, f in enumerate(t.feature) if f >= 0):
        raise ValueError("a passive split has no split id")
    return {
        "format": FORMAT,
        "model_id": model_id,
        "role": "active",
        "party": party,
        "passive_parties": passive_parties,
        "params": params,
        "base_score": base_score,
        "binning": _binner_json(binner, names),
        "trees": out_trees,
    }


def passive_json(
    model_id: str,
    party: str,
    binner: Binner,
    names: list[str],
    split_bins: dict[str, tuple[int, int, bool, tuple[int, ...]]],
) -> dict:
    """``split_bins``: split id -> (feature, bin, missing_left, left bins), as ``PassiveBoost.split_bins_``."""

    def split(f: int, b: int, m: bool, left: tuple[int, ...]) -> dict:
        if left:
            categories = binner.category_names(f, list(left))
            return {"feature": names[f], "left_bins": list(left), "left_categories": categories, "missing_left": m}
        return {"feature": names[f], "bin": b, "threshold": _threshold(binner, f, b), "missing_left": m}

    return {
        "format": FORMAT,
        "model_id": model_id,
        "role": "passive",
        "party": party,
        "binning": _binner_json(binner, names),
        "splits": {sid: split(*s) for sid, s in split_bins.items()},
    }


def save(model: dict, path: str | os.PathLike) -> None:
    """Write atomically, readable only by this party (it is this party's part of the model)."""
    write_atomically(path, json.dumps(model, indent=1, allow_nan=False).encode(), mode=0o600)


def load(path: str | os.PathLike, role: str | None) -> dict:
    """A party's model file; ``role`` ("active" or "passive"; None: either) must match."""
    path = Path(path)
    try:
        model = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable model file ({exc})") from None
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise InputError(
            f"{path}: not a {FORMAT} model (format {model.get('format') if isinstance(model, dict) else '?'})"
        )
    if role is not None and model.get("role") != role:
        raise InputError(f"{path}: is the {model.get('role')} party's model, expected the {role} party's")
    return model


def active_trees(model: dict) -> tuple[Binner, list[str], float, list[Tree], list[dict[int, tuple[str, str]]]]:
    """Rebuild the active party's binner, trees and passive splits (node -> (party, split id)) from its JSON."""
    binner, names = _binner_from(model["binning"])
    index = {n: i for i, n in enumerate(names)}
    trees, ids = [], []
    for nodes in model["trees"]:
        tree, tid = Tree(), {}
        for n, node in enumerate(nodes):
            tree.add(node["value"])
            tree.left[n], tree.right[n] = node["left"], node["right"]
            if node["left"] >= 0:
                if "split_id" in node:
                    tid[n] = (node["party"], node["split_id"])
                else:
                    tree.feature[n], tree.bin_[n] = index[node["feature"]], node.get("bin", -1)
                    tree.missing_left[n] = node["missing_left"]
                    tree.left_bins[n] = tuple(int(b) for b in node.get("left_bins", ()))
        trees.append(tree)
        ids.append(tid)
    return binner, names, model["base_score"], trees, ids


def passive_splits(model: dict) -> tuple[Binner, list[str], dict[str, tuple[int, int, bool, tuple[int, ...]]]]:
    """The passive party's binner, feature names and splits (split id -> (feature, bin, missing_left, left bins))."""
    binner, names = _binner_from(model["binning"])
    index = {n: i for i, n in enumerate(names)}
    splits = {
        sid: (index[s["feature"]], s.get("bin", -1), s["missing_left"], tuple(int(b) for b in s.get("left_bins", ())))
        for sid, s in model["splits"].items()
    }
    return binner, names, splits


def importance(model: dict, shared_names: dict[str, str] | None = None) -> list[tuple[str, str, float]]:
    """Total split gain per feature, from the active party's model: ``(party, feature, gain)``, largest first.

    Passive features are known only by opaque split ids; they are grouped per party as
    "PARTY (not shared)" unless ``shared_names`` (split id -> name) comes from that party.
    """
    totals: dict[tuple[str, str], float] = {}
    for nodes in model["trees"]:
        for node in nodes:
            if node["left"] < 0:
                continue
            if "split_id" in node:
                name = (shared_names or {}).get(node["split_id"], "(not shared)")
                key = (node["party"], name)
            else:
                key = (node["party"], node["feature"])
            totals[key] = totals.get(key, 0.0) + node.get("gain", 0.0)
    return sorted(((p, f, g) for (p, f), g in totals.items()), key=lambda t: -t[2])

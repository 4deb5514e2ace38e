"""The scorecard report's tables as plain rows (JSON / CSV ready): the points table, each selected
feature's bins and the calibration by score band. ``scorecard_report`` renders them; the CLI prints them.

What the label holder shows of a passive party's feature: the name its model part gives it (opaque, like
``f0``, unless that party shares names), its bin index, and what the label holder itself computed in
training (rows, events, WoE, IV and points per bin); never edges, categories or codes, whatever the
model part holds.
"""

from __future__ import annotations

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.labels import bin_labels, interval_labels
from tandem.learn.scorecard.model import check
from tandem.learn.scorecard.points import Scaling, model_points
from tandem.learn.scorecard.stability import band_edges, score_bands

PD_FLOOR = 1e-15  # a PD of exactly 0 or 1 would be an infinite score


def is_own(model: dict, entry: dict) -> bool:
    """Whether the label holder owns ``entry`` (its party and its pre-binning): only then are its bins labelled."""
    return entry.get("owner") == model.get("party") and "prebins" in entry


def points_rows(model: dict, scaling: Scaling) -> list[dict]:
    """The points table of the label holder's model part: a base row, then one row per bin of each selected
    feature: ``{feature, owner, bin, label, woe, points, points_exact}`` (``points`` rounded for display,
    ``points_exact`` what scoring adds; ``bin`` and ``woe`` None on the base row)."""
    check(model, "active")
    table = model_points(model, scaling)
    base, rounded = table.rounded()
    rows = [
        {
            "feature": "(base points)",
            "owner": str(model.get("party", "")),
            "bin": None,
            "label": "base points",
            "woe": None,
            "points": base,
            "points_exact": float(table.base),
        }
    ]
    for entry in model["features"]:
        name = entry["name"]
        for b, label in enumerate(bin_labels(entry, is_own(model, entry))):
            rows.append(
                {
                    "feature": name,
                    "owner": str(entry.get("owner", "")),
                    "bin": b,
                    "label": label,
                    "woe": float(entry["woe"][b]),
                    "points": rounded[name][b],
                    "points_exact": float(table.points[name][b]),
                }
            )
    return rows


def feature_rows(model: dict, scaling: Scaling) -> dict[str, list[dict]]:
    """Per selected feature (model order) its bins: ``{bin, label, rows, share, events, event_rate, woe,
    iv, points}``; ``iv`` is the bin's term ``(%non-event - %event)·WoE`` of the feature's IV."""
    check(model, "active")
    table = model_points(model, scaling)
    out: dict[str, list[dict]] = {}
    for entry in model["features"]:
        name = entry["name"]
        counts = np.asarray(entry["counts"], dtype=np.int64)
        events = np.asarray(entry["events"], dtype=np.int64)
        woe = np.asarray(entry["woe"], dtype=np.float64)
        if len(events) != len(counts) or (events > counts).any() or events.sum() in (0, counts.sum()):
            raise InputError(f"feature '{name}' of the model: its events and counts do not fit")
        nonevents = counts - events
        iv = (nonevents / nonevents.sum() - events / events.sum()) * woe
        labels = bin_labels(entry, is_own(model, entry))
        out[name] = [
            {
                "bin": b,
                "label": labels[b],
                "rows": int(counts[b]),
                "share": float(counts[b] / counts.sum()),
                "events": int(events[b]),
                "event_rate": float(events[b] / counts[b]) if counts[b] else 0.0,
                "woe": float(woe[b]),
                "iv": float(iv[b]),
                "points": float(table.points[name][b]),
            }
            for b in range(len(counts))
        ]
    return out


def points_of_pd(pd, scaling: Scaling) -> np.ndarray:
    """(n,) scores in points of probabilities of default (n,) (``Scaling.score_from_logit``)."""
    p = np.clip(np.asarray(pd, dtype=np.float64), PD_FLOOR, 1 - PD_FLOOR)
    return scaling.score_from_logit(np.log(p) - np.log1p(-p))


def calibration_bands(pd, y, scaling: Scaling) -> list[dict]:
    """Rows scored ``pd`` (n,) with outcomes ``y`` (n,) 0/1 in bands of their points (deciles,
    ``stability.band_edges``), riskiest (fewest points) first: ``{band, label, rows, mean_pd,
    observed_rate}``."""
    pd, y = np.asarray(pd, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if pd.ndim != 1 or pd.shape != y.shape or len(pd) == 0 or not np.isin(y, (0, 1)).all():
        raise InputError("calibration needs test scores and 0/1 labels of the same length")
    points = points_of_pd(pd, scaling)
    edges = band_edges(points)
    bands = score_bands(points, edges)
    rows = []
    for k, label in enumerate(interval_labels(edges)):
        rows_k = bands == k
        if not rows_k.any():
            continue
        rows.append(
            {
                "band": k + 1,
                "label": label,
                "rows": int(rows_k.sum()),
                "mean_pd": float(pd[rows_k].mean()),
                "observed_rate": float(y[rows_k].mean()),
            }
        )
    return rows

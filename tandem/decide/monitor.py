"""``tandem monitor``: is the live portfolio still the population the bank's scorecard was developed on?

For the scorecard that a bank node's ``[decide]`` config serves for an entity:

- the score's PSI: the portfolio's scores in ``scores_{entity}`` (``tandem score``) of that model version,
  scored in the period, turned into points with the model's own scaling, against the development sample's
  score bands that the model part keeps (``score_reference``);
- each of the bank's own selected features' CSI: its rows in the bank's store (the feature rows the service
  and ``tandem score`` read) as of the period's last day, or as of the day the service takes its features
  (``[decide]``/``[node] as_of``) when that is earlier: the rows the period's scores came from (a node
  pinned to a past day has no later features), against the training rows per final bin that the model part
  keeps (``counts``).

Each party runs its own: the marketplace's features are binned only in its own model part, which keeps no
training counts, so it computes their CSI on its own development rows (``stability.feature_stability``
with ``dev_x``); nothing here talks to the other party. Lights: ``stability.traffic_light``.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np

from tandem.decide.batch import SPEC
from tandem.decide.state import load_decide_config
from tandem.errors import InputError
from tandem.features.rows import rows
from tandem.learn.scorecard.model import FORMAT, check
from tandem.learn.scorecard.options import ScorecardOptions
from tandem.learn.scorecard.points import Scaling
from tandem.learn.scorecard.stability import feature_stability, score_stability
from tandem.report.scorecard_tables import points_of_pd
from tandem.store import open_store


def parse_day(text: str, option: str) -> date:
    """A date like 2019-01-31 given as ``option``; else ``InputError`` naming the option."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise InputError(f"{option} must be a date like 2019-01-31, got '{text}'") from None


def load_scorecard(path: Path) -> dict:
    """The bank's (active) part of a scorecard with its development score bands; ``InputError`` otherwise."""
    try:
        model = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable model file ({exc})") from None
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        fmt = model.get("format", "unknown") if isinstance(model, dict) else "unknown"
        raise InputError(f"{path}: the model is not a scorecard ({FORMAT}), it is '{fmt}': nothing to monitor")
    try:
        check(model, "active")
    except InputError as exc:
        raise InputError(f"{path}: {exc} (monitor with the bank's config)") from None
    if "score_reference" not in model:
        raise InputError(f"{path}: the scorecard keeps no development score bands (retrain it with tandem scorecard)")
    return model


def _scaling(model: dict) -> Scaling:
    try:
        return Scaling.of(ScorecardOptions(**model["options"]))
    except (KeyError, TypeError):
        raise InputError(f"model {model['model_id']}: no points scaling in its options") from None


def portfolio_scores(store, entity: str, version: str, start: date, end: date) -> np.ndarray:
    """(n,) PD of the rows of ``scores_{entity}`` of model ``version`` scored from ``start`` through ``end``
    (whole days); ``InputError`` when there are none."""
    name = SPEC[entity].name
    hint = f"run tandem score --entity {entity} first"
    if name not in store.table_names():
        raise InputError(f"no {name} table in the bank's store: {hint}")
    con = store.analytics([name])
    pd = con.execute(
        f"SELECT pd FROM {name} WHERE model_version = ? AND scored_at >= ? AND scored_at < ?",
        [version, datetime.combine(start, time()), datetime.combine(end + timedelta(days=1), time())],
    ).fetchnumpy()["pd"]
    if len(pd) == 0:
        raise InputError(f"no {entity} scores of model {version} from {start} to {end} in {name}: {hint}")
    return np.asarray(pd, dtype=np.float64)


def monitor(config_path: str, entity: str, start: date, end: date) -> dict:
    """The stability of the bank's scorecard for ``entity`` over days ``start`` .. ``end``:
    ``{entity, model_version, from, to, as_of (of the features), score: {rows, psi, light, scores,
    mean_points}, features: [{feature, psi, light, rows}]}`` (``rows``: ``stability.counts_table``'s per-bin rows;
    JSON-ready)."""
    if start > end:
        raise InputError(f"--from {start} is after --to {end}")
    cfg = load_decide_config(config_path)
    if entity not in cfg.models:
        raise InputError(f"{config_path}: [decide] has no {entity}_model")
    model = load_scorecard(cfg.models[entity])
    own = [e for e in model["features"] if "prebins" in e]
    as_of = min(end, cfg.as_of)
    store = open_store(cfg.node.store, read_only=True)
    try:
        pd = portfolio_scores(store, entity, model["model_id"], start, end)
        table = rows(store, "bank", entity, as_of)
    finally:
        store.close()
    points = points_of_pd(pd, _scaling(model))
    score = score_stability(model["score_reference"], points)
    features = []
    for entry in own:
        if entry["name"] not in table.column_names:
            raise InputError(f"scorecard feature '{entry['name']}' is missing from the bank's {entity} feature rows")
        x = table.column(entry["name"]).to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)
        csi = feature_stability(entry, x)
        features.append({"feature": entry["name"], "psi": csi["psi"], "light": csi["light"], "rows": csi["rows"]})
    return {
        "entity": entity,
        "model_version": model["model_id"],
        "from": start.isoformat(),
        "to": end.isoformat(),
        "as_of": as_of.isoformat(),
        "score": {**score, "scores": int(len(pd)), "mean_points": float(points.mean())},
        "features": features,
    }

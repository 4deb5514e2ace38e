"""A party's part of a fitted scorecard as JSON (``tandem-scorecard/1``), and scoring rows with it.

The label holder's part: the intercept, the points scaling and, for every selected feature, its
coefficient and per-bin WoE (its own features also with their pre-binning and merge, so it can bin new
rows; a passive feature under the name that party gave it, with no edges). A passive party's part: for
each of its selected features the pre-binning, the merge and its logit contribution per final bin
(coefficient x WoE) — the points of its features, which it keeps.

A row's logit is ``intercept + Σ own coef·WoE + the passive party's summed contribution``; its PD is
``1 / (1 + e^-logit)`` (``scorer`` scores rows with the two parts).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.fit import Fitted
from tandem.learn.scorecard.gram import quantise_woe
from tandem.learn.scorecard.options import ScorecardOptions
from tandem.learn.scorecard.prebin import Prebins
from tandem.learn.scorecard.scoring import PassiveScoring
from tandem.learn.scorecard.selection import Selection
from tandem.learn.scorecard.tables import BinTable

FORMAT = "tandem-scorecard/1"


def active_model(
    model_id: str,
    party: str,
    peer: str,
    fitted: Fitted,
    prebins: dict[str, Prebins],
    tables: dict[str, BinTable],
    selection: Selection,
    opts: ScorecardOptions,
) -> dict:
    """The label holder's part. ``prebins`` its own features' pre-binnings; ``tables`` every feature's bins."""
    features = []
    for name, coef in zip(fitted.names, fitted.coef):
        t = tables[name]
        entry = {
            "name": name,
            "owner": party if name in prebins else peer,
            "coef": float(coef),
            "woe": quantise_woe(t.woe).tolist(),
            "iv": float(t.iv_bins.sum()),
            "events": t.events.tolist(),
            "counts": t.counts.tolist(),
        }
        if name in prebins:
            entry |= {"prebins": prebins[name].to_json(), "assign": t.assign.tolist(), "edges": t.edges}
        features.append(entry)
    return {
        "format": FORMAT,
        "model_id": model_id,
        "party": party,
        "role": "active",
        "peer": peer,
        "intercept": float(fitted.intercept),
        "features": features,
        "selection": [asdict(r) for r in selection.rows],
        "options": asdict(opts),
    }


def passive_model(
    model_id: str,
    party: str,
    real_names: list[str],
    wire_names: list[str],
    prebins: list[Prebins],
    assigns: list[np.ndarray],
    final: PassiveScoring,
    factor: float,
) -> dict:
    """A passive party's part: its selected features (real name, the name the label holder knows), each with
    its pre-binning, merge, logit contribution per final bin and the points that is (``-factor`` x it, the
    PDO scaling's points per unit of log-odds)."""
    features = []
    for wire, contribution in zip(final.features_, final.contributions_):
        j = wire_names.index(wire)
        features.append(
            {
                "name": real_names[j],
                "as": wire,
                "prebins": prebins[j].to_json(),
                "assign": assigns[j].tolist(),
                "contribution": contribution.tolist(),
                "points": (-factor * contribution).tolist(),
            }
        )
    return {"format": FORMAT, "model_id": model_id, "party": party, "role": "passive", "features": features}


def final_bins(entry: dict, x: np.ndarray) -> np.ndarray:
    """(n,) final bin ids of rows ``x`` (n,) of one feature of a model part that holds its pre-binning."""
    prebins = Prebins.from_json(entry["prebins"])
    return np.asarray(entry["assign"], dtype=np.int64)[prebins.transform(x)]


def check(model: dict, role: str) -> dict:
    """``model`` if it is a scorecard part of ``role``; else ``InputError`` in one line."""
    if not isinstance(model, dict) or model.get("format") != FORMAT or model.get("role") != role:
        raise InputError(f"not the {role} part of a {FORMAT} model")
    return model

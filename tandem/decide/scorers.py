"""Scorers by model-file format: this party's part of a federated model (boosted, or a scorecard,
``tandem.learn.scorecard.scorer``) is built in; a plugin file named in ``[decide] scorers`` may register other
formats (the benchmark's bank-only LightGBM).

A registered factory takes the parsed model file (a dict with ``"format"``) and returns an active
scorer: ``version``, ``names``, ``n_bits``, ``parties`` and ``score(x, bits) -> (pd, contributions)``.
Every passive scorer is built in (``PASSIVE``): a plugin format scores on the label holder's side only.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tandem.decide.scoring import ActiveScorer, PassiveScorer
from tandem.errors import InputError
from tandem.learn import model_io
from tandem.learn.scorecard.model import FORMAT as SCORECARD
from tandem.learn.scorecard.scorer import ActiveScorecardScorer, PassiveScorecardScorer

PASSIVE = (PassiveScorer, PassiveScorecardScorer)  # the passive parts' scorers: rows -> bits for the peer
Factory = Callable[[dict], Any]
FORMATS: dict[str, Factory] = {}  # model-file format -> factory, filled by plugins


def register(fmt: str, factory: Factory) -> None:
    """Score model files whose ``"format"`` is ``fmt`` with ``factory(model)``."""
    FORMATS[fmt] = factory


def load_plugins(paths: Sequence[Path]) -> None:
    """Import each plugin file once (each calls ``register``); errors name the file."""
    for path in paths:
        name = f"tandem_scorer_plugin_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None or not Path(path).is_file():
            raise InputError(f"{path}: [decide] scorers names no readable Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def load_scorer(path: Path, role: str | None) -> Any:
    """A party's scorer from its model file: its part of a federated model (``role`` checked when
    given), or a registered format's."""
    try:
        head = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable model file ({exc})") from None
    fmt = head.get("format") if isinstance(head, dict) else None
    factory = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if factory is not None:
        return factory(head)
    if fmt == SCORECARD:
        scorer = {"active": ActiveScorecardScorer, "passive": PassiveScorecardScorer}.get(head.get("role"))
        if scorer is None or (role is not None and head.get("role") != role):
            raise InputError(f"{path}: not the {role or 'active or passive'} part of a scorecard")
        return scorer(head)
    model = model_io.load(path, role)
    return ActiveScorer(model) if model["role"] == "active" else PassiveScorer(model)


def role_of(scorer: Any) -> str:
    """``"passive"`` for a passive party's part of a model (it answers with bits), else ``"active"``."""
    return "passive" if isinstance(scorer, PASSIVE) else "active"

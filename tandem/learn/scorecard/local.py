"""``tandem scorecard``: the label holder and the passive party as node processes on loopback, mutual TLS.

Each node reads only its own file; the label holder's node initiates. The pooled reference
(``reference.pooled_scorecard``) is computed outside the nodes, for evaluation only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tandem.devcluster import OnEvent, no_events
from tandem.errors import InputError
from tandem.learn.local import passive_parties, run_local
from tandem.learn.options import TrainingOptions


def scorecard_local(
    files: dict[str, Path],
    id_column: str,
    label_party: str,
    label_column: str,
    training: TrainingOptions,
    options_json: str,
    workdir: Path,
    timeout_s: float = 300.0,
    on_event: OnEvent = no_events,
    sep: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Run both nodes; return each node's result event (``node`` -> dict). ``sep``, ``warn``: as
    ``tandem.learn.local.run_local``."""
    passive = passive_parties(files, label_party)
    if len(passive) != 1:
        raise InputError(f"the scorecard takes the label holder and one other party, got {len(files)} parties")
    job = ["--scorecard", passive[0], "--scorecard-options", options_json, *training.cli_args()]
    procs = run_local(files, id_column, label_party, label_column, job, workdir, timeout_s, on_event, sep, warn)
    return {name: proc.result() for name, proc in procs.items()}

"""``tandem scorecard``: the label holder and the passive party as node processes on loopback, mutual TLS.

Each node reads only its own file; the label holder's node initiates. The pooled reference
(``reference.pooled_scorecard``) is computed outside the nodes, for evaluation only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tandem.devcluster import OnEvent, no_events, node_configs, run_pair
from tandem.errors import InputError
from tandem.learn.options import TrainingOptions
from tandem.learn.party_file import read_party_file


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
    """Run both nodes; return each node's result event (``node`` -> dict). ``sep``: the files' delimiter
    (``None``: each file's is sniffed); ``warn`` hears of shifted rows left out."""
    if label_party not in files:
        raise InputError(f"--label names party '{label_party}', which has no --party file")
    passive = [p for p in files if p != label_party]
    if len(passive) != 1:
        raise InputError(f"the scorecard takes the label holder and one other party, got {len(files)} parties")
    for name, path in files.items():  # a bad file fails here, in a second, not in a node after its start-up
        read_party_file(path, id_column, label_column if name == label_party else None, sep, warn)
    configs = node_configs(workdir / "nodes", {p: f"{p}.duckdb" for p in files}, {p: "bank" for p in files}, timeout_s)
    (peer,) = passive
    seps = ["--sep", sep] if sep else []
    servers = {peer: ["--once", "--data", str(Path(files[peer]).resolve()), "--id", id_column, *seps]}
    run = ["--scorecard", peer, "--scorecard-options", options_json, "--data", str(Path(files[label_party]).resolve())]
    run += ["--id", id_column, "--label", label_column, *seps, *training.cli_args()]
    procs = run_pair(configs, label_party, run, servers, timeout_s, on_event)
    return {name: proc.result() for name, proc in procs.items()}

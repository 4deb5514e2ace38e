"""``tandem train``: every party as its own node process on loopback with mutual TLS.

The label holder's node initiates; the other party's node serves one session. Each node
reads only its own file. The pooled baselines (``auc_plaintext``, ``auc_xgboost``) are
computed here, outside the nodes, for evaluation only — like the world's ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tandem.devcluster import OnEvent, no_events, node_configs, run_pair
from tandem.errors import InputError
from tandem.learn.options import TrainingOptions
from tandem.learn.party_file import read_party_file
from tandem.learn.result import TrainingResult


def train_local(
    files: dict[str, Path],
    id_column: str,
    label_party: str,
    label_column: str,
    options: TrainingOptions,
    workdir: Path,
    timeout_s: float = 120.0,
    on_event: OnEvent = no_events,
    sep: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, TrainingResult]:
    """Run the nodes; return each node's result. A rerun in the same ``workdir`` after an interruption
    resumes from the last completed tree. ``sep``: the files' delimiter (``None``: each file's is
    sniffed); ``warn`` hears of shifted rows left out (``tandem.learn.party_file.read_party_file``)."""
    if label_party not in files:
        raise InputError(f"--label names party '{label_party}', which has no --party file")
    passive = [p for p in files if p != label_party]
    if not passive:
        raise InputError("training needs at least one party besides the label holder")
    for name, path in files.items():  # a bad file fails here, in a second, not in a node after its start-up
        read_party_file(path, id_column, label_column if name == label_party else None, sep, warn)
    for party, f in files.items():
        if not Path(f).is_file():
            raise InputError(f"{f}: file does not exist (party {party})")
    configs = node_configs(workdir / "nodes", {p: f"{p}.duckdb" for p in files}, {p: "bank" for p in files}, timeout_s)
    seps = ["--sep", sep] if sep else []
    servers = {p: ["--once", "--data", str(Path(files[p]).resolve()), "--id", id_column, *seps] for p in passive}
    run = [
        "--train",
        ",".join(passive),
        "--data",
        str(Path(files[label_party]).resolve()),
        "--id",
        id_column,
        "--label",
        label_column,
        *seps,
    ]
    run += options.cli_args()
    procs = run_pair(configs, label_party, run, servers, timeout_s, on_event)
    return {name: TrainingResult.from_json(proc.result()) for name, proc in procs.items()}

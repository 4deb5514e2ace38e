"""``tandem train``: every party as its own node process on loopback with mutual TLS.

The label holder's node initiates; the other party's node serves one session. Each node
reads only its own file. The pooled baselines (``auc_plaintext``, ``auc_xgboost``) are
computed here, outside the nodes, for evaluation only — like the world's ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tandem.devcluster import NodeProcess, OnEvent, no_events, node_configs, run_pair
from tandem.errors import InputError
from tandem.learn.options import TrainingOptions
from tandem.learn.party_file import read_party_file
from tandem.learn.result import TrainingResult


def passive_parties(files: dict[str, Path], label_party: str) -> list[str]:
    """The parties besides the label holder (``InputError`` if the label names a party without a file)."""
    if label_party not in files:
        raise InputError(f"--label names party '{label_party}', which has no --party file")
    return [p for p in files if p != label_party]


def run_local(
    files: dict[str, Path],
    id_column: str,
    label_party: str,
    label_column: str,
    job_args: list[str],
    workdir: Path,
    timeout_s: float,
    on_event: OnEvent,
    sep: str | None,
    warn: Callable[[str], None] | None,
) -> dict[str, NodeProcess]:
    """Read every party's file here first (a bad file fails in a second, not in a node after its start-up),
    then run the label holder's node with ``job_args`` (its job's flags) while each other party's node
    serves one session; return every node's finished process. ``sep``: the files' delimiter (``None``:
    each file's is sniffed); ``warn`` hears of shifted rows left out."""
    for name, path in files.items():
        read_party_file(path, id_column, label_column if name == label_party else None, sep, warn)
    configs = node_configs(workdir / "nodes", {p: f"{p}.duckdb" for p in files}, {p: "bank" for p in files}, timeout_s)
    seps = ["--sep", sep] if sep else []
    data = {p: ["--data", str(Path(f).resolve()), "--id", id_column, *seps] for p, f in files.items()}
    servers = {p: ["--once", *data[p]] for p in files if p != label_party}
    run = [*job_args, *data[label_party], "--label", label_column]
    return run_pair(configs, label_party, run, servers, timeout_s, on_event)


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
    resumes from the last completed tree. ``sep``, ``warn``: as ``run_local``."""
    passive = passive_parties(files, label_party)
    if not passive:
        raise InputError("training needs at least one party besides the label holder")
    job = ["--train", ",".join(passive), *options.cli_args()]
    procs = run_local(files, id_column, label_party, label_column, job, workdir, timeout_s, on_event, sep, warn)
    return {name: TrainingResult.from_json(proc.result()) for name, proc in procs.items()}

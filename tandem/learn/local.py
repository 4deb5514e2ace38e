"""``tandem train``: every party as its own node process on loopback with mutual TLS.

The label holder's node initiates; the other party's node serves one session. Each node
reads only its own file. The pooled baselines (``auc_plaintext``, ``auc_xgboost``) are
computed here, outside the nodes, for evaluation only — like the world's ceiling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tandem.errors import InputError, TandemError
from tandem.learn.options import TrainingOptions
from tandem.learn.result import TrainingResult
from tandem.link.local import NodeProcess, node_configs
from tandem.link.local import failure as _failure


def train_local(files: dict[str, Path], id_column: str, label_party: str, label_column: str,
                options: TrainingOptions,
                workdir: Path, timeout_s: float = 120.0,
                on_event: Callable[[str, dict], None] = lambda n, e: None) -> dict[str, TrainingResult]:
    """Run the nodes; return each node's result event. A rerun in the same ``workdir`` after an interruption
    resumes from the last completed tree."""
    if label_party not in files:
        raise InputError(f"--label names party '{label_party}', which has no --party file")
    passive = [p for p in files if p != label_party]
    if not passive:
        raise InputError("training needs at least one party besides the label holder")
    for party, f in files.items():
        if not Path(f).is_file():
            raise InputError(f"{f}: file does not exist (party {party})")
    configs = node_configs(workdir / "nodes", {p: f"{p}.duckdb" for p in files}, {p: "bank" for p in files},
                           timeout_s)
    servers = {p: NodeProcess(p, ["--config", str(configs[p]), "--once", "--data", str(Path(files[p]).resolve()),
                                  "--id", id_column], on_event) for p in passive}
    try:
        for p, server in servers.items():
            if not server.ready.wait(60) or server.proc.poll() is not None:
                raise TandemError(f"{p} node did not start: {server.error()}")
        run = ["--config", str(configs[label_party]), "--train", ",".join(passive),
               "--data", str(Path(files[label_party]).resolve()), "--id", id_column, "--label", label_column]
        run += options.cli_args()
        active = NodeProcess(label_party, run, on_event)
        if active.wait(timeout=24 * 3600) != 0:
            first = next((p for p, s in servers.items() if s.proc.poll() not in (None, 0)), passive[0])
            raise TandemError(_failure(label_party, active, first, servers[first]))
        for p, server in servers.items():
            if server.wait(timeout=timeout_s + 30) != 0:
                raise TandemError(f"{p} node: {server.error()}")
        nodes = {label_party: active, **servers}
        return {p: TrainingResult.from_json(node.result_event()) for p, node in nodes.items()}
    finally:
        for server in servers.values():
            if server.proc.poll() is None:
                server.proc.kill()

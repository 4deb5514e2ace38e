"""``tandem train``: every party as its own node process on loopback with mutual TLS.

The label holder's node initiates; the other party's node serves one session. Each node
reads only its own file. The pooled baselines (``auc_plaintext``, ``auc_xgboost``) are
computed here, outside the nodes, for evaluation only — like the world's ceiling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tandem.errors import InputError, TandemError
from tandem.link.local import NodeProcess, node_configs
from tandem.link.local import failure as _failure


def train_local(files: dict[str, Path], id_column: str, label_party: str, label_column: str, args: dict,
                workdir: Path, timeout_s: float = 120.0,
                on_event: Callable[[str, dict], None] = lambda n, e: None) -> dict[str, dict]:
    """Run the nodes; return each node's result event. ``args``: seed, test_fraction, n_trees, ..."""
    if label_party not in files:
        raise InputError(f"--label names party '{label_party}', which has no --party file")
    passive = [p for p in files if p != label_party]
    if len(passive) != 1:
        raise InputError(f"training needs exactly one party besides the label holder, got {len(passive)}")
    other = passive[0]
    for party, f in files.items():
        if not Path(f).is_file():
            raise InputError(f"{f}: file does not exist (party {party})")
    configs = node_configs(workdir / "nodes", {p: f"{p}.duckdb" for p in files}, {p: "bank" for p in files},
                           timeout_s)
    server = NodeProcess(other, ["--config", str(configs[other]), "--once", "--data", str(Path(files[other]).resolve()),
                                 "--id", id_column], on_event)
    try:
        if not server.ready.wait(60) or server.proc.poll() is not None:
            raise TandemError(f"{other} node did not start: {server.error()}")
        run = ["--config", str(configs[label_party]), "--train", other, "--data", str(Path(files[label_party]).resolve()),
               "--id", id_column, "--label", label_column]
        for key, value in args.items():
            flag = f"--{key.replace('_', '-')}"
            run += [flag] if value is True else [flag, str(value)]
        active = NodeProcess(label_party, run, on_event)
        if active.wait(timeout=24 * 3600) != 0:
            raise TandemError(_failure(label_party, active, other, server))
        if server.wait(timeout=timeout_s + 30) != 0:
            raise TandemError(f"{other} node: {server.error()}")
        return {label_party: active.result(), other: server.result()}
    finally:
        if server.proc.poll() is None:
            server.proc.kill()

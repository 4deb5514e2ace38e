"""``tandem link --world DIR``: a bank node and a marketplace node as separate processes on loopback.

Each node gets a TOML config and a development certificate in ``DIR/nodes`` (``tandem.devcluster``);
the marketplace node serves one session, the bank node initiates it; both write their link tables.
"""

from __future__ import annotations

from pathlib import Path

from tandem.devcluster import OnEvent, no_events, run_pair, write_configs
from tandem.link.result import LinkResult


def link_world(
    world: Path,
    *,
    entities: list[str],
    count_only: bool,
    timeout_s: float = 60.0,
    incremental: bool = False,
    backend: str | None = None,
    on_event: OnEvent = no_events,
) -> dict[str, LinkResult]:
    """Run both nodes (each with X25519 ``backend``, ``None``: its config's); return each node's result.
    Raise ``TandemError`` with the failing node's message."""
    configs = write_configs(world, timeout_s)
    args = ["--link", "market", "--entities", ",".join(entities)]
    args += ["--count-only"] if count_only else []
    args += ["--incremental"] if incremental else []
    both = ["--backend", backend] if backend is not None else []
    procs = run_pair(configs, "bank", args + both, {"market": ["--once", *both]}, timeout_s, on_event)
    return {name: LinkResult.from_json(proc.result()) for name, proc in procs.items()}

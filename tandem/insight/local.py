"""``tandem insight run --world DIR``: the bank and marketplace nodes as separate processes on loopback.

Like ``tandem link --world``: the node configs and development certificates in ``DIR/nodes``;
one node serves a session per query, the other (the initiator, the bank by default) asks them
in turn. Each node computes its fields from its own store and charges its own budget ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tandem.atomic import write_atomically
from tandem.errors import InputError, TandemError
from tandem.insight.budget import InsightPolicy
from tandem.insight.job import check_query
from tandem.insight.query import Query, save_queries
from tandem.insight.result import InsightResult
from tandem.link.local import NODES, NodeProcess, failure, write_configs


def insight_world(world: Path, queries: list[Query], *, initiator: str = "bank", policy: InsightPolicy | None = None,
                  timeout_s: float = 60.0,
                  on_event: Callable[[str, dict], None] = lambda n, e: None) -> list[InsightResult]:
    """Run ``queries`` between the world's two nodes; return the initiator's results, in order. ``policy``
    becomes both nodes' ``[insight]`` section (default: the built-in policy)."""
    if initiator not in NODES:
        raise InputError(f"--initiator must be one of {', '.join(NODES)}, got '{initiator}'")
    if not queries:
        raise InputError("no insight query given (--query FILE or --group-by with --measure)")
    for query in queries:           # the nodes check the same; failing here saves starting them
        check_query(query, policy or InsightPolicy())
    configs = write_configs(world, timeout_s)
    if policy is not None:
        section = (f'\n[insight]\nbudget = {policy.budget!r}\nrefresh = "{policy.refresh}"\n'
                   f"max_epsilon = {policy.max_epsilon!r}\nmin_group_size = {policy.min_group_size}\n")
        for path in configs.values():
            path.write_text(path.read_text() + section)
    query_file = write_atomically(world / "nodes" / "insight-queries.json", save_queries(queries))
    responder = next(n for n in NODES if n != initiator)
    server = NodeProcess(responder, ["--config", str(configs[responder]), "--sessions", str(len(queries))], on_event)
    try:
        if not server.ready.wait(60) or server.proc.poll() is not None:
            raise TandemError(f"{responder} node did not start: {server.error()}")
        client = NodeProcess(initiator, ["--config", str(configs[initiator]), "--insight", responder,
                                         "--query", str(query_file)], on_event)
        if client.wait(timeout=24 * 3600) != 0:
            raise TandemError(failure(initiator, client, responder, server))
        if server.wait(timeout=timeout_s + 30) != 0:
            raise TandemError(f"{responder} node: {server.error()}")
        return [InsightResult.from_event(e) for e in client.events if e.get("event") == "result"]
    finally:
        if server.proc.poll() is None:
            server.proc.kill()

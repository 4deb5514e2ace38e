"""``tandem insight run --world DIR``: the bank and marketplace nodes as separate processes on loopback.

Like ``tandem link --world``: the node configs and development certificates in ``DIR/nodes``;
one node serves a session per query, the other (the initiator, the bank by default) asks them
in turn. Each node computes its fields from its own store and charges its own budget ledger.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tandem.atomic import write_atomically
from tandem.devcluster import OnEvent, no_events, run_pair, world_as_of, write_configs
from tandem.errors import InputError
from tandem.insight.budget import InsightPolicy
from tandem.insight.job import check_query
from tandem.insight.query import Query, save_queries
from tandem.insight.result import InsightResult
from tandem.parties import PARTIES, other


def insight_world(
    world: Path,
    queries: list[Query],
    *,
    initiator: str = "bank",
    policy: InsightPolicy | None = None,
    timeout_s: float = 60.0,
    on_event: OnEvent = no_events,
) -> list[InsightResult]:
    """Run ``queries`` between the world's two nodes; return the initiator's results, in order. ``policy``
    becomes both nodes' ``[insight]`` section (default: the built-in policy)."""
    if initiator not in PARTIES:
        raise InputError(f"--initiator must be one of {', '.join(PARTIES)}, got '{initiator}'")
    if not queries:
        raise InputError("no insight query given (--query FILE or --group-by with --measure)")
    day = world_as_of(world) or date.today()
    queries = [q.at(day) for q in queries]
    for query in queries:  # the nodes check the same; failing here saves starting them
        check_query(query, policy or InsightPolicy())
    configs = write_configs(world, timeout_s)
    if policy is not None:
        section = (
            f'\n[insight]\nbudget = {policy.budget!r}\nrefresh = "{policy.refresh}"\n'
            f"max_epsilon = {policy.max_epsilon!r}\nmin_group_size = {policy.min_group_size}\n"
        )
        for path in configs.values():
            path.write_text(path.read_text() + section)
    query_file = write_atomically(world / "nodes" / "insight-queries.json", save_queries(queries))
    responder = other(initiator)
    procs = run_pair(
        configs,
        initiator,
        ["--insight", responder, "--query", str(query_file)],
        {responder: ["--sessions", str(len(queries))]},
        timeout_s,
        on_event,
    )
    return [InsightResult.from_event(e) for e in procs[initiator].results()]

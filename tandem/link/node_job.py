"""A node's side of one link session: ``initiate`` (the asking node) and ``respond`` (the asked one),
the same shape as the training and insight jobs.

Each side loads its consented records from its own store, runs every entity's keys over the
session (``link.job.run_entity``), writes its link tables (unless count-only; versioned, see
``link.versions``) and keeps the incremental state per peer, entity and key under its state
folder. The responder first checks the request against its ``[link.accept]`` policy.

Link-mode runs keep a checkpoint per peer, entity and key (``link.checkpoint``) as chunks complete,
so that a rerun after a killed node or a dropped network continues from the last chunk both sides
hold; the checkpoints are removed once the link tables (and any incremental state) are written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tandem.link import versions
from tandem.link.accept import AcceptPolicy, mode_of
from tandem.link.blinder import EngineBlinder
from tandem.link.checkpoint import KeyCheckpoint, checkpoint_dir
from tandem.link.job import PROTOCOL, EntityOutcome, Progress, parse_keys, run_entity
from tandem.link.memory import load_memory, memory_path, save_memory
from tandem.link.records import EntityRecords, load_records
from tandem.link.result import EntityLink, KeyCounts, LinkResult
from tandem.parties import ENTITIES, EntitySource
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.psi import DEFAULT_CHUNK, MAX_RECORDS, KeyMemory
from tandem.protocols.wire import LinkAccept, LinkRequest
from tandem.store import open_store
from tandem.store.schema import Column, TableSpec
from tandem.transport.session import Session

LINK_TABLE = {
    e: TableSpec(
        f"link_{e}",
        (
            Column("link_id", "VARCHAR", False),
            Column("local_id", "BIGINT", False),
            Column("matched_on", "VARCHAR", False),
        ),
    )
    for e in ENTITIES
}


@dataclass
class LinkParty:
    """What one node links with: its name, store, where each entity's records are, its key priority
    per entity, its state folder, the blinder (worker pool), a probe of the workers' peak memory (MiB),
    its ``[link.accept]`` policy, the most records a peer may bring to one key's run
    (``[limits] max_records``), the points per message (``[link] chunk``) and where one-line
    notices go (a checkpoint that could not be used)."""

    name: str
    store: str
    sources: dict[str, EntitySource]
    keys: dict[str, list[str]]
    state_dir: Path
    blinder: EngineBlinder
    worker_rss_mib: Callable[[], list[int]]
    accept: AcceptPolicy = field(default_factory=AcceptPolicy)
    max_records: int = MAX_RECORDS
    chunk: int = DEFAULT_CHUNK
    notice: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))


def initiate(session: Session, request: LinkRequest, me: LinkParty, progress: Progress) -> LinkResult:
    """Ask the peer of ``session`` for ``request``; return this side's result."""
    session.send(request)  # the peer loads its records while we load ours
    records, read_s = _load(me, request.entities, parse_keys(request))
    reply = session.recv()
    if not isinstance(reply, LinkAccept):
        raise RemoteProtocolError(f"peer {session.peer} answered {reply.name} to a link request")
    return _run(session, request, records, me, True, progress, read_s)


def respond(session: Session, request: LinkRequest, me: LinkParty, progress: Progress) -> LinkResult:
    """Check the peer's ``request`` against what this node holds, accept it and run it; return this side's result."""
    peer = session.peer
    if request.protocol != PROTOCOL:
        raise RemoteProtocolError(f"peer {peer} speaks {request.protocol}, this node speaks {PROTOCOL}")
    if request.count_only and request.incremental:
        raise RemoteProtocolError(f"peer {peer} asked for an incremental count-only run")
    keys = parse_keys(request)
    for entity, ks in keys.items():
        if entity not in ENTITIES:
            raise RemoteProtocolError(f"peer {peer} asked to link unknown entity '{entity}'")
        unknown = [k for k in ks if k not in me.sources[entity].keys]
        if unknown:
            raise RemoteProtocolError(
                f"peer {peer} asked to link {entity} on {unknown[0]}, which this node has no column for"
            )
    me.accept.admit(peer, mode_of(request.count_only, request.incremental), me.state_dir)
    records, read_s = _load(me, request.entities, keys)
    session.send(LinkAccept(session.id))
    return _run(session, request, records, me, False, progress, read_s)


def _load(me: LinkParty, entities: list[str], keys: dict[str, list[str]]) -> tuple[dict[str, EntityRecords], float]:
    """Each entity's records, and the seconds reading and normalising them took."""
    began = time.perf_counter()
    store = open_store(me.store, read_only="://" not in me.store)
    try:
        return {e: load_records(store, me.sources[e], keys[e]) for e in entities}, time.perf_counter() - began
    finally:
        store.close()


def _run(
    session: Session,
    request: LinkRequest,
    records: dict[str, EntityRecords],
    me: LinkParty,
    initiator: bool,
    progress: Progress,
    read_s: float,
) -> LinkResult:
    started = time.perf_counter()
    keys = parse_keys(request)

    def memories(entity: str) -> dict[str, KeyMemory | None] | None:
        if not request.incremental:
            return None
        return {k: load_memory(memory_path(me.state_dir, session.peer, entity, k)) for k in keys[entity]}

    opened: list[KeyCheckpoint] = []

    def checkpoints(entity: str) -> Callable[[str], KeyCheckpoint]:
        def open_one(key: str) -> KeyCheckpoint:
            opened.append(KeyCheckpoint(checkpoint_dir(me.state_dir, session.peer, entity, key), me.notice))
            return opened[-1]

        return open_one

    outcomes = [
        run_entity(
            session,
            records[entity],
            entity,
            keys[entity],
            initiator=initiator,
            count_only=request.count_only,
            blinder=me.blinder,
            progress=progress,
            memories=memories(entity),
            max_records=me.max_records,
            checkpoints=checkpoints(entity),
            chunk=me.chunk,
        )
        for entity in request.entities
    ]
    linked_at = time.perf_counter()
    if not request.count_only:
        _write(me, outcomes, session.peer, versions.version_of(session.id))
    for o in outcomes:
        for key, memory in o.memories.items():
            save_memory(memory_path(me.state_dir, session.peer, o.entity, key), memory)
    for c in opened:  # the tables and any kept state are written: the checkpoints have served
        c.drop()
    finished = time.perf_counter()
    return LinkResult(
        node=me.name,
        peer=session.peer,
        session=session.id,
        count_only=request.count_only,
        incremental=request.incremental,
        seconds=round(finished - started, 2),
        peak_rss_mib={"node": _peak_rss_mib(), "workers": me.worker_rss_mib()},
        backend=me.blinder.backend,
        entities={
            o.entity: EntityLink(
                o.consented, None if request.count_only else o.linked, {k: KeyCounts(**v) for k, v in o.per_key.items()}
            )
            for o in outcomes
        },
        phases={
            "read": round(read_s, 3),
            "link": round(linked_at - started, 3),
            "write": round(finished - linked_at, 3),
        },
    )


def _write(me: LinkParty, outcomes: list[EntityOutcome], peer: str, version: str) -> None:
    store = open_store(me.store, create=True)
    try:
        for o in outcomes:
            if o.rows is not None:
                versions.publish(store, o.entity, o.rows, LINK_TABLE[o.entity], peer, version)
    finally:
        store.close()


def _peak_rss_mib() -> int:
    """Peak resident memory of this node process, MiB."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

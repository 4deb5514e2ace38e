"""The multi-key link job, run identically by both sides over a ``Session``.

For each entity, keys run in the agreed priority (e.g. phone, then e-mail). A record
linked on a higher-priority key takes no part in later keys, on either side; values that
several records share within one side are left out of that key. Both rules depend only
on a side's own data, so both sides apply them identically and every link is one-to-one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tandem import protocol_versions as versions
from tandem.crypto.psi_group import new_secret
from tandem.link.records import EntityRecords
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.psi import DEFAULT_CHUNK, MAX_RECORDS, Blinder, KeyMemory, KeyRun, State
from tandem.protocols.psi_resume import Checkpoint
from tandem.protocols.wire import LinkRequest
from tandem.transport.session import Session

PROTOCOL = versions.LINK
Progress = Callable[[str, float], None]  # (what, fraction of this key done)


@dataclass
class EntityOutcome:
    """One entity's result on this side: the link rows (unless count-only) and counts per key."""

    entity: str
    consented: int
    per_key: dict[str, dict] = field(default_factory=dict)
    rows: pa.Table | None = None
    memories: dict[str, KeyMemory] = field(default_factory=dict)

    @property
    def linked(self) -> int:
        return sum(k["matched"] for k in self.per_key.values())


def parse_keys(request: LinkRequest) -> dict[str, list[str]]:
    """``["customers:phone", "customers:email", "sellers:inn"]`` -> ``{"customers": ["phone", "email"], ...}``."""
    out: dict[str, list[str]] = {e: [] for e in request.entities}
    for item in request.keys:
        entity, _, key = item.partition(":")
        if entity not in out or not key:
            raise RemoteProtocolError(f"malformed LinkRequest: key '{item}' names no requested entity")
        out[entity].append(key)
    return out


def run_entity(
    session: Session,
    records: EntityRecords,
    entity: str,
    keys: list[str],
    *,
    initiator: bool,
    count_only: bool,
    blinder: Blinder,
    progress: Progress | None = None,
    memories: dict[str, KeyMemory | None] | None = None,
    max_records: int = MAX_RECORDS,
    checkpoints: Callable[[str], Checkpoint] | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> EntityOutcome:
    """Link one entity over all its keys, in order.

    ``memories`` (incremental mode) maps each key to the state kept from the last run with
    this peer (or ``None``); the new state is left in ``outcome.memories`` for the caller to store.
    ``max_records``: the most records the peer may bring to one key's run (``[limits] max_records``).
    ``checkpoints`` gives each key's checkpoint (a rerun of an interrupted run resumes from it);
    ``chunk``: points per message (``[link] chunk``).
    """
    outcome = EntityOutcome(entity, records.total)
    link_ids: list[str] = []
    local_ids: list[np.ndarray] = []  # per key, the records it linked (int64)
    matched_on: list[str] = []
    for key in keys:
        linked = np.concatenate(local_ids) if local_ids else np.zeros(0, np.int64)
        values, ids = records.candidates(key, linked)
        started = time.perf_counter()
        run = KeyRun(
            session.id,
            entity,
            key,
            values,
            initiator=initiator,
            count_only=count_only,
            secret=new_secret(),
            blinder=blinder,
            memory=(memories or {}).get(key),
            keep_memory=memories is not None,
            max_records=max_records,
            checkpoint=checkpoints(key) if checkpoints and not count_only else None,
            chunk=chunk,
        )

        def report(f: float, k: str = key) -> None:
            if progress:
                progress(f"{entity}/{k}", f)

        drive(run, session, report)
        result = run.final
        if memories is not None:
            outcome.memories[key] = run.kept
        rep = records.reports[key]
        outcome.per_key[key] = {
            "candidates": len(values),
            "matched": result.intersection,
            "invalid": rep.invalid,
            "duplicate_records": rep.duplicate_records,
            "incremental": run.incremental,
            "blinded_sent": run.to_send,
            "multiplied": run.multiplied,
            "resumed": run.resumed,
            "seconds": round(time.perf_counter() - started, 2),
            "phases": {name: round(v, 3) for name, v in run.phases.items()},
        }
        del run  # its point arrays (32-40 bytes per record and side) are not needed any more
        if not count_only:
            positions, new_ids = result.links
            matched = ids[positions]
            link_ids += new_ids
            local_ids.append(matched)
            matched_on += [key] * len(matched)
    if not count_only:
        outcome.rows = pa.table(
            {
                "link_id": pa.array(link_ids, pa.string()),
                "local_id": pa.array(np.concatenate(local_ids) if local_ids else np.array([], np.int64), pa.int64()),
                "matched_on": pa.array(matched_on, pa.string()),
            }
        )
    return outcome


def drive(run: KeyRun, session: Session, progress: Callable[[float], None] | None = None) -> None:
    """Move one ``KeyRun`` to completion: our own chunks go out while the peer's are answered.

    Between two of our chunks every frame waiting in the inbox is answered, so the inbox holds only
    what arrives during one chunk's blinding (not a growing share of the peer's set): a bounded
    inbox (``[limits] inbox_bytes``) then never holds a legitimate peer back for long."""
    session.send_all(run.start())
    while run.state is not State.DONE:
        if run.has_work():
            session.send_all(run.poll())
            while run.state is not State.DONE and (msg := session.poll()) is not None:
                session.send_all(run.receive(msg))
        else:
            session.send_all(run.receive(session.recv()))
        if progress and run.state is State.EXCHANGING:
            progress(run.progress())

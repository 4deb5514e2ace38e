"""Linking a buyer (or seller) at checkout who reached the marketplace's store after the last link run.

Both decision services hold, per entity, the incremental state of the last link run with their peer
(``KeyMemory``, loaded when the service pins a link version: at start and on ``/v1/admin/reload``), their
own consented records with normalised identifiers, and the features of their records not yet linked
(rebuilt with the feature tables). The marketplace's gateway asks the bank's service one key at a time,
in the agreed priority (``tandem.link.one``): ``POST /v1/link/new`` with ``a*H(x)``; the bank answers
``b*a*H(x)`` and whether it holds the record, and both add the row, under the link id the next
incremental run gives it, to the pinned link version in memory and to a journal in the node's state
folder (``checkout-links.jsonl``; applied again when the tables are rebuilt, until a newer link version
is pinned). The store's link tables are written by link runs only: the marketplace's gateway holds its
store read-only, and no store commit sits on the request path (the next incremental run writes the row).

The bank's side is limited to ``peer_new_links_per_minute`` lookups (``[decide]``; 429 with
``Retry-After``), at most ``MAX_POINTS`` records per lookup, and refuses malformed or low-order points.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Depends, FastAPI, HTTPException
from pydantic import Field

from tandem.atomic import append_durably, read_json_lines
from tandem.crypto.psi_group import InvalidPoint
from tandem.decide.schemas import RequestId, Strict
from tandem.decide.state import POLICY_COLUMNS, FeatureTable, ServiceState
from tandem.features.rows import SOURCES
from tandem.link.memory import load_memory, memory_path
from tandem.link.one import MAX_POINTS, Answerer, Asker, decode_points, encode_points
from tandem.link.records import EntityRecords, load_records

PATH = "/v1/link/new"
JOURNAL = "checkout-links.jsonl"
WHAT = {"customers": "user", "sellers": "seller"}


class NewLinkRequest(Strict):
    """Marketplace node -> bank node (mutual TLS): new records' blinded values on one key."""

    request_id: str = RequestId
    entity: str = Field(pattern=r"^(customers|sellers)$")
    key: str = Field(max_length=32)
    state_id: str = Field(max_length=64, description="The kept incremental state both sides must hold.")
    points: list[str] = Field(min_length=1, max_length=MAX_POINTS, description="a*H(x), 64 hex digits each.")


class Bucket:
    """``per_minute`` tokens a minute, holding a minute's worth (0: no limit). ``take(n)`` -> ``None`` or
    the seconds to wait."""

    def __init__(self, per_minute: float):
        self.rate, self.tokens, self.at = per_minute / 60, per_minute, time.monotonic()
        self.capacity, self.refused = per_minute, 0

    def take(self, n: int, now: float | None = None) -> float | None:
        if self.capacity <= 0:
            return None
        now = time.monotonic() if now is None else now
        self.tokens, self.at = min(self.capacity, self.tokens + (now - self.at) * self.rate), now
        if self.tokens < n:
            self.refused += 1
            return (n - self.tokens) / self.rate
        self.tokens -= n
        return None


@dataclass
class Kept:
    """One entity's state for linking at checkout: the record lookups of each key that has kept state,
    the consented records (``ids`` sorted), the features of records not linked (``pending``)."""

    version: str | None
    memories: dict
    records: EntityRecords
    order: np.ndarray
    pending: FeatureTable
    askers: dict[str, Asker] = field(default_factory=dict)
    answerers: dict[str, Answerer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sorted = self.records.ids[self.order]

    def position(self, local_id: int) -> int | None:
        """The index of ``local_id`` in ``records``, or ``None``."""
        i = int(np.searchsorted(self._sorted, local_id))
        return int(self.order[i]) if i < len(self._sorted) and self._sorted[i] == local_id else None


class NewLinks:
    """A decision service's side of linking at checkout (``role``: ``active`` answers, ``passive`` asks)."""

    def __init__(self, state: ServiceState, peer: str | None):
        self.state, self.peer = state, peer
        self.party = "bank" if state.role == "active" else "market"
        self.journal: Path = state.cfg.node.state_dir / JOURNAL
        self.bucket = Bucket(state.cfg.guard("peer_new_links_per_minute"))
        self.kept: dict[str, Kept] = {}
        self.counts = {"asked": 0, "linked": 0, "not_found": 0}
        self._lock = threading.Lock()
        for entity, table in list(state.tables.items()):
            self._on_table(entity, table)
        state.on_table.append(self._on_table)
        state.counters["new_links"] = self.stats

    def stats(self) -> dict:
        return {**self.counts, "per_minute": self.bucket.capacity, "refused": self.bucket.refused}

    # --- state, rebuilt with the feature tables ---------------------------------------------------

    def _on_table(self, entity: str, table: FeatureTable) -> None:
        """Rebuild ``entity``'s records and pending features beside the new ``table``, then put the rows
        linked at checkout into the pinned link version back into it."""
        if self.peer is None:
            return
        cfg, store = self.state.cfg, self.state.store
        keys = cfg.node.keys[entity]
        version = self.state.link_versions.get(entity)
        old = self.kept.get(entity)
        if old is not None and old.version == version:
            memories = old.memories
        else:
            memories = {k: load_memory(memory_path(cfg.node.state_dir, self.peer, entity, k)) for k in keys}
        records = load_records(store, cfg.node.sources[entity], keys)
        _link, features, key_column, _labels = SOURCES[(self.party, entity)]
        found = features(store, cfg.as_of)
        local = found.column(key_column).to_numpy()
        found = found.filter(pa.array(~np.isin(local, table.local_ids)))
        found = found.rename_columns(["local_id" if c == key_column else c for c in found.column_names])
        found = found.append_column("link_id", pc.cast(found.column("local_id"), pa.string()))
        scorer = self.state.model(entity)
        pending = FeatureTable(found, scorer.names, POLICY_COLUMNS[(self.state.role, entity)])
        kept = Kept(version, memories, records, np.argsort(records.ids, kind="stable"), pending)
        for key, memory in memories.items():
            if memory is None:
                continue
            if self.party == "market":
                kept.askers[key] = Asker(entity, key, memory)
            else:
                kept.answerers[key] = Answerer(entity, key, memory, records.ids, records.values[key])
        self.kept[entity] = kept
        for line in self._journal(entity, version):
            self._add(table, kept, line["link_id"], int(line["local_id"]))

    def _journal(self, entity: str, version: str | None) -> list[dict]:
        entries = read_json_lines(self.journal)  # skips a line cut short by a crash: its row was never answered
        return [e for e in entries if e.get("entity") == entity and e.get("version") == (version or "")]

    def _add(self, table: FeatureTable, kept: Kept, link_id: str, local_id: int) -> bool:
        row = kept.pending.row(str(local_id))
        if row is None or local_id in table.by_local:
            return False
        table.add(link_id, local_id, row)
        return True

    def record(self, entity: str, link_id: str, local_id: int, key: str) -> bool:
        """Link ``local_id`` as ``link_id`` (matched on ``key``): journal (fsynced) and the live table.
        ``False`` if the record has no features here or is linked already (under another id)."""
        with self._lock:
            table, kept = self.state.tables[entity], self.kept[entity]
            if table.by_local.get(local_id) == link_id:
                return True
            if kept.pending.row(str(local_id)) is None or local_id in table.by_local:
                return False
            line = {
                "entity": entity,
                "version": kept.version or "",
                "link_id": link_id,
                "local_id": local_id,
                "matched_on": key,
                "peer": self.peer,
                "at": round(time.time(), 3),
            }
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            append_durably(self.journal, (json.dumps(line) + "\n").encode())
            return self._add(table, kept, link_id, local_id)

    # --- the bank: answer a lookup -----------------------------------------------------------------

    def answer(self, body: NewLinkRequest) -> dict:
        """``{"doubles": [hex], "found": [bool]}`` for the peer's points (see ``tandem.link.one``)."""
        entity, key, peer = body.entity, body.key, self.peer
        if entity not in self.state.tables:
            raise HTTPException(404, f"this node serves no {entity} model")
        if key not in self.state.cfg.node.keys[entity]:
            keys = ", ".join(self.state.cfg.node.keys[entity])
            raise HTTPException(422, f"{entity} are linked on {keys} here, not on {key}")
        kept = self.kept.get(entity)
        answerer = kept.answerers.get(key) if kept else None
        if answerer is None:
            raise HTTPException(
                409,
                f"this node keeps no incremental link state with {peer} for {entity}/{key}: run an incremental "
                "link first (tandem link --incremental), then reload both decision services",
            )
        if body.state_id != answerer.memory.state_id:
            raise HTTPException(
                409, f"the kept link states of {entity}/{key} differ: reload both services after the same link run"
            )
        try:
            points = decode_points(body.points)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        wait = self.bucket.take(len(body.points))
        if wait is not None:
            if self.bucket.refused == 1 or self.bucket.refused % 100 == 0:
                print(f"decide: peer {peer} is over its new-link lookups per minute", file=sys.stderr, flush=True)
            raise HTTPException(
                429,
                f"over this peer's quota of {self.bucket.capacity:g} new-record lookups per minute",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        try:
            answers = answerer.answer(points)
        except InvalidPoint as exc:
            raise HTTPException(422, str(exc)) from None
        found = [owner is not None and self.record(entity, lid, owner, key) for _double, owner, lid in answers]
        self.counts["asked"] += len(found)
        self.counts["linked"] += sum(found)
        return {"doubles": [d.hex() for d, _o, _l in answers], "found": found}

    # --- the marketplace: ask ----------------------------------------------------------------------

    async def link(self, entity: str, local_id: int, request_id: str, bank) -> str:
        """The link id of ``local_id`` once the bank has been asked (``bank``: a ``BankClient``); raises
        ``HTTPException`` 404 with what to do when it cannot be linked."""
        what = f"{WHAT[entity]} {local_id}"
        kept = self.kept.get(entity)
        if kept is None or not kept.askers:
            raise HTTPException(
                404,
                f"{what} is not linked with the bank, and this node keeps no incremental link state to link "
                "new records at checkout: run an incremental link first (tandem link --incremental), then reload",
            )
        at = kept.position(local_id)
        if at is None or kept.pending.row(str(local_id)) is None:
            raise HTTPException(
                404,
                f"{what} is not in this node's store with consent to share as of the last feature refresh "
                "(records registered since are linked from the next refresh, [decide] refresh_s, or a reload)",
            )
        asks = [
            (key, str(value))
            for key in self.state.cfg.node.keys[entity]
            if key in kept.askers
            and (value := kept.records.values[key][at]) is not None
            and not kept.askers[key].was_in_last_run(str(value))
        ]
        if not asks:
            raise HTTPException(404, f"{what} took part in the last link run and is not a shared customer")
        for key, value in asks:  # in priority order; a record matched on one key is not sent on the next
            asker = kept.askers[key]
            payload = {
                "request_id": request_id,
                "entity": entity,
                "key": key,
                "state_id": asker.memory.state_id,
                "points": encode_points(asker.blinded([value])),
            }
            status, reply = await bank.post(PATH, payload)
            if status != 200:
                _pass_on(status, reply)
            try:
                answer = json.loads(reply)
                doubles = decode_points(answer["doubles"])
                link_id = asker.links(doubles, [bool(f) for f in answer["found"]])[0]
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                print(f"new link: the bank's answer is unusable ({exc})", file=sys.stderr, flush=True)
                raise HTTPException(502, "the bank's answer to a new-record lookup is unusable") from None
            if link_id is not None:
                if not await asyncio.to_thread(self.record, entity, link_id, local_id, key):
                    raise HTTPException(409, f"{what} was linked under another id meanwhile; try again")
                self.counts["linked"] += 1
                return link_id
        self.counts["not_found"] += 1
        keys = ", ".join(k for k, _v in asks)
        raise HTTPException(404, f"{what} is not a customer shared with the bank (looked up just now on {keys})")


def _pass_on(status: int, reply: bytes) -> None:
    try:
        detail = json.loads(reply).get("detail", "")
    except (ValueError, AttributeError):
        detail = "malformed answer"
    headers = {"Retry-After": "1"} if status == 429 else None
    raise HTTPException(status if status in (404, 409, 422, 429) else 502, f"bank: {detail}", headers=headers)


def attach_bank_route(app: FastAPI, links: NewLinks, who) -> None:
    """``POST /v1/link/new`` on the bank's mutual-TLS listener (the marketplace node only)."""

    @app.post(PATH)
    def new_link(body: NewLinkRequest, _who: str = Depends(who)) -> dict:
        """New records' blinded values on one key -> re-blinded, and whether this node holds each record."""
        return links.answer(body)

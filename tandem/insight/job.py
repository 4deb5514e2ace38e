"""The insight job over a ``Session``: the query handshake (checks, link tables, budget), then one role.

The initiator checks the query against its own policy and budget and sends it with the size and
digest of its link table; the responder checks the same, compares the link tables, charges its
budget and accepts; the initiator charges its own. Both charge before any figure is computed,
so a failed query never gives budget back. Then the party holding the group keys plays the
group holder, the other the measure holder (``tandem.protocols.insight``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from tandem.crypto.he import SecretHe
from tandem.errors import InputError
from tandem.insight.budget import InsightPolicy, Ledger
from tandem.insight.dp import noise_share, share_margin, slot_scales, threshold_margin
from tandem.insight.query import Query
from tandem.insight.records import PartyRecords, load_records
from tandem.insight.result import InsightResult
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.insight import PROTOCOL, Bounds, GroupHolder, MeasureHolder, Release
from tandem.protocols.wire import InsightAccept, InsightQuery
from tandem.transport.session import Session

NOISE_OFF_ENV = "TANDEM_INSIGHT_NOISE_OFF"  # "1" lets this node run queries without noise: tests only
Progress = Callable[[str, float], None]


@dataclass
class InsightParty:
    """What a node brings to a query: its party in the catalogue ("bank" or "market"), store, policy."""

    party: str
    store: str
    policy: InsightPolicy
    new_key: Callable[[], SecretHe] = SecretHe.generate

    def key_pair(self) -> SecretHe:
        """A fresh homomorphic key pair for one query this node holds the measures of (never kept, so no
        ciphertext of one query can be replayed in another; OU 2048 key generation takes 1.4-3 s here)."""
        return self.new_key()

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.store, self.policy)

    def check(self, query: Query) -> None:
        """This node's own rules for a query (the budget is checked separately, per peer)."""
        check_query(query, self.policy)
        if not query.noise and os.environ.get(NOISE_OFF_ENV) != "1":
            raise InputError(f"noise = false is for tests only ({NOISE_OFF_ENV}=1 on both nodes)")

    def role(self, query: Query) -> str:
        return "group holder" if self.party == query.group_party else "measure holder"


def check_query(query: Query, policy: InsightPolicy) -> None:
    """A node's per-query rules: a day to take the fields at, the most epsilon one query may spend, the
    smallest minimum group size."""
    if not query.as_of:
        raise InputError(f"'{query.name}' names no as_of day (the asking node sets it: [node] as_of)")
    if query.epsilon > policy.max_epsilon + 1e-9:
        raise InputError(
            f"'{query.name}' asks epsilon {query.epsilon:g}, more than the {policy.max_epsilon:g} "
            f"this node allows per query ([insight] max_epsilon)"
        )
    if query.min_group_size < policy.min_group_size:
        raise InputError(
            f"'{query.name}': min_group_size {query.min_group_size} is below this node's minimum "
            f"{policy.min_group_size} ([insight] min_group_size)"
        )


def initiate(session: Session, query: Query, me: InsightParty, progress: Progress | None = None) -> InsightResult:
    """Run ``query`` with the peer of ``session``, this side asking."""
    me.check(query)
    me.ledger.check(session.peer, query.epsilon)
    records = _records(me, query)
    query_id = secrets.token_hex(8)
    session.send(
        InsightQuery(session.id, PROTOCOL, query_id, query.to_json(), me.party, len(records.link_ids), records.digest)
    )
    reply = session.recv()
    if not isinstance(reply, InsightAccept) or reply.query_id != query_id:
        raise RemoteProtocolError(f"peer {session.peer} answered {reply.name} to an insight query")
    me.ledger.charge(session.peer, query_id, query.epsilon, me.role(query), query.to_json())
    return _run(session, query, query_id, records, me, progress)


def respond(
    session: Session, request: InsightQuery, me: InsightParty, progress: Progress | None = None
) -> InsightResult:
    """Answer the peer's query ``request`` (the first message of ``session``)."""
    peer = session.peer
    if request.protocol != PROTOCOL:
        raise RemoteProtocolError(f"peer {peer} speaks {request.protocol}, this node speaks {PROTOCOL}")
    try:
        query = Query.from_json(request.spec)
    except InputError as exc:
        raise RemoteProtocolError(f"peer {peer} sent a query this node cannot read: {exc}") from None
    if request.party == me.party or request.party not in (query.group_party, query.measure_party):
        raise InputError(f"peer {peer} asks as the {request.party}, and this node is the {me.party}")
    me.check(query)
    records = _records(me, query)
    if len(records.link_ids) != request.n_links or records.digest != request.links_digest:
        raise InputError(
            f"the link tables differ ({peer}: {request.n_links:,} link ids, this node: "
            f"{len(records.link_ids):,}, or the same number of other ids); run `tandem link` again"
        )
    me.ledger.charge(peer, request.query_id, query.epsilon, me.role(query), request.spec)
    session.send(InsightAccept(session.id, request.query_id))
    return _run(session, query, request.query_id, records, me, progress)


def _records(me: InsightParty, query: Query) -> PartyRecords:
    records = load_records(me.store, me.party, query)
    if not records.link_ids:
        raise InputError(f"{me.store}: no linked customers; run `tandem link` first")
    return records


def _run(
    session: Session, query: Query, query_id: str, records: PartyRecords, me: InsightParty, progress: Progress | None
) -> InsightResult:
    n_slots = len(query.slots)
    scales = slot_scales(query.epsilon, query.sensitivities()) if query.noise else [0.0] * n_slots
    margin = threshold_margin(scales[0])
    release = Release(query.min_group_size, margin)
    bounds = Bounds(query.slot_bounds(), [share_margin(b) for b in scales], list(query.slots))
    role: GroupHolder | MeasureHolder
    if me.party == query.group_party:
        if records.groups is None:
            raise LocalProtocolError("the group holder's records hold no groups")
        role = GroupHolder(
            session.id, records.groups, query.n_groups, scales, release, progress, noise=noise_share, bounds=bounds
        )
    else:
        if records.values is None:
            raise LocalProtocolError("the measure holder's records hold no values")
        role = MeasureHolder(
            session.id,
            records.values,
            query.n_groups,
            scales,
            release,
            me.key_pair(),
            progress=progress,
            noise=noise_share,
            bounds=bounds,
        )
    session.send_all(role.start())
    if isinstance(role, MeasureHolder):
        for msg in role.chunks():
            session.send(msg)
    while not role.done:
        msg = session.recv()
        try:
            out = role.receive(msg)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"peer {session.peer}: {exc}") from None
        session.send_all(out)
    return InsightResult(query, query_id, role.groups_, role.figures_, scales, margin)

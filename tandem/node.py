"""A party's long-running process: config, keys and certificates, store, audit log, services.

tandem node --config bank.toml                 serve: answer link and training requests from peers
tandem node --config bank.toml --link market   start a link run with peer ``market``, then exit
tandem node --config bank.toml --train market[,telco] --data bank.csv --id ID --label LABEL
                                               train with the passive parties named, then exit
tandem node --config bank.toml --insight market --query Q.toml   insight queries with ``market``, then exit
"""

from __future__ import annotations

import json
import secrets as pysecrets
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from tandem.crypto.backends import backend_note, choose_backend
from tandem.engine import LocalEngine
from tandem.errors import InputError, TandemError
from tandem.learn.options import DEFAULTS
from tandem.link import node_job as link_job
from tandem.link.blinder import EngineBlinder
from tandem.link.job import PROTOCOL
from tandem.link.result import LinkResult
from tandem.node_config import NodeConfig
from tandem.parties import ENTITIES
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.message import Message
from tandem.protocols.wire import (
    InsightQuery,
    LinkRequest,
    ScorecardAccept,
    ScorecardRequest,
    TrainAccept,
    TrainRequest,
)
from tandem.transport.grpc_node import GrpcChannel, Inboxes, NodeServer, PeerClient
from tandem.transport.session import Session, open_audit

if TYPE_CHECKING:  # training modules load only when a node trains (they pull in pandas and scipy)
    from tandem.insight.query import Query
    from tandem.learn.federated import PartyData

Events = Callable[[dict], None]
T = TypeVar("T")


class Node:
    """One party's node: serves peers, hands each session to its job (link, train, insight), writes
    results into its own store."""

    def __init__(self, config: NodeConfig, events: Events | None = None, train_data: PartyData | None = None):
        self.config = config
        # the X25519 that blinds PSI values here, chosen before anything starts (an unusable mb is one line)
        self.backend = choose_backend(config.link_backend, f"{config.path}: [link] backend")
        self.train_data = train_data
        self.events = events or (lambda e: None)
        self._has_events = events is not None
        self.audit = open_audit(config)
        limits = config.limits
        self.inboxes = Inboxes(self._on_new_session, limits.inbox_bytes)
        self.server = NodeServer(
            config.name,
            config.listen,
            config.tls,
            set(config.peers),
            self.inboxes,
            max_frame_bytes=limits.max_frame_bytes,
            wait_s=config.timeout_s,
            audit=self.audit,
            on_refuse=self._refused,
        )
        self.clients = {n: PeerClient(n, a, config.tls) for n, a in config.peers.items()}
        self.engine = LocalEngine(config.workers)
        self.blinder = EngineBlinder(self.engine, self.backend)
        self.finished = threading.Event()
        self.served = 0  # sessions answered so far
        self._insight = None  # this node's side of insight queries (keeps its key pair)
        self.failure: str | None = None
        self._lock = threading.Lock()  # one job at a time: the store has one writer
        self._pending: dict[str, str] = {}  # peer -> the session it opened that waits for ``_lock``
        self._pending_lock = threading.Lock()
        # the message that opens a session -> this node's side of it
        self._openers: dict[type[Message], Callable[[Session, Any], None]] = {
            LinkRequest: self._respond_link,
            TrainRequest: self._respond_train,
            ScorecardRequest: self._respond_scorecard,
            InsightQuery: self._respond_insight,
        }

    def start(self) -> None:
        for line in self.config.tls.expiry_warnings():
            self._notice(line)
        self.server.start()
        self.engine.warm_up()
        ready = {"event": "ready", "node": self.config.name, "port": self.server.port, "backend": self.backend}
        self.events({**ready, "backend_note": backend_note(self.config.link_backend, self.backend)})

    def close(self) -> None:
        self.server.stop(grace=0.2)
        for c in self.clients.values():
            c.close()
        self.engine.close()
        self.audit.close()

    # --- link --------------------------------------------------------------------------------

    def link(self, peer: str, entities: list[str], count_only: bool = False, incremental: bool = False) -> LinkResult:
        """Run a link job with ``peer`` as initiator; return the result (also written to the store)."""
        self._known(peer)
        if count_only and incremental:
            raise InputError("--incremental keeps linking state; it cannot be combined with --count-only")
        bad = [e for e in entities if e not in ENTITIES]
        if bad:
            raise InputError(f"unknown entity '{bad[0]}'; use {', '.join(ENTITIES)}")
        session_id = pysecrets.token_hex(16)
        request = LinkRequest(
            session_id,
            PROTOCOL,
            entities,
            [f"{e}:{k}" for e in entities for k in self.config.keys[e]],
            count_only,
            incremental,
        )
        session = self._session(peer, session_id)
        return self._link_result(
            self._job(
                [session], lambda: link_job.initiate(session, request, self._link_party(), self._throttled_progress())
            )
        )

    def _respond_link(self, session: Session, request: LinkRequest) -> None:
        self._link_result(link_job.respond(session, request, self._link_party(), self._throttled_progress()))

    def _link_party(self) -> link_job.LinkParty:
        c = self.config
        return link_job.LinkParty(
            c.name,
            c.store,
            c.sources,
            c.keys,
            c.state_dir,
            self.blinder,
            self.engine.worker_peak_rss_mib,
            c.link_accept,
            c.limits.max_records,
            c.link_chunk,
            self._notice,
        )

    def _link_result(self, result: LinkResult) -> LinkResult:
        self.events({"event": "result", **result.to_json()})
        return result

    # --- training ----------------------------------------------------------------------------

    def train(
        self, peers: list[str], request_args: dict, scheme: str = DEFAULTS.he, key_bits: int = DEFAULTS.key_bits
    ) -> dict:
        """Train with ``peers`` as the passive parties (this node holds the labels); return the result.

        ``request_args``: ``TrainRequest`` fields besides session, protocol and model id.
        """
        unknown = [p for p in peers if p not in self.clients]
        if unknown or not peers or len(set(peers)) != len(peers):
            raise InputError(
                f"{self.config.path}: --train needs distinct known peers "
                f"(unknown: {', '.join(unknown) or '-'}; known: {', '.join(self.clients) or 'none'})"
            )
        train_data = self.train_data
        if train_data is None or train_data.y is None:
            raise InputError("this node has no labelled training data (--data FILE --id COLUMN --label COLUMN)")
        from tandem.learn.federated import active_job
        from tandem.learn.secureboost.shared import PROTOCOL as TRAIN_PROTOCOL

        model_id = pysecrets.token_hex(8)
        sessions = [self._session(p, pysecrets.token_hex(16), TRAIN_PROTOCOL) for p in peers]

        def work() -> dict:
            requests = [TrainRequest(s.id, TRAIN_PROTOCOL, model_id, **request_args) for s in sessions]
            for s, request in zip(sessions, requests, strict=True):
                s.send(request)
            for s in sessions:
                reply = s.recv()
                if not isinstance(reply, TrainAccept):
                    raise RemoteProtocolError(f"peer {s.peer} answered {reply.name} to a training request")
            return active_job(
                sessions,
                train_data,
                requests[0],
                self.blinder,
                party=self.config.name,
                passive_parties=peers,
                scheme=scheme,
                key_bits=key_bits,
                checkpoints=self.config.state_dir / "checkpoints",
                progress=self._progress,
            )

        return self._finish_training(sessions, self._job(sessions, work))

    def _respond_train(self, session: Session, request: TrainRequest) -> None:
        from tandem.learn.federated import passive_job
        from tandem.learn.secureboost.shared import PROTOCOL as TRAIN_PROTOCOL

        session.protocol = TRAIN_PROTOCOL
        if request.protocol != TRAIN_PROTOCOL:
            raise RemoteProtocolError(
                f"peer {session.peer} speaks {request.protocol}, this node speaks {TRAIN_PROTOCOL}"
            )
        if self.train_data is None:
            raise InputError(f"node {self.config.name} was started without training data (--data FILE --id COLUMN)")
        session.send(TrainAccept(session.id))
        self._finish_training(
            [session],
            passive_job(
                session,
                self.train_data,
                request,
                self.blinder,
                party=self.config.name,
                checkpoints=self.config.state_dir / "checkpoints",
                min_bin_rows=self.config.min_bin_rows,
            ),
        )

    def scorecard(self, peer: str, request_args: dict, scheme: str, key_bits: int) -> dict:
        """Fit a scorecard with ``peer`` as the passive party (this node holds the labels); return the result.
        ``request_args``: ``ScorecardRequest`` fields besides session, protocol and model id."""
        from tandem.learn.scorecard.job import PROTOCOL, active_job

        self._known(peer)
        data = self.train_data
        if data is None or data.y is None:
            raise InputError("this node has no labelled training data (--data FILE --id COLUMN --label COLUMN)")
        session = self._session(peer, pysecrets.token_hex(16), PROTOCOL)
        request = ScorecardRequest(session.id, PROTOCOL, pysecrets.token_hex(8), **request_args)

        def work() -> dict:
            session.send(request)
            reply = session.recv()
            if not isinstance(reply, ScorecardAccept):
                raise RemoteProtocolError(f"peer {peer} answered {reply.name} to a scorecard request")
            return active_job(
                [session], data, request, self.blinder, party=self.config.name, passive_parties=[peer],
                scheme=scheme, key_bits=key_bits, progress=self._progress,
            )  # fmt: skip

        return self._finish_training([session], self._job([session], work))

    def _respond_scorecard(self, session: Session, request: ScorecardRequest) -> None:
        from tandem.learn.scorecard.job import PROTOCOL, passive_job

        session.protocol = PROTOCOL
        if request.protocol != PROTOCOL:
            raise RemoteProtocolError(f"peer {session.peer} speaks {request.protocol}, this node speaks {PROTOCOL}")
        if self.train_data is None:
            raise InputError(f"node {self.config.name} was started without training data (--data FILE --id COLUMN)")
        session.send(ScorecardAccept(session.id))
        result = passive_job(
            session, self.train_data, request, self.blinder, party=self.config.name,
            min_bin_rows=self.config.min_bin_rows, share_names=self.config.share_names,
        )  # fmt: skip
        self._finish_training([session], result)

    def _finish_training(self, sessions: list[Session], result: dict) -> dict:
        from tandem.learn.model_io import save

        path = self.config.state_dir / "models" / f"{result['model']['model_id']}-{self.config.name}.json"
        save(result["model"], path)
        out = {k: v for k, v in result.items() if k != "model"}
        out.update(
            node=self.config.name,
            peer=", ".join(s.peer for s in sessions),
            model_path=str(path),
            bytes_sent=sum(self._bytes_sent(s.id) for s in sessions),
        )
        self.events({"event": "result", **out})
        return out

    def _bytes_sent(self, session_id: str) -> int:
        from tandem.audit import read_audit

        entries, _ = read_audit(self.config.audit_path)
        return sum(e["bytes"] for e in entries if e["session"] == session_id and e["direction"] == "out")

    # --- insight -----------------------------------------------------------------------------

    def insight(self, peer: str, queries: list[Query]) -> list[dict]:
        """Run ``queries`` with ``peer``, one session each, each taken at its own ``as_of`` or else this
        node's; return each result (``InsightResult.to_event``)."""
        from tandem.insight.job import PROTOCOL as INSIGHT_PROTOCOL
        from tandem.insight.job import initiate

        self._known(peer)
        results = []
        for query in queries:
            session = self._session(peer, pysecrets.token_hex(16), INSIGHT_PROTOCOL)
            asked = query.at(self.config.as_of)
            result = self._job([session], partial(initiate, session, asked, self._insight_party(), self._progress))
            results.append(self._insight_result(session, result))
        return results

    def _respond_insight(self, session: Session, request: InsightQuery) -> None:
        from tandem.insight.job import PROTOCOL as INSIGHT_PROTOCOL
        from tandem.insight.job import respond

        session.protocol = INSIGHT_PROTOCOL
        self._insight_result(session, respond(session, request, self._insight_party(), self._progress))

    def _insight_party(self):
        from tandem.insight.job import InsightParty

        if self._insight is None:
            self._insight = InsightParty(self.config.preset, self.config.store, self.config.insight)
        return self._insight

    def _insight_result(self, session: Session, result) -> dict:
        out = {
            "node": self.config.name,
            "peer": session.peer,
            "session": session.id,
            **result.to_event(),
            "bytes_sent": self._bytes_sent(session.id),
        }
        self.events({"event": "result", **out})
        return out

    # --- sessions ----------------------------------------------------------------------------

    def _on_new_session(self, session_id: str, peer: str) -> str | None:
        """Admit a session ``peer`` opened and start answering it; -> why not, if ``peer`` already has one
        waiting for its turn (each waiting session holds a thread and an inbox)."""
        with self._pending_lock:
            if peer in self._pending:
                return (
                    f"node {self.config.name} already has a session from {peer} waiting for its turn "
                    "(it runs one job at a time and keeps one waiting per peer)"
                )
            self._pending[peer] = session_id
        threading.Thread(
            target=self._respond, args=(session_id, peer), daemon=True, name=f"session-{session_id[:8]}"
        ).start()
        return None

    def _refused(self, peer: str, session_id: str, nbytes: int, reason: str) -> None:
        """A frame from ``peer`` was refused at the transport (which audited it): one event line."""
        self.events(
            {
                "event": "refused",
                "node": self.config.name,
                "peer": peer,
                "session": session_id,
                "bytes": nbytes,
                "message": reason,
            }
        )

    def _respond(self, session_id: str, peer: str) -> None:
        """Answer a session a peer opened: its first message picks the job (``self._openers``)."""
        session = self._session(peer, session_id)
        try:
            with self._lock:
                with self._pending_lock:
                    self._pending.pop(peer, None)
                request = session.recv()
                handler = self._openers.get(type(request))
                if handler is None:
                    raise RemoteProtocolError(f"peer {peer} opened a session with {request.name}")
                handler(session, request)
                session.flush()  # our last messages have reached the peer
        except TandemError as exc:
            self.failure = str(exc)
            self.events({"event": "error", "node": self.config.name, "message": str(exc)})
            session.abort(str(exc))
        except Exception as exc:  # a bug must still end the session visibly, not hang the peer
            self.failure = f"internal error: {type(exc).__name__}: {exc}"
            self.events({"event": "error", "node": self.config.name, "message": self.failure})
            session.abort(self.failure)
        finally:
            session.channel.close()
            self.served += 1
            self.finished.set()

    def _job(self, sessions: list[Session], work: Callable[[], T]) -> T:
        """Run an initiated job under the node's lock; on an error abort every session (the peers see
        why), and always close their channels."""
        try:
            with self._lock:
                done = work()
                for s in sessions:
                    s.flush()  # our last messages have reached each peer
                return done
        except TandemError as exc:
            for s in sessions:
                s.abort(str(exc))
            raise
        finally:
            for s in sessions:
                s.channel.close()

    def _known(self, peer: str) -> None:
        if peer not in self.clients:
            raise InputError(f"{self.config.path}: no peer named '{peer}' (known: {', '.join(self.clients) or 'none'})")

    def _session(self, peer: str, session_id: str, protocol: str = PROTOCOL) -> Session:
        c = self.config
        channel = GrpcChannel(self.clients[peer], self.inboxes, session_id, c.timeout_for(peer), c.keepalive_for(peer))
        return Session(channel, session_id, protocol, self.audit, c.timeout_for(peer))

    def _progress(self, what: str, fraction: float) -> None:
        self.events({"event": "progress", "node": self.config.name, "what": what, "fraction": fraction})

    def _notice(self, line: str) -> None:
        """One line for the operator (an event; with no event sink, stderr)."""
        if self._has_events:
            self.events({"event": "notice", "node": self.config.name, "message": line})
        else:
            print(f"{self.config.name}: {line}", file=sys.stderr, flush=True)

    def _throttled_progress(self) -> Callable[[str, float], None]:
        """``_progress`` at most every 0.3 s (and at each end): link keys report per chunk."""
        last = [0.0]

        def progress(what: str, fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.3 or fraction >= 1.0:
                last[0] = now
                self._progress(what, fraction)

        return progress


def json_events(stream=sys.stdout) -> Events:
    """Events as JSON lines (read by ``tandem link --world``)."""
    lock = threading.Lock()

    def emit(event: dict) -> None:
        with lock:
            stream.write(json.dumps(event) + "\n")
            stream.flush()

    return emit

"""Nodes talking over gRPC with mutual TLS.

Every node is a server with one method, ``/tandem.v1.Node/Deliver`` (a frame in, an
empty reply out), and a client of its peers' servers. A frame is routed by its session
id into that session's inbox. The peer's identity is the common name of the client
certificate that the TLS handshake verified, and that certificate must be signed by the CA
this node trusts for that very peer (``trust.PeerTrust``); frames from anyone else are refused.
Certificate and CA files are re-read when they change, for new connections (``trust``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc

from tandem.audit import AuditLog
from tandem.protocol_versions import protocol_versions
from tandem.protocols.message import peek
from tandem.protocols.wire import OPENING
from tandem.transport.base import KEEPALIVE_S, TransportError
from tandem.transport.inbox import Inbox
from tandem.transport.sender import SEND_AHEAD, OrderedSender
from tandem.transport.trust import PeerTrust, TlsFiles, diagnose_server

DELIVER = "/tandem.v1.Node/Deliver"
PING = "/tandem.v1.Node/Ping"
PROBE = "/tandem.v1.Node/Probe"  # tandem doctor: the node's clock and protocol versions, and bytes to time
PROBE_MAX = 8 * 1024 * 1024  # the most bytes a probe asks back
MAX_FRAME = 64 * 1024 * 1024  # the transport's ceiling on a frame; ``[limits] max_frame_bytes`` may set less
WORKERS = 8  # server threads
MAX_CALLS = 32  # calls in progress at once (each holds at most one frame); gRPC refuses more
_OPTIONS = [("grpc.max_receive_message_length", MAX_FRAME), ("grpc.max_send_message_length", MAX_FRAME)]


Refusal = tuple[grpc.StatusCode, str]  # how a frame was refused: the status for the sender, one line


class Inboxes:
    """Frames waiting per session (each an ``Inbox`` of at most ``inbox_bytes``); an opening message (link,
    train or insight request) for an unknown session opens one if ``on_new_session`` admits it (it
    returns ``None``, or why not)."""

    def __init__(self, on_new_session: Callable[[str, str], str | None] | None, inbox_bytes: int = 2**31):
        self._queues: dict[str, tuple[str, Inbox]] = {}
        self._lock = threading.Lock()
        self._on_new = on_new_session
        self.inbox_bytes = inbox_bytes

    def open(self, session: str, peer: str) -> Inbox:
        with self._lock:
            return self._queues.setdefault(session, (peer, Inbox(self.inbox_bytes)))[1]

    def close(self, session: str) -> None:
        with self._lock:
            entry = self._queues.pop(session, None)
        if entry is not None:
            entry[1].close()

    def deliver(self, peer: str, frame: bytes, wait_s: float = 0.0) -> Refusal | None:
        """Route ``frame``, waiting up to ``wait_s`` for room in a full inbox; -> ``None``, or the refusal."""
        code, session = peek(frame)
        if session is None:
            return grpc.StatusCode.FAILED_PRECONDITION, "malformed frame: no session id"
        with self._lock:
            entry = self._queues.get(session)
            if entry is None and code in OPENING and self._on_new is not None:
                entry = self._queues[session] = (peer, Inbox(self.inbox_bytes))
                refused = self._on_new(session, peer)
                if refused is not None:
                    del self._queues[session]
                    return grpc.StatusCode.RESOURCE_EXHAUSTED, refused
        if entry is None:
            return grpc.StatusCode.FAILED_PRECONDITION, f"unknown session {session[:16]}"
        if entry[0] != peer:
            return grpc.StatusCode.FAILED_PRECONDITION, "session belongs to another peer"
        refused = entry[1].put(frame, wait_s)
        return None if refused is None else (grpc.StatusCode.RESOURCE_EXHAUSTED, f"session {session[:16]}: {refused}")


OnRefuse = Callable[[str, str, int, str], None]  # (peer, session id or "", frame bytes, reason)


class NodeServer:
    """The gRPC server of a node: mutual TLS, peers identified by certificate CN.

    A frame over ``max_frame_bytes`` is refused (``MAX_FRAME`` and more, by gRPC before it is read),
    one waits at most ``wait_s`` for room in its session's inbox, and at most ``MAX_CALLS`` calls are
    in progress (more are refused by gRPC): what peers can make the node hold is bounded. Every
    refusal after the handshake is audited (message ``Refused``, protocol ``transport``), goes to
    ``on_refuse`` (the node's event log) and to the sender, each as one line.
    """

    def __init__(
        self,
        name: str,
        listen: str,
        tls: TlsFiles,
        peers: set[str],
        inboxes: Inboxes,
        *,
        max_frame_bytes: int = MAX_FRAME,
        wait_s: float = 60.0,
        audit: AuditLog | None = None,
        on_refuse: OnRefuse | None = None,
        protocols: dict[str, str] | None = None,
    ):
        self.name, self.peers, self.inboxes, self.audit = name, peers, inboxes, audit
        self.max_frame_bytes, self.wait_s = max_frame_bytes, wait_s
        self.protocols = protocol_versions() if protocols is None else protocols
        self._on_refuse = on_refuse or (lambda peer, session, nbytes, reason: None)
        self.trust = PeerTrust(tls)
        creds = _server_credentials(tls)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=WORKERS), options=_OPTIONS, maximum_concurrent_rpcs=MAX_CALLS
        )
        handler = grpc.method_handlers_generic_handler(
            "tandem.v1.Node",
            {
                "Deliver": grpc.unary_unary_rpc_method_handler(self._deliver),
                "Ping": grpc.unary_unary_rpc_method_handler(self._ping),
                "Probe": grpc.unary_unary_rpc_method_handler(self._probe),
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        try:
            self.port = self._server.add_secure_port(listen, creds)
        except RuntimeError as exc:
            raise TransportError(f"cannot listen on {listen}: {exc}") from None
        if self.port == 0:
            raise TransportError(f"cannot listen on {listen} (address in use?)")

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()

    def _peer(self, context) -> str:
        names = context.auth_context().get("x509_common_name") or [b""]
        peer = names[0].decode(errors="replace")
        if peer not in self.peers:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"node {self.name} does not know peer '{peer}'")
        pem = (context.auth_context().get("x509_pem_cert") or [b""])[0]
        refused = self.trust.refusal(peer, pem)
        if refused is not None:
            self._refuse(context, peer, "", 0, (grpc.StatusCode.PERMISSION_DENIED, refused))
        return peer

    def _refuse(self, context, peer: str, session: str, nbytes: int, refusal: Refusal) -> None:
        """Audit a refused call (message ``Refused``, protocol ``transport``), tell the node, answer the sender."""
        status, reason = refusal
        if self.audit is not None:
            self.audit.record(
                direction="in",
                peer=peer,
                protocol="transport",
                session=session,
                message="Refused",
                nbytes=nbytes,
                records=0,
            )
        self._on_refuse(peer, session, nbytes, reason)
        context.abort(status, reason)

    def _deliver(self, frame: bytes, context) -> bytes:
        peer = self._peer(context)
        if len(frame) > self.max_frame_bytes:
            refused: Refusal | None = (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a frame of {len(frame)} bytes is over node {self.name}'s cap of {self.max_frame_bytes} "
                "([limits] max_frame_bytes)",
            )
        else:  # answer before the sender's deadline, so that it hears why
            left = context.time_remaining()
            wait = self.wait_s if left is None else max(0.0, min(self.wait_s, left - 1.0))
            refused = self.inboxes.deliver(peer, frame, wait)
        if refused is not None:
            self._refuse(context, peer, peek(frame)[1] or "", len(frame), refused)
        return b""

    def _ping(self, _request: bytes, context) -> bytes:
        self._peer(context)
        return b""

    def _probe(self, request: bytes, context) -> bytes:
        """A peer's ``tandem doctor``: ``request`` is the size it wants back (8 bytes, big-endian) and any
        filler (its upload, timed); the answer is one JSON line (this node, its clock, its protocol
        versions) and that many zero bytes. Both are audited (protocol ``doctor``)."""
        peer = self._peer(context)
        if len(request) > self.max_frame_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"a probe over node {self.name}'s frame cap")
        want = min(int.from_bytes(request[:8], "big"), PROBE_MAX) if len(request) >= 8 else 0
        info = json.dumps({"node": self.name, "time": time.time(), "protocols": self.protocols}).encode()
        reply = info + b"\n" + bytes(want)
        if self.audit is not None:
            for direction, message, size in (("in", "Probe", len(request)), ("out", "Probe answer", len(reply))):
                self.audit.record(
                    direction=direction,
                    peer=peer,
                    protocol="doctor",
                    session="",
                    message=message,
                    nbytes=size,
                    records=0,
                )
        return reply


class PeerClient:
    """The client side towards one peer: one TLS channel, reused by all sessions, that trusts only the
    CA configured for this peer. When the certificate files change, the next call opens a new channel
    with them (calls already under way finish on the old one)."""

    RECHECK_S = 1.0  # how often the files' modification times are looked at

    def __init__(self, name: str, address: str, tls: TlsFiles):
        self.name, self.address, self.tls = name, address, tls
        self._lock = threading.Lock()
        self._retired: list[grpc.Channel] = []
        self._open()

    def _open(self) -> None:
        stamp = self.tls.stamp()
        ca, cert, key = self.tls.read_for(self.name)
        self._stamp, self._checked = stamp, time.monotonic()
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        self._channel = grpc.secure_channel(
            self.address, creds, options=_OPTIONS + [("grpc.ssl_target_name_override", self.name)]
        )
        self._deliver: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(DELIVER)
        self._ping: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(PING)
        self._probe: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(PROBE)

    def _refresh(self) -> None:
        """Reopen the channel if a certificate or CA file changed since it was opened."""
        with self._lock:
            if time.monotonic() - self._checked < self.RECHECK_S:
                return
            self._checked = time.monotonic()
            if self.tls.stamp() != self._stamp:
                old = self._channel
                try:
                    self._open()
                except TransportError:  # files half-way through being replaced: keep the channel we have
                    return
                self._retired.append(old)

    def deliver(self, frame: bytes, timeout: float) -> None:
        self._call("deliver", frame, timeout)

    def ping(self, timeout: float) -> None:
        """Raise ``TransportError`` if the peer is gone; a peer too busy to answer in time counts as alive
        (a node holding the GIL in a long crypto call answers late, but answers)."""
        try:
            self._call("ping", b"", timeout)
        except TransportError as exc:
            if "did not answer within" not in str(exc):
                raise

    def probe(self, upload: int, download: int, timeout: float) -> tuple[dict, int, float]:
        """Send ``upload`` filler bytes and ask ``download`` back; -> (the peer's JSON line, the bytes of
        its answer, seconds from send to answer). For ``tandem doctor``."""
        payload = download.to_bytes(8, "big") + bytes(upload)
        began = time.perf_counter()
        reply = self._call("probe", payload, timeout)
        seconds = time.perf_counter() - began
        head = reply.partition(b"\n")[0]
        try:
            info = json.loads(head)
        except ValueError:
            raise TransportError(f"peer {self.name} answered the probe with something that is not JSON") from None
        return (info if isinstance(info, dict) else {}), len(reply), seconds

    def _call(self, which: str, payload: bytes, timeout: float) -> bytes:
        self._refresh()
        method = {"deliver": self._deliver, "ping": self._ping, "probe": self._probe}[which]
        try:
            return method(payload, timeout=timeout, wait_for_ready=False)
        except ValueError:  # grpc: "Cannot invoke RPC on closed channel!"
            raise TransportError(f"the channel to peer {self.name} is closed (this node is stopping)") from None
        except grpc.RpcError as exc:
            code, detail = exc.code(), (exc.details() or "").strip()
            if code == grpc.StatusCode.UNAVAILABLE:
                tls_failed = "handshake" in detail.lower() or "ssl" in detail.lower()
                why = diagnose_server(self.name, self.address, self.tls) if tls_failed else None
                if why is not None:
                    raise TransportError(why) from None
                hint = (
                    " (TLS handshake failed or the peer is down)" if tls_failed or "connect" in detail.lower() else ""
                )
                raise TransportError(
                    f"peer {self.name} at {self.address} is unreachable{hint}: "
                    f"{detail.splitlines()[0] if detail else code.name}"
                ) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TransportError(
                    f"peer {self.name} at {self.address} did not answer within {timeout:g} s"
                ) from None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in detail:
                who = "this node cannot send it" if detail.startswith("Sent") else f"peer {self.name} refused it"
                raise TransportError(f"frame over the transport's {MAX_FRAME} bytes, {who}: {detail}") from None
            raise TransportError(f"peer {self.name} refused the message: {detail or code.name}") from None

    def close(self) -> None:
        for channel in (*self._retired, self._channel):
            channel.close()


class GrpcChannel:
    """A ``Channel`` for one session with one peer: frames out by RPC, in order, from a sender thread a
    few frames ahead of the protocol (``sender.OrderedSender``); frames in from the inbox."""

    def __init__(
        self, client: PeerClient, inboxes: Inboxes, session: str, timeout: float, keepalive: float = KEEPALIVE_S
    ):
        self.peer = client.name
        self._client, self._inboxes, self._session, self._timeout = client, inboxes, session, timeout
        self._keepalive = keepalive
        self._queue = inboxes.open(session, client.name)
        self._out = OrderedSender(lambda frame: client.deliver(frame, timeout), f"send-{client.name}")

    def send(self, frame: bytes) -> None:
        self._out.put(frame)

    def flush(self) -> None:
        """Wait until every frame sent so far is delivered; ``TransportError`` if one could not be."""
        self._out.flush(self._timeout * (SEND_AHEAD + 1))

    def poll(self) -> bytes | None:
        return self._queue.get(0)

    def recv(self, timeout: float) -> bytes:
        """Wait for a frame; ping the peer while waiting so a dead peer is noticed in seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._out.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(f"peer {self.peer} sent nothing for {timeout:g} s")
            frame = self._queue.get(min(self._keepalive, left))
            if frame is not None:
                return frame
            self._client.ping(timeout=min(self._keepalive * 2, self._timeout))

    def close(self) -> None:
        """Deliver what is still queued (best effort: the session is over), then release the inbox."""
        try:
            self._out.flush(self._timeout)
        except TransportError:
            pass
        self._out.stop()
        self._inboxes.close(self._session)


def _server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that re-read ``tls`` for the next handshake whenever its files change."""
    seen = [tls.stamp()]

    def config() -> grpc.ServerCertificateConfiguration:
        cert, key = tls.own()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=tls.bundle())

    def fetch() -> grpc.ServerCertificateConfiguration | None:  # called by gRPC before each handshake
        stamp = tls.stamp()
        if stamp == seen[0]:
            return None
        try:
            fresh = config()
        except TransportError:  # a file half-way through being replaced: keep the last good one
            return None
        seen[0] = stamp
        return fresh

    # gRPC's stubs say the fetcher returns a configuration; ``None`` (keep the current one) is documented too
    return grpc.dynamic_ssl_server_credentials(config(), fetch, require_client_authentication=True)  # type: ignore[arg-type]

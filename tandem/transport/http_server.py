"""The server side of HTTP crossings: the decision services' listeners (uvicorn, TLS) and the guard
of every mutual-TLS peer listener.

``PeerGuard`` (ASGI middleware) answers a peer listener's caller only if its certificate names
the configured peer and comes from the CA trusted for that peer as the files are now (``trust.PeerTrust``,
as on the gRPC side; else 403), and writes one audit line per request received and per answer
sent, with the caller's certificate name. uvicorn does not hand the client certificate to the
app, so the listener's protocol class puts it (PEM) and its names into ``scope["extensions"]["tls"]``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tandem.audit import AuditLog
from tandem.errors import InputError
from tandem.transport.http import Messages, cert_names, describe, is_peer, parse, record
from tandem.transport.trust import PeerTrust

Listener = tuple[str, Any, bool]  # ("host:port", ASGI app, mutual TLS: the peer listener)


class _PeerNamesProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol that also tells the app the client's certificate (PEM) and its names."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = transport.get_extra_info("ssl_object")
        self._names = cert_names(tls.getpeercert() if tls is not None else None)
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        self._pem = ssl.DER_cert_to_PEM_cert(der).encode() if der else b""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": {"client_cert_names": self._names, "client_cert": self._pem}}


async def _body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class PeerGuard:
    """ASGI middleware of a mutual-TLS listener that answers only the node ``peer``.

    The TLS layer already required a certificate from a CA trusted at the handshake; this checks its
    name (CN or DNS SAN) and, with ``trust``, that the CA trusted for ``peer`` now issued it (a caller
    whose CA was taken out of the files is refused from its next request on, on connections opened
    before too), and audits, in ``audit`` as ``protocol`` messages named by ``messages``, each request
    received and each answer sent (refusals included), with the caller's certificate name as the peer.
    """

    def __init__(
        self, app, peer: str | None, audit: AuditLog, messages: Messages, protocol: str, trust: PeerTrust | None = None
    ):
        self.app, self.peer, self.audit, self.messages, self.protocol = app, peer, audit, messages, protocol
        self.trust = trust

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("extensions", {}).get("tls", {})
        names = tuple(tls.get("client_cert_names", ()))
        caller = names[0] if names else "unknown"
        data = await _body(receive)
        body = parse(data)
        what = describe(self.messages, scope["path"], body)
        try:
            record(self.audit, "in", caller, self.protocol, what, True, len(data), what.request_records(body))
        except OSError as exc:  # fail closed: nothing is done or answered unaudited
            await _refuse(send, 503, f"the audit log cannot be written ({exc})")
            return
        why = None if is_peer(names, self.peer) else f"this listener answers only the node {self.peer}"
        if why is None and self.trust is not None and self.peer is not None:
            why = self.trust.refusal(self.peer, tls.get("client_cert", b""))
        if why is not None:
            refusal = json.dumps({"detail": why}).encode()
            try:
                await self.audit.durable(record(self.audit, "out", caller, self.protocol, what, False, len(refusal), 0))
            except OSError as exc:
                await _refuse(send, 503, f"the audit log cannot be written ({exc})")
                return
            await _answer(send, 403, refusal)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # the app waits for a disconnect
            replayed = True
            return {"type": "http.request", "body": data, "more_body": False}

        held: list[dict] = []  # the answer, sent once its audit line is durable

        async def audited_send(message) -> None:
            if message["type"] not in ("http.response.start", "http.response.body"):
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                status = held[0]["status"]
                answer = b"".join(m.get("body", b"") for m in held[1:])
                try:
                    seq = record(
                        self.audit,
                        "out",
                        caller,
                        self.protocol,
                        what,
                        False,
                        len(answer),
                        what.answer_records(status, answer),
                    )
                    await self.audit.durable(seq)
                except OSError as exc:
                    await _refuse(send, 503, f"the audit log cannot be written ({exc})")
                    return
                for m in held:
                    await send(m)

        await self.app(scope, replay, audited_send)


async def _answer(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send, status: int, detail: str) -> None:
    """An error answer that is itself not audited: the log could not take its line."""
    await _answer(send, status, json.dumps({"detail": detail}).encode())


def _host_port(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"{where} must look like host:port, got '{text}'")
    return host, int(port)


class _Reloading:
    """Picks up a renewed node certificate, or a new CA for the peer, for the next handshake: the
    listener's SNI callback hands each new connection a context made from the files as they are now
    (connections already open carry on). A CA file that changes is also added to the listener's own
    context, as OpenSSL keeps the first context's trusted CAs for the client's certificate; a CA taken
    out of the file may still pass a handshake (and connections already open stay up): ``PeerGuard``'s
    ``PeerTrust`` refuses its callers' requests."""

    def __init__(self, tls, ca: Path | None, mutual: bool):
        self.tls, self.ca, self.mutual = tls, ca, mutual
        self._stamp = tls.stamp()
        self._context: ssl.SSLContext | None = None

    def use_latest(self, conn: ssl.SSLObject, _server_name: str | None, base: ssl.SSLContext) -> None:
        stamp = self.tls.stamp()
        if stamp != self._stamp:
            try:
                fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                fresh.load_cert_chain(str(self.tls.cert), str(self.tls.key))
                if self.mutual and self.ca:
                    fresh.verify_mode = ssl.CERT_REQUIRED
                    fresh.load_verify_locations(str(self.ca))
                    base.load_verify_locations(str(self.ca))
            except (OSError, ssl.SSLError):  # files half-way through being replaced: keep what we had
                return
            self._stamp, self._context = stamp, fresh
        if self._context is not None:
            conn.context = self._context


class HttpServers:
    """The listeners of one node's services, each a uvicorn server with the node certificate (``tls``:
    ``trust.TlsFiles``). A mutual listener requires a client certificate from the CA trusted for ``peer`` and is wrapped
    in ``PeerGuard(peer, audit, messages, protocol)``; the others are plain TLS (the apps' own auth).
    ``where`` names the config in errors."""

    def __init__(
        self,
        listeners: list[Listener],
        tls,
        *,
        peer: str | None,
        audit: AuditLog,
        messages: Messages,
        protocol: str,
        where: str,
    ):
        import uvicorn

        self.listen = [listen for listen, _app, _mutual in listeners]
        self.where = where
        self.servers = []
        for listen, app, mutual in listeners:
            host, port = _host_port(listen, f"{where}: [decide] listen")
            if mutual:
                app = PeerGuard(app, peer, audit, messages, protocol, PeerTrust(tls) if peer else None)
            ca = tls.ca_for(peer) if mutual and peer else None
            config = uvicorn.Config(
                app,
                host=host,
                port=port,
                ssl_certfile=str(tls.cert),
                ssl_keyfile=str(tls.key),
                ssl_ca_certs=str(ca) if ca else None,
                ssl_cert_reqs=ssl.CERT_REQUIRED if mutual else ssl.CERT_NONE,
                log_level="warning",
                access_log=False,
                lifespan="off",
                loop="asyncio",
                http=_PeerNamesProtocol,
            )
            config.load()
            if config.ssl is not None:
                config.ssl.sni_callback = _Reloading(tls, ca, mutual).use_latest
            self.servers.append(uvicorn.Server(config))

    def stop(self, *_signal) -> None:
        """Ask every listener to finish (usable as a signal handler)."""
        for s in self.servers:
            s.should_exit = True

    async def serve(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Listen until stopped; ``on_ready()`` once all listen. ``InputError`` if one cannot listen."""
        tasks = [asyncio.create_task(s.serve()) for s in self.servers]
        while not all(s.started for s in self.servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        if not all(s.started for s in self.servers):
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise InputError(f"{self.where}: cannot listen on {', '.join(self.listen)} (address in use?)")
        on_ready()
        await asyncio.gather(*tasks)

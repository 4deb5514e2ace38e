"""The one HTTP client for calls to the other node: keep-alive HTTP/1.1 over mutual TLS, audited.

General-purpose clients spend milliseconds per request on pool bookkeeping that a fixed pool
of persistent connections to one peer does not need; at hundreds of decisions per second on
two cores that decides the latency. Each connection checks, once and before any request is
written, that the server's certificate (signed by our CA) names the expected peer. Every
request sent and every answer received is one audit line.

When the certificate files change (a renewed node certificate, a new CA for the peer), the next request
makes a new context from them and opens its connection with it; connections opened before are closed
when they are next idle, so requests under way on them finish (as the gRPC side's ``PeerClient`` does).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

from tandem.audit import AuditLog
from tandem.errors import TandemError
from tandem.transport.base import TransportError
from tandem.transport.http import Messages, cert_names, describe, is_peer, record


class PeerUnavailable(TandemError):
    """The peer could not be reached, is not who it should be, or broke the connection."""


def peer_context(tls, peer: str) -> ssl.SSLContext:
    """A client context with our node certificate (``tls``: ``trust.TlsFiles``) that trusts only servers
    signed by the CA trusted for ``peer``. The peer's name is checked per connection against its
    certificate (every node certificate also names 127.0.0.1, so the address alone would not tell
    the nodes apart)."""
    context = ssl.create_default_context(cafile=str(tls.ca_for(peer)))
    context.check_hostname = False
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


class PeerHttpClient:
    """Up to ``size`` persistent connections to the peer node ``peer`` at ``address`` ("host:port").

    ``post(path, body)`` sends ``body`` as JSON and returns ``(status, answer bytes)``; both are
    audited in ``audit`` as ``protocol`` messages named by ``messages``. Raises ``PeerUnavailable``.
    """

    RECHECK_S = 1.0  # how often the certificate files' modification times are looked at

    def __init__(
        self,
        address: str,
        peer: str,
        tls,
        audit: AuditLog,
        messages: Messages,
        protocol: str,
        size: int = 16,
        timeout_s: float = 5.0,
    ):
        self.host, _, port = address.rpartition(":")
        self.port, self.peer, self.size, self.timeout = int(port), peer, size, timeout_s
        self.context, self.audit, self.messages, self.protocol = peer_context(tls, peer), audit, messages, protocol
        self.tls, self._stamp, self._checked = tls, tls.stamp(), time.monotonic()
        self.generation = 0  # of the context; each connection is (reader, writer, generation)
        self._idle: asyncio.Queue | None = None
        self._open = 0

    def _refresh(self) -> None:
        """A new context if a certificate or CA file changed since the last one was made."""
        if time.monotonic() - self._checked < self.RECHECK_S:
            return
        self._checked = time.monotonic()
        stamp = self.tls.stamp()
        if stamp == self._stamp:
            return
        try:
            context = peer_context(self.tls, self.peer)
        except (OSError, ssl.SSLError, TransportError):  # files half-way through being replaced: keep ours
            return
        self._stamp, self.context, self.generation = stamp, context, self.generation + 1

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        generation = self.generation
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.context), self.timeout
            )
        except (TimeoutError, OSError) as exc:
            raise PeerUnavailable(
                f"the {self.peer} decision service at {self.host}:{self.port} is unreachable ({type(exc).__name__})"
            ) from None
        tls = writer.get_extra_info("ssl_object")
        names = cert_names(tls.getpeercert() if tls is not None else None)
        if not is_peer(names, self.peer):
            writer.close()
            raise PeerUnavailable(
                f"the service at {self.host}:{self.port} is not {self.peer} (certificate of "
                f"{names[0] if names else 'nobody'})"
            )
        return reader, writer, generation

    async def _take(self):
        if self._idle is None:
            self._idle = asyncio.Queue()
        self._refresh()
        while True:
            if self._idle.empty() and self._open < self.size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    raise
            conn = await self._idle.get()
            if conn[2] == self.generation:
                return conn
            conn[1].close()  # opened with the files as they were: make room for a fresh one
            self._open -= 1

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        what = describe(self.messages, path, body)
        retried = False  # a kept-alive connection the server closed: once more, fresh
        while True:
            conn = await self._take()
            record(self.audit, "out", self.peer, self.protocol, what, True, len(data), what.request_records(body))
            try:
                status, answer = await asyncio.wait_for(self._exchange(conn, path, data), self.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self._open -= 1
                conn[1].close()
                if retried or isinstance(exc, asyncio.TimeoutError):
                    raise PeerUnavailable(
                        f"the {self.peer} decision service did not answer ({type(exc).__name__})"
                    ) from None
                retried = True
                continue
            if self._idle is None:
                raise RuntimeError("the connection pool was used before it was opened")
            self._idle.put_nowait(conn)
            record(
                self.audit,
                "in",
                self.peer,
                self.protocol,
                what,
                False,
                len(answer),
                what.answer_records(status, answer),
            )
            return status, answer

    async def _exchange(self, conn, path: str, body: bytes) -> tuple[int, bytes]:
        reader, writer, _generation = conn
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.peer}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status_line = await reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        status = int(status_line.split()[1])
        length = None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ValueError("answer without a content length")
        return status, await reader.readexactly(length)

    async def close(self) -> None:
        while self._idle is not None and not self._idle.empty():
            self._idle.get_nowait()[1].close()


class BlockingPeerHttpClient:
    """``PeerHttpClient`` for batch work (one connection, a blocking ``post``); use it in ``with``."""

    def __init__(
        self, address: str, peer: str, tls, audit: AuditLog, messages: Messages, protocol: str, timeout_s: float = 120.0
    ):
        self._runner = asyncio.Runner()
        self._client = PeerHttpClient(address, peer, tls, audit, messages, protocol, size=1, timeout_s=timeout_s)

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        return self._runner.run(self._client.post(path, body))

    def __enter__(self) -> BlockingPeerHttpClient:
        return self

    def __exit__(self, *_exc) -> None:
        self._runner.run(self._client.close())
        self._runner.close()


class ApiClient:
    """A client of a node's API-key listener (the shop's side, as the demo and the benchmark play it):
    sends ``X-API-Key``; the listener's certificate is not verified (development only)."""

    def __init__(self, key: str, timeout_s: float = 30.0):
        import httpx

        self._errors = httpx.HTTPError
        self._client = httpx.Client(verify=False, headers={"X-API-Key": key}, timeout=timeout_s)

    def post(self, url: str, body: dict) -> tuple[int, dict | None]:
        """``(status, JSON answer)``; ``(0, None)`` when the service could not be reached."""
        try:
            reply = self._client.post(url, json=body)
        except self._errors:
            return 0, None
        try:
            return reply.status_code, reply.json()
        except ValueError:
            return reply.status_code, None

    def close(self) -> None:
        self._client.close()

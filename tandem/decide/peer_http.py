"""A small keep-alive HTTP/1.1 client over mutual TLS, for one node calling the other per decision.

General-purpose clients spend milliseconds per request on pool bookkeeping that a fixed
pool of persistent connections to one peer does not need; at hundreds of decisions per
second on two cores that decides the latency. Each connection checks, once, that the
server's certificate (signed by our CA) names the expected peer.
"""

from __future__ import annotations

import asyncio
import ssl

from tandem.errors import TandemError


class PeerUnavailable(TandemError):
    """The peer could not be reached or broke the connection."""


class PeerPool:
    """Up to ``size`` persistent connections to ``address`` ("host:port"); ``post`` -> ``(status, body)``."""

    def __init__(self, address: str, context: ssl.SSLContext, peer: str, size: int = 16, timeout_s: float = 5.0):
        self.host, _, port = address.rpartition(":")
        self.port, self.context, self.peer, self.size, self.timeout = int(port), context, peer, size, timeout_s
        self._idle: asyncio.Queue | None = None
        self._open = 0

    async def _connect(self):
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.context)
        cert = writer.get_extra_info("ssl_object").getpeercert() or {}
        name = dict(x[0] for x in cert.get("subject", ())).get("commonName")
        if name != self.peer:
            writer.close()
            raise PeerUnavailable(f"the service at {self.host}:{self.port} is not {self.peer} (certificate of {name})")
        return reader, writer

    async def _take(self):
        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and self._open < self.size:
            self._open += 1
            try:
                return await self._connect()
            except BaseException:
                self._open -= 1
                raise
        return await self._idle.get()

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        retried = False                  # a kept-alive connection the server closed: once more, fresh
        while True:
            conn = await self._take()
            try:
                status, data = await asyncio.wait_for(self._exchange(conn, path, body, headers or {}), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                self._open -= 1
                conn[1].close()
                if retried or isinstance(exc, asyncio.TimeoutError):
                    raise PeerUnavailable(f"{self.peer} did not answer ({type(exc).__name__})") from None
                retried = True
                continue
            self._idle.put_nowait(conn)
            return status, data

    async def _exchange(self, conn, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reader, writer = conn
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.peer}\r\nContent-Type: application/json\r\n{extra}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
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

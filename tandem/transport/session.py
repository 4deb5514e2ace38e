"""A protocol session over a channel: the one place where messages leave a node (and are audited)."""

from __future__ import annotations

from tandem.audit import AuditLog
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.message import Message, decode
from tandem.protocols.wire import Abort
from tandem.transport.base import Channel, TransportError


def open_audit(node, sync_each: bool = True) -> AuditLog:
    """The audit log of the node with config ``node`` (its ``audit_path`` and ``name``), which every
    crossing of this node writes to; ``sync_each=False`` for online services (see ``AuditLog``)."""
    return AuditLog(node.audit_path, node.name, sync_each=sync_each)


class Session:
    """Send and receive typed messages with one peer; every frame sent or received is audited."""

    def __init__(self, channel: Channel, session_id: str, protocol: str, audit: AuditLog | None, timeout: float):
        self.channel, self.id, self.protocol, self.audit, self.timeout = channel, session_id, protocol, audit, timeout
        self.peer = channel.peer

    def send(self, msg: Message) -> None:
        frame = msg.encode()
        self._audit("out", msg, len(frame))
        try:
            self.channel.send(frame)
        except TransportError:
            self._raise_waiting_abort()
            raise

    def _raise_waiting_abort(self) -> None:
        """The peer refused a frame: if it had stopped the session first, say why it stopped (its
        ``Abort`` is waiting here) rather than that it refused a frame of a session it has closed."""
        while (frame := self.channel.poll()) is not None:
            try:
                msg = decode(frame)
            except RemoteProtocolError:
                continue
            if isinstance(msg, Abort):
                self._decode(frame)  # audited, and raised as ``RemoteProtocolError``

    def send_all(self, msgs: list[Message]) -> None:
        for m in msgs:
            self.send(m)

    def recv(self) -> Message:
        try:
            return self._decode(self.channel.recv(self.timeout))
        except TransportError:  # a frame of ours was refused meanwhile: say why the peer stopped, if it did
            self._raise_waiting_abort()
            raise

    def flush(self) -> None:
        """Wait until every message sent so far has reached the peer (channels that send in the
        background); ``TransportError`` if one could not be delivered."""
        flush = getattr(self.channel, "flush", None)
        if flush is not None:
            try:
                flush()
            except TransportError:
                self._raise_waiting_abort()
                raise

    def poll(self) -> Message | None:
        frame = self.channel.poll()
        return None if frame is None else self._decode(frame)

    def abort(self, reason: str) -> None:
        """Tell the peer we stopped (best effort: the peer may already be gone)."""
        try:
            self.send(Abort(self.id, reason[:500]))
        except TransportError:
            pass

    def _decode(self, frame: bytes) -> Message:
        msg = decode(frame)
        self._audit("in", msg, len(frame))
        if getattr(msg, "session", self.id) != self.id:
            raise RemoteProtocolError(f"peer {self.peer} sent a message of another session")
        if isinstance(msg, Abort):
            raise RemoteProtocolError(f"peer {self.peer} stopped: {msg.reason}")
        return msg

    def _audit(self, direction: str, msg: Message, nbytes: int) -> None:
        if self.audit is not None:
            self.audit.record(
                direction=direction,
                peer=self.peer,
                protocol=self.protocol,
                session=self.id,
                message=msg.name,
                nbytes=nbytes,
                records=msg.records,
            )

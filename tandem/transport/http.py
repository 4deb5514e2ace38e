"""What the HTTP client and server share: how a peer message is named in the audit log, and which
names a peer's certificate carries.

The decision services' peer endpoints are JSON over HTTPS. Each endpoint declares a
``PeerMessage``; the client (``http_client``) and the server middleware (``http_server``) name
and count the same message the same way, so both nodes' audit logs line up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tandem.audit import AuditLog


@dataclass(frozen=True)
class PeerMessage:
    """How one peer endpoint's request and answer appear in the audit log.

    ``name`` is the answer's message type, ``name + " request"`` the request's; ``suffix`` names a
    request field appended to both (``"offer content cashback_card"``); ``session`` names the request
    field that identifies the session (a request id, a model version; the first item of a list);
    ``rows``: the request names rows in the list ``items`` (``link_ids`` unless told) and the answer flags
    the ones it holds in ``found`` (records = those counts), else a request or a successful answer is one
    record.
    """

    name: str
    session: str
    suffix: str | None = None
    rows: bool = False
    items: str = "link_ids"


Messages = dict[str, PeerMessage]  # request path -> its message


def _field(body: object, key: str | None) -> str:
    value = body.get(key) if isinstance(body, dict) and key else None
    if isinstance(value, list):
        value = value[0] if value else None
    return "" if value is None else str(value)[:100]


def parse(data: bytes) -> object:
    """A JSON body, or ``None`` when it is empty or not JSON."""
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Described:
    """One exchange's audit names: ``message`` (the answer's type), ``session``, the row count rule."""

    message: str
    session: str
    rows: bool
    items: str = "link_ids"

    def request_records(self, body: object) -> int:
        if self.rows:
            ids = body.get(self.items) if isinstance(body, dict) else None
            return len(ids) if isinstance(ids, list) else 0
        return 1 if body is not None else 0

    def answer_records(self, status: int, data: bytes) -> int:
        if status != 200:
            return 0
        if not self.rows:
            return 1
        answer = parse(data)
        found = answer.get("found") if isinstance(answer, dict) else None
        return sum(1 for f in found if f is True) if isinstance(found, list) else 0


def describe(messages: Messages, path: str, body: object) -> Described:
    """The audit names of a request to ``path`` with JSON ``body`` (unknown paths are named by the path)."""
    spec = messages.get(path)
    if spec is None:
        return Described(path, "", False)
    suffix = _field(body, spec.suffix)
    name = f"{spec.name} {suffix}" if suffix else spec.name
    return Described(name, _field(body, spec.session), spec.rows, spec.items)


def cert_names(cert: dict | None) -> tuple[str, ...]:
    """The names a peer certificate (``SSLSocket.getpeercert()`` form) carries: its CN, then its DNS SANs."""
    if not cert:
        return ()
    subject = dict(x[0] for x in cert.get("subject", ()))
    dns = tuple(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")
    cn = subject.get("commonName")
    return ((cn,) if cn else ()) + dns


def is_peer(names: tuple[str, ...], peer: str | None) -> bool:
    """A certificate with ``names`` belongs to ``peer`` (its CN or one of its DNS SANs)."""
    return peer is not None and peer in names


def record(
    audit: AuditLog, direction: str, peer: str, protocol: str, what: Described, request: bool, nbytes: int, records: int
) -> int:
    """The audit line of one HTTP message (the only place HTTP audit lines are written); -> its number
    (``AuditLog.durable``). Raises ``OSError`` if it could not be written."""
    return audit.record(
        direction=direction,
        peer=peer,
        protocol=protocol,
        session=what.session,
        message=what.message + " request" if request else what.message,
        nbytes=nbytes,
        records=records,
    )

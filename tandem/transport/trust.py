"""Whom a node trusts: its own certificate and key, and per peer the CA (and optionally the one
certificate) that peer's node must present.

Each organisation runs its own CA; a node trusts, for each peer, that peer's CA certificate
(``[peers.NAME] ca``), falling back to ``[tls] ca`` (one CA for every peer, the older layout).
``[peers.NAME] pin`` (``sha256:HEX``) further pins the peer's node certificate. A certificate
signed by a CA that is trusted for *another* peer does not pass for this one: the server checks
the issuer of every caller against the caller's own CA (``PeerTrust``).

Files are re-read when they change (``TlsFiles.stamp``), so a rotated certificate or a new partner
CA takes effect for new connections without a restart; connections already open carry on.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tandem.crypto import tls as certs
from tandem.transport.base import TransportError

EXPIRY_WARN_DAYS = 30


@dataclass(frozen=True)
class TlsFiles:
    """``ca``: the CA trusted for peers without their own (``None``: every peer has one); ``cert``/``key``:
    this node's certificate and key; ``peer_cas``: peer -> the CA trusted for it; ``pins``: peer ->
    the ``sha256:`` fingerprint its node certificate must have."""

    ca: Path | None
    cert: Path
    key: Path
    peer_cas: Mapping[str, Path] = field(default_factory=dict)
    pins: Mapping[str, str] = field(default_factory=dict)

    def ca_for(self, peer: str) -> Path:
        path = self.peer_cas.get(peer) or self.ca
        if path is None:
            raise TransportError(f"no CA is trusted for peer {peer}: set [peers.{peer}] ca")
        return path

    def trusted(self) -> list[Path]:
        """Every CA file this node trusts, each once."""
        return list(dict.fromkeys([*([self.ca] if self.ca else []), *self.peer_cas.values()]))

    def _bytes(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TransportError(f"{path}: cannot read TLS file ({exc.strerror})") from None

    def own(self) -> tuple[bytes, bytes]:
        """This node's certificate chain and key (PEM); ``TransportError`` if the key is not the certificate's
        (e.g. read half-way through a renewal: the caller keeps what it had and looks again later)."""
        cert, key = self._bytes(self.cert), self._bytes(self.key)
        if not certs.key_matches(cert, key):
            raise TransportError(f"{self.key}: this key does not belong to the certificate {self.cert}")
        return cert, key

    def bundle(self) -> bytes:
        """Every trusted CA, concatenated (PEM): what a listener accepts at the handshake."""
        return b"".join(self._bytes(p).rstrip(b"\n") + b"\n" for p in self.trusted())

    def read_for(self, peer: str) -> tuple[bytes, bytes, bytes]:
        """(the CA trusted for ``peer``, our certificate, our key), PEM."""
        return (self._bytes(self.ca_for(peer)), *self.own())

    def stamp(self) -> tuple:
        """Changes whenever one of the files does (path, modification time, size)."""
        out: list[tuple[str, int | None, int | None]] = []
        for path in (self.cert, self.key, *self.trusted()):
            try:
                st = path.stat()
                out.append((str(path), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(path), None, None))
        return tuple(out)

    def expiry_warnings(self, days: float = EXPIRY_WARN_DAYS) -> list[str]:
        """One line per certificate (ours, each trusted CA) that expires within ``days`` or has expired."""
        lines = []
        for what, path in [("this node's certificate", self.cert)] + [
            (f"the CA trusted for {', '.join(self._peers_of(p)) or 'peers'}", p) for p in self.trusted()
        ]:
            try:
                left = max(certs.days_left(c) for c in certs.load_certificates(path))
            except certs.CertificateError as exc:
                lines.append(str(exc))
                continue
            if left < 0:
                lines.append(f"{what} ({path}) expired {-left:.0f} days ago")
            elif left < days:
                lines.append(f"{what} ({path}) expires in {left:.0f} days: renew it (tandem certs node / init)")
        return lines

    def _peers_of(self, ca: Path) -> list[str]:
        own = [p for p, c in self.peer_cas.items() if c == ca]
        return own or (["peers without their own"] if ca == self.ca else [])


class PeerTrust:
    """The server side's check after the handshake: a caller named ``peer`` must present a certificate
    signed by the CA trusted for ``peer`` (and, if pinned, exactly the pinned certificate)."""

    def __init__(self, files: TlsFiles):
        self.files = files
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._cas: dict[Path, list] = {}
        self._verdicts: dict[tuple[str, bytes], str | None] = {}

    def refusal(self, peer: str, pem: bytes) -> str | None:
        """``None`` if ``pem`` (the caller's certificate) may speak for ``peer``, else one line why not."""
        with self._lock:
            stamp = self.files.stamp()
            if stamp != self._stamp:  # rotated files: forget what was checked against the old ones
                self._stamp, self._cas, self._verdicts = stamp, {}, {}
            key = (peer, hashlib.sha256(pem).digest())
            if key not in self._verdicts:
                self._verdicts[key] = self._check(peer, pem)
            return self._verdicts[key]

    def _check(self, peer: str, pem: bytes) -> str | None:
        path = self.files.ca_for(peer)
        try:
            cas = self._cas.get(path) or self._cas.setdefault(path, certs.load_certificates(path))
            cert = certs.x509.load_pem_x509_certificate(pem)
        except (certs.CertificateError, ValueError) as exc:
            return f"cannot check peer {peer}'s certificate ({exc})"
        if not any(certs.issued_by(cert, ca) for ca in cas):
            return (
                f"peer {peer} presented a certificate issued by '{cert.issuer.rfc4514_string()}', "
                f"not by the CA this node trusts for {peer} ({path})"
            )
        pin = self.files.pins.get(peer)
        if pin and certs.fingerprint(cert) != pin:
            return f"peer {peer} presented certificate {certs.fingerprint(cert)}, not the one pinned for it ({pin})"
        return None


def diagnose_server(peer: str, address: str, files: TlsFiles, timeout_s: float = 5.0) -> str | None:
    """Why a TLS connection to ``peer`` at ``address`` failed, if it is its certificate: connect without
    verifying, read the certificate the peer presents and check it against the CA trusted for it.
    ``None`` when the certificate is fine or cannot be fetched (then the cause is elsewhere)."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=peer) as conn:
                der = conn.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    if not der:
        return None
    cert = certs.x509.load_der_x509_certificate(der)
    path = files.ca_for(peer)
    try:
        cas = certs.load_certificates(path)
    except certs.CertificateError as exc:
        return str(exc)
    if not any(certs.issued_by(cert, ca) for ca in cas):
        return (
            f"peer {peer} at {address} presented a certificate issued by '{cert.issuer.rfc4514_string()}', "
            f"which is not the CA this node trusts for {peer} ({path}); ask {peer}'s operators for their CA "
            f"(tandem certs export) and trust it (tandem certs trust FILE --peer {peer})"
        )
    return None

"""One organisation's certificate folder: its own CA, its nodes' certificates and the CAs of the
partners it trusts. Only certificates ever leave the folder; the keys stay with the organisation.

    DIR/ca.pem, DIR/ca.key       the organisation's CA (``init``)
    DIR/NODE.pem, DIR/NODE.key   a node's certificate, signed by that CA (``init``, ``issue_node``)
    DIR/peers/PEER.pem           the CA certificate a partner exported, trusted for node PEER (``trust``)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tandem.atomic import write_atomically
from tandem.crypto import tls
from tandem.errors import InputError


def ca_files(folder: Path) -> tuple[Path, Path]:
    return folder / "ca.pem", folder / "ca.key"


def peer_ca(folder: Path, peer: str) -> Path:
    return folder / "peers" / f"{peer}.pem"


def init(folder: Path, org: str, node: str, days: float = tls.VALID_DAYS, hosts: tuple[str, ...] = ()) -> Path:
    """Make ``org``'s CA in ``folder`` (refused if one is there) and ``node``'s certificate; -> the CA file."""
    ca, key = ca_files(folder)
    if key.exists() or ca.exists():
        raise InputError(f"{folder}: already holds a CA ({ca}); issue node certificates from it with tandem certs node")
    try:
        tls.make_ca(folder, f"{org} CA", org, days)
        tls.make_node_cert(folder, node, ca, key, days, hosts)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write certificates ({exc.strerror})") from None
    return ca


def issue_node(folder: Path, node: str, days: float = tls.VALID_DAYS, hosts: tuple[str, ...] = ()) -> Path:
    """A new certificate for ``node`` from the CA in ``folder`` (a renewal replaces the old files in place,
    which running nodes pick up for their next connection); -> the certificate file."""
    ca, key = ca_files(folder)
    if not key.exists():
        raise InputError(f"{folder}: no CA here (make one with tandem certs init --org NAME)")
    try:
        return tls.make_node_cert(folder, node, ca, key, days, hosts)[0]
    except OSError as exc:
        raise InputError(f"{folder}: cannot write certificates ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(str(exc)) from None


def export(folder: Path, to: Path) -> str:
    """Copy the organisation's CA certificate (never its key) to ``to``; -> its fingerprint."""
    ca, _ = ca_files(folder)
    cert = _load(ca)
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca, to)
    except OSError as exc:
        raise InputError(f"{to}: cannot write ({exc.strerror})") from None
    return tls.fingerprint(cert)


def trust(folder: Path, peer: str, ca_file: Path, add: bool = False) -> tuple[Path, str]:
    """Trust ``ca_file`` (a partner's exported CA certificate) for node ``peer``; -> where it is kept and
    its fingerprint. ``add``: keep trusting the CA(s) already there too (while the partner rolls its CA
    over), else replace them. Refused: a file that is not a CA certificate, one that has expired, our own CA."""
    cert = _load(ca_file)
    if not tls.is_ca(cert):
        raise InputError(f"{ca_file}: not a CA certificate (the partner exports theirs with tandem certs export)")
    if tls.days_left(cert) < 0:
        raise InputError(f"{ca_file}: the CA certificate of {peer} has expired; ask {peer} for a current one")
    own = ca_files(folder)[0]
    if own.exists() and tls.fingerprint(_load(own)) == tls.fingerprint(cert):
        raise InputError(f"{ca_file}: is this organisation's own CA, not {peer}'s")
    kept = peer_ca(folder, peer)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if add and kept.exists():
        old = [c for c in _load_all(kept) if tls.fingerprint(c) != tls.fingerprint(cert)]
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in old) + pem
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(kept, pem, mode=0o644)  # a node watching the file sees the old one or the new one
    except OSError as exc:
        raise InputError(f"{kept}: cannot write ({exc.strerror})") from None
    return kept, tls.fingerprint(cert)


def _load(path: Path):
    try:
        return tls.load_certificate(path)
    except tls.CertificateError as exc:
        raise InputError(str(exc)) from None


def _load_all(path: Path):
    try:
        return tls.load_certificates(path)
    except tls.CertificateError as exc:
        raise InputError(str(exc)) from None

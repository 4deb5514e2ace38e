"""Certificate authorities and node certificates for mutual TLS, and reading certificates.

Each organisation has its own CA (``make_ca`` with its name) and signs its own nodes' certificates
with it (``make_node_cert``); only CA certificates travel between organisations. ECDSA P-256
keys, SHA-256 signatures. Node certificates carry the node name as CN and as a DNS name, plus
``localhost`` and ``127.0.0.1``, so loopback tests verify hostnames; ``hosts`` adds the names and
addresses a peer reaches the node by. An organisation's existing PKI works the same way if its
node certificates have this layout.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tandem.atomic import write_atomically

VALID_DAYS = 365


DEV_ORG = "Tandem development"


def _name(cn: str, org: str = DEV_ORG) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    write_atomically(path, data, mode=0o600 if private else 0o644)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(
    folder: str | os.PathLike, name: str = "Tandem development CA", org: str = DEV_ORG, days: float = VALID_DAYS
) -> tuple[Path, Path]:
    """Write ``ca.pem`` and ``ca.key`` (an organisation's CA, valid ``days``) into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name, org))
        .issuer_name(_name(name, org))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # key identifiers: a partner's old and new CA may share a name while it rolls over
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(folder / "ca.key", _key_pem(key), private=True)
    _write(folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    return folder / "ca.pem", folder / "ca.key"


def make_node_cert(
    folder: str | os.PathLike,
    node: str,
    ca_cert: str | os.PathLike,
    ca_key: str | os.PathLike,
    days: float = VALID_DAYS,
    hosts: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """Write ``NODE.pem`` and ``NODE.key`` signed by the CA (valid ``days``, in the CA's organisation);
    usable as TLS server and client. ``hosts``: more DNS names or IP addresses for the certificate."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca = x509.load_pem_x509_certificate(Path(ca_cert).read_bytes())
    ca_private = serialization.load_pem_private_key(Path(ca_key).read_bytes(), password=None)
    if not isinstance(ca_private, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key}: the CA key must be an EC key (tandem certs makes one)")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(node), x509.DNSName("localhost")]
    for host in ("127.0.0.1", *hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    san = x509.SubjectAlternativeName(list(dict.fromkeys(names)))
    orgs = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(node, str(orgs[0].value) if orgs else DEV_ORG))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_private.public_key()), critical=False)
        .add_extension(san, critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_private, hashes.SHA256())
    )
    _write(folder / f"{node}.key", _key_pem(key), private=True)
    _write(folder / f"{node}.pem", cert.public_bytes(serialization.Encoding.PEM))
    return folder / f"{node}.pem", folder / f"{node}.key"


# --- reading certificates -------------------------------------------------------------------------


class CertificateError(ValueError):
    """A certificate file that cannot be used, with one line saying why."""


def load_certificate(path: str | os.PathLike) -> x509.Certificate:
    """The first certificate in the PEM file ``path``; ``CertificateError`` if it cannot be read."""
    return load_certificates(path)[0]


def load_certificates(path: str | os.PathLike) -> list[x509.Certificate]:
    """Every certificate in the PEM file ``path`` (a trust file may hold a partner's old and new CA while
    it rolls over); ``CertificateError`` if there is none or it cannot be read."""
    try:
        found = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read the certificate ({exc.strerror})") from None
    except ValueError:
        raise CertificateError(f"{path}: not a PEM certificate") from None
    return found


def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:`` and the hex SHA-256 of the DER certificate: what two operators compare by phone."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (the issuer name and the signature both check)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def subject(cert: x509.Certificate) -> str:
    """The certificate's subject as one short string (``CN=bank CA,O=Bank``)."""
    return cert.subject.rfc4514_string()


def days_left(cert: x509.Certificate, now: datetime.datetime | None = None) -> float:
    """Days until ``cert`` expires (negative once it has)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def key_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the private key ``key_pem`` belongs to the certificate ``cert_pem`` (a pair caught half-way
    through being replaced does not)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    return cert.public_key().public_bytes(pem, raw) == key.public_key().public_bytes(pem, raw)


def names(cert: x509.Certificate) -> set[str]:
    """The certificate's common name and DNS names."""
    found = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found |= set(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return found

"""``tandem doctor``: checks of a node's own setup and of its path to each peer, each a row with what to fix.

Own setup: the certificate and key (readable, a pair, names, expiry), each trusted CA (a CA, expiry),
the store (opens, has the party's tables), the state folder (writable). Per peer, over the node's own
mutual-TLS transport with its own certificate: whether the peer answers and accepts us, the round-trip
time (median of ``PINGS`` small probes), the peer's clock against ours, its protocol versions against
ours, and the bandwidth each way (``TRANSFER_BYTES`` up, then down). The probes are audited on both
sides: here in ``STATE_DIR/doctor-audit.jsonl`` (the running node keeps its own log), there in the
peer's audit log (protocol ``doctor``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from tandem.audit import AuditLog
from tandem.crypto import tls as certs
from tandem.node_config import NodeConfig
from tandem.protocol_versions import protocol_versions
from tandem.transport.base import TransportError
from tandem.transport.grpc_node import PeerClient
from tandem.transport.trust import EXPIRY_WARN_DAYS

PINGS = 5
TRANSFER_BYTES = 2 * 1024 * 1024
MAX_SKEW_S = 5.0  # clocks further apart than this: audit times and certificate checks disagree


@dataclass
class Check:
    """One row: what was checked, ``ok`` / ``warn`` / ``fail``, what was found, what to do (if not ok)."""

    what: str
    status: str
    found: str
    fix: str = ""


def _cert_checks(config: NodeConfig) -> list[Check]:
    files, out = config.tls, []
    try:
        cert_pem, key_pem = files.cert.read_bytes(), files.key.read_bytes()
        cert = certs.load_certificate(files.cert)
    except (OSError, certs.CertificateError) as exc:
        return [Check("certificate", "fail", str(exc), "point [tls] cert and key at this node's files")]
    if not certs.key_matches(cert_pem, key_pem):
        out.append(Check("certificate", "fail", f"{files.key} is not the key of {files.cert}", "use the pair"))
    names = certs.names(cert)
    if config.name not in names:
        out.append(
            Check(
                "certificate names",
                "fail",
                f"{config.name} not among {', '.join(sorted(names))}",
                f"issue one for this node: tandem certs node {config.name} --out FOLDER",
            )
        )
    out.append(_expiry("certificate", cert, files.cert))
    for peer in config.peers:
        path = files.ca_for(peer)
        try:
            cas = certs.load_certificates(path)
        except certs.CertificateError as exc:
            out.append(Check(f"CA for {peer}", "fail", str(exc), f"tandem certs trust FILE --peer {peer}"))
            continue
        if not all(certs.is_ca(c) for c in cas):
            out.append(Check(f"CA for {peer}", "fail", f"{path} holds a certificate that is not a CA", "trust the CA"))
        else:
            out.append(_expiry(f"CA for {peer}", max(cas, key=certs.days_left), path))
    return out


def _expiry(what: str, cert, path) -> Check:
    left = certs.days_left(cert)
    found = f"{path}: valid until {cert.not_valid_after_utc:%Y-%m-%d} ({left:.0f} days)"
    if left < 0:
        return Check(what, "fail", f"{path}: expired", "renew it (tandem certs node / init)")
    if left < EXPIRY_WARN_DAYS:
        return Check(what, "warn", found, "renew it within the month (tandem certs node / init)")
    return Check(what, "ok", found)


def _store_checks(config: NodeConfig) -> list[Check]:
    from tandem.store import open_store
    from tandem.store.base import check_schema
    from tandem.store.party_schema import TABLES

    out = []
    try:
        store = open_store(config.store, read_only="://" not in config.store)
        try:
            check_schema(store, TABLES[config.preset])
        finally:
            store.close()
        out.append(Check("store", "ok", f"{config.store}: every {config.preset} table is there"))
    except Exception as exc:  # noqa: BLE001 - any failure to open or check is the finding
        out.append(Check("store", "fail", str(exc).splitlines()[0], "tandem store check STORE --party PARTY"))
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        probe = config.state_dir / ".doctor-probe"
        probe.write_bytes(b"")
        probe.unlink()
        out.append(Check("state folder", "ok", f"{config.state_dir}: writable"))
    except OSError as exc:
        out.append(Check("state folder", "fail", f"{config.state_dir}: {exc.strerror}", "make it writable"))
    return out


def _peer_checks(config: NodeConfig, peer: str, audit: AuditLog, timeout_s: float) -> list[Check]:
    where = f"{peer} at {config.peers[peer]}"
    try:
        client = PeerClient(peer, config.peers[peer], config.tls)
    except TransportError as exc:
        return [Check(f"{peer}: reach", "fail", str(exc), "fix the files named")]
    try:
        samples = []
        for _ in range(PINGS):
            sent = time.time()
            info, seconds = _probe(client, audit, peer, 0, 0, timeout_s)
            samples.append((seconds, info.get("time", 0.0) - (sent + seconds / 2)))
        rtt, skew = min(samples)  # the fastest round trip bounds the clock offset best
        out = [Check(f"{peer}: reach", "ok", f"{where} accepts this node's certificate")]
        out.append(Check(f"{peer}: round trip", "ok", f"{statistics.median(s for s, _ in samples) * 1000:.1f} ms"))
        drift = abs(skew) > MAX_SKEW_S
        clock = f"{skew:+.2f} s against ours"
        out.append(Check(f"{peer}: clock", "warn" if drift else "ok", clock, "run NTP on both hosts" if drift else ""))
        out.append(_versions(peer, info.get("protocols")))
        _, up = _probe(client, audit, peer, TRANSFER_BYTES, 0, timeout_s)
        _, down = _probe(client, audit, peer, 0, TRANSFER_BYTES, timeout_s)
        rates = [TRANSFER_BYTES * 8 / max(s - rtt, 1e-6) / 1e6 for s in (up, down)]
        out.append(Check(f"{peer}: bandwidth", "ok", f"{rates[0]:,.0f} Mbit/s up, {rates[1]:,.0f} Mbit/s down"))
        return out
    except TransportError as exc:
        return [Check(f"{peer}: reach", "fail", str(exc), f"check {peer}'s address, firewall and certificates")]
    finally:
        client.close()


def _probe(client: PeerClient, audit: AuditLog, peer: str, up: int, down: int, timeout_s: float):
    audit.record(direction="out", peer=peer, protocol="doctor", session="", message="Probe", nbytes=up + 8, records=0)
    info, answered, seconds = client.probe(up, down, timeout_s)
    audit.record(
        direction="in",
        peer=peer,
        protocol="doctor",
        session="",
        message="Probe answer",
        nbytes=answered,
        records=0,
    )
    return info, seconds


def _versions(peer: str, theirs: object) -> Check:
    ours = protocol_versions()
    if not isinstance(theirs, dict):
        return Check(f"{peer}: protocols", "warn", "the peer does not say (an older Tandem)", "upgrade it")
    differ = [f"{job} {v} here, {theirs.get(job, 'none')} there" for job, v in ours.items() if theirs.get(job) != v]
    if differ:
        return Check(f"{peer}: protocols", "fail", "; ".join(differ), "run the same Tandem release on both sides")
    return Check(f"{peer}: protocols", "ok", ", ".join(f"{k} {v}" for k, v in ours.items()))


def diagnose(config: NodeConfig, peers: list[str] | None = None, timeout_s: float = 10.0) -> list[Check]:
    """Every check for ``config``'s node and for each of ``peers`` (default: all its peers)."""
    out = _cert_checks(config) + _store_checks(config)
    if any(c.what == "state folder" and c.status == "fail" for c in out):
        return out
    audit = AuditLog(config.state_dir / "doctor-audit.jsonl", config.name)
    try:
        for peer in peers or list(config.peers):
            out += _peer_checks(config, peer, audit, timeout_s)
    finally:
        audit.close()
    return out


def exit_code(checks: list[Check]) -> int:
    """1 if any check failed, else 0 (warnings do not fail)."""
    return 1 if any(c.status == "fail" for c in checks) else 0

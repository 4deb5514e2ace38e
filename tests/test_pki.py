"""Each organisation's own CA: the certificate exchange, trust per peer, impersonation, rotation, expiry."""

import ssl
import time

import pytest
from cryptography import x509

from helpers import one_error_line, run_cli
from tandem.crypto import pki, tls
from tandem.transport.base import TransportError
from tandem.transport.grpc_node import Inboxes, NodeServer, PeerClient
from tandem.transport.trust import TlsFiles


def _orgs(root, *names):
    """An organisation per name, each with its own CA and a node of that name, each trusting every other."""
    folders = {n: root / n for n in names}
    for n, folder in folders.items():
        pki.init(folder, n.capitalize(), n)
    for n, folder in folders.items():
        for other in names:
            if other != n:
                pki.trust(folder, other, folders[other] / "ca.pem")
    return folders


def _files(folder, node, peers, pins=None):
    return TlsFiles(None, folder / f"{node}.pem", folder / f"{node}.key",
                    {p: pki.peer_ca(folder, p) for p in peers}, pins or {})


@pytest.fixture
def bank_server(tmp_path):
    """The bank's gRPC listener, trusting the market's and the telco's CAs, each for its own node."""
    orgs = _orgs(tmp_path, "bank", "market", "telco")
    refused = []
    server = NodeServer("bank", "127.0.0.1:0", _files(orgs["bank"], "bank", ["market", "telco"]),
                        {"market", "telco"}, Inboxes(None), on_refuse=lambda *a: refused.append(a[-1]))
    server.start()
    yield orgs, f"127.0.0.1:{server.port}", refused, server
    server.stop(0)


def _served_serial(address, orgs):
    """The serial number of the certificate the bank's listener presents now (a fresh handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(str(orgs["market"] / "market.pem"), str(orgs["market"] / "market.key"))
    host, port = address.split(":")
    import socket

    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as conn:
        return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number


def test_the_certificate_exchange_between_two_organisations_from_the_command_line(tmp_path):
    bank, market = tmp_path / "bank", tmp_path / "market"
    for org, folder in (("Bank", bank), ("Market", market)):
        out = run_cli("certs", "init", "--org", org, "--out", str(folder), "--host", "node.example", check=True).stdout
        assert "fingerprint sha256:" in out
        assert not (folder / "peers").exists()
    run_cli("certs", "export", "--out", str(market), "--to", str(tmp_path / "market-ca.pem"), check=True)
    assert b"PRIVATE KEY" not in (tmp_path / "market-ca.pem").read_bytes()
    out = run_cli("certs", "trust", str(tmp_path / "market-ca.pem"), "--peer", "market", "--out", str(bank),
                  check=True).stdout
    fp = tls.fingerprint(tls.load_certificate(market / "ca.pem"))
    assert fp in out and "[peers.market]" in out
    assert tls.fingerprint(tls.load_certificate(bank / "peers" / "market.pem")) == fp
    node = tls.load_certificate(bank / "bank.pem")
    assert tls.issued_by(node, tls.load_certificate(bank / "ca.pem"))
    assert "O=Bank" in tls.subject(node)
    names = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "node.example" in names.get_values_for_type(x509.DNSName)
    assert fp in run_cli("certs", "show", str(bank / "peers" / "market.pem"), check=True).stdout
    # refused, one line each: a second CA over the first, a node certificate as a CA, our own CA as a partner's
    one_error_line(run_cli("certs", "init", "--org", "Bank", "--out", str(bank)).stderr, "already holds a CA")
    one_error_line(run_cli("certs", "trust", str(market / "market.pem"), "--peer", "market", "--out",
                           str(bank)).stderr, "not a CA certificate")
    one_error_line(run_cli("certs", "trust", str(bank / "ca.pem"), "--peer", "market", "--out", str(bank)).stderr,
                   "this organisation's own CA")


def test_a_certificate_from_a_ca_trusted_for_another_peer_does_not_pass_for_this_one(bank_server):
    orgs, address, refused, _ = bank_server
    PeerClient("bank", address, _files(orgs["market"], "market", ["bank"])).ping(5)   # the real market
    forged = orgs["telco"].parent / "forged"   # the telco's CA signs a certificate that says "market"
    tls.make_node_cert(forged, "market", orgs["telco"] / "ca.pem", orgs["telco"] / "ca.key")
    liar = PeerClient("bank", address, TlsFiles(None, forged / "market.pem", forged / "market.key",
                                                 {"bank": pki.peer_ca(orgs["telco"], "bank")}))
    with pytest.raises(TransportError, match="peer market presented a certificate issued by 'CN=Telco CA"):
        liar.ping(5)
    assert len(refused) == 1 and "not by the CA this node trusts for market" in refused[0]


def test_a_pinned_peer_must_present_exactly_its_certificate(tmp_path):
    orgs = _orgs(tmp_path, "bank", "market")
    pin = tls.fingerprint(tls.load_certificate(orgs["market"] / "market.pem"))
    server = NodeServer("bank", "127.0.0.1:0", _files(orgs["bank"], "bank", ["market"], {"market": pin}), {"market"},
                        Inboxes(None))
    server.start()
    try:
        address = f"127.0.0.1:{server.port}"
        PeerClient("bank", address, _files(orgs["market"], "market", ["bank"])).ping(5)
        pki.issue_node(orgs["market"], "market")   # same CA, another certificate: not the pinned one
        with pytest.raises(TransportError, match="not the one pinned for it"):
            PeerClient("bank", address, _files(orgs["market"], "market", ["bank"])).ping(5)
    finally:
        server.stop(0)


def test_a_renewed_certificate_and_a_rolled_over_partner_ca_load_without_a_restart(bank_server):
    orgs, address, _, server = bank_server
    market = PeerClient("bank", address, _files(orgs["market"], "market", ["bank"]))
    market.ping(5)
    before = _served_serial(address, orgs)
    pki.issue_node(orgs["bank"], "bank")                     # the bank renews its node certificate
    assert _served_serial(address, orgs) != before          # the next handshake presents the new one
    market.ping(5)                                           # the open connection carried on
    # the market rolls its CA over: the bank trusts the old and the new CA while it does
    new = orgs["market"].parent / "market-new"
    pki.init(new, "Market", "market")
    pki.trust(new, "bank", orgs["bank"] / "ca.pem")
    pki.trust(orgs["bank"], "market", new / "ca.pem", add=True)
    PeerClient("bank", address, _files(new, "market", ["bank"])).ping(5)
    market.ping(5)
    pki.trust(orgs["bank"], "market", new / "ca.pem")         # the roll-over is done: the old CA goes
    with pytest.raises(TransportError, match="not by the CA this node trusts for market"):
        market.ping(5)


def test_the_client_picks_up_a_renewed_certificate_for_its_next_connection(bank_server):
    orgs, address, _, _ = bank_server
    files = _files(orgs["market"], "market", ["bank"])
    client = PeerClient("bank", address, files)
    client.ping(5)
    pki.issue_node(orgs["market"], "market")
    time.sleep(PeerClient.RECHECK_S + 0.1)
    client.ping(5)
    assert len(client._retired) == 1   # a new channel, with the new certificate


def test_certificates_near_expiry_are_named(tmp_path):
    folder = tmp_path / "bank"
    tls.make_ca(folder, "Bank CA", "Bank", days=400)
    tls.make_node_cert(folder, "bank", folder / "ca.pem", folder / "ca.key", days=10)
    partner = tmp_path / "market"
    tls.make_ca(partner, "Market CA", "Market", days=20)
    pki.trust(folder, "market", partner / "ca.pem")
    lines = _files(folder, "bank", ["market"]).expiry_warnings()
    assert len(lines) == 2
    assert "this node's certificate" in lines[0] and "expires in 10 days" in lines[0]
    assert "the CA trusted for market" in lines[1] and "expires in 20 days" in lines[1]
    assert _files(folder, "bank", ["market"]).expiry_warnings(days=5) == []


def test_a_peer_without_a_trusted_ca_is_a_config_error(tmp_path):
    from tandem.errors import InputError
    from tandem.node_config import load_node_config

    config = tmp_path / "bank.toml"
    config.write_text('[node]\nname = "bank"\nlisten = "127.0.0.1:0"\nstore = "b.duckdb"\n'
                      '[tls]\ncert = "b.pem"\nkey = "b.key"\n[peers.market]\naddress = "127.0.0.1:1"\n')
    with pytest.raises(InputError, match=r"\[peers.market\] has no ca and there is no \[tls\] ca"):
        load_node_config(config)
    config.write_text(config.read_text() + 'ca = "m.pem"\npin = "md5:00"\n')
    with pytest.raises(InputError, match="pin must be sha256"):
        load_node_config(config)


def test_timeouts_and_keepalives_are_set_per_peer(tmp_path):
    """``[peers.NAME] timeout_s`` / ``keepalive_s`` override the node's for that peer's sessions: a session
    with a silent peer gives up after the peer's own timeout."""
    from tandem.errors import InputError
    from tandem.node_config import load_node_config
    from tandem.transport.grpc_node import GrpcChannel

    orgs = _orgs(tmp_path, "bank", "market")
    base = (f'[node]\nname = "bank"\nlisten = "127.0.0.1:0"\nstore = "b.duckdb"\ntimeout_s = 60\n'
            f'[tls]\ncert = "{orgs["bank"]}/bank.pem"\nkey = "{orgs["bank"]}/bank.key"\n'
            f'[peers.market]\naddress = "127.0.0.1:1"\nca = "{pki.peer_ca(orgs["bank"], "market")}"\n')
    config = tmp_path / "bank.toml"
    config.write_text(base + "timeout_s = 2\nkeepalive_s = 0.5\n")
    cfg = load_node_config(config)
    assert (cfg.timeout_for("market"), cfg.keepalive_for("market"), cfg.timeout_for("telco")) == (2, 0.5, 60)
    config.write_text(base + "timeout_s = 0\n")
    with pytest.raises(InputError, match=r"\[peers.market\] timeout_s must be a number of seconds > 0"):
        load_node_config(config)
    # a live peer that says nothing in the session: the wait ends after the peer's timeout, not the node's
    server = NodeServer("market", "127.0.0.1:0", _files(orgs["market"], "market", ["bank"]), {"bank"}, Inboxes(None))
    server.start()
    try:
        client = PeerClient("market", f"127.0.0.1:{server.port}", _files(orgs["bank"], "bank", ["market"]))
        channel = GrpcChannel(client, Inboxes(None), "s" * 32, cfg.timeout_for("market"), cfg.keepalive_for("market"))
        began = time.monotonic()
        with pytest.raises(TransportError, match="peer market sent nothing for 2 s"):
            channel.recv(cfg.timeout_for("market"))
        assert 1.9 < time.monotonic() - began < 5
    finally:
        server.stop(0)

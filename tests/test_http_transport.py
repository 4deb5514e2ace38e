"""transport/http: each node's mutual-TLS peer listener answers only the configured peer (by its
certificate's name), and every request and answer that crosses it, or that the peer client sends
and receives, is exactly one audit line naming the real peer.

The real decision and offer apps run behind the real listeners (``HttpServers``), on stub state
(no models loaded), so each endpoint answers quickly: a decision 409 (version not loaded), health 200, reload 403
(the admin routes never answer the peer), offer content 200 for one known client."""

import asyncio
import ssl
import threading
from types import SimpleNamespace

import httpx
import pytest

from tandem.audit import AuditLog, read_audit
from tandem.crypto.tls import make_ca, make_node_cert
from tandem.transport.trust import TlsFiles
from tandem.decide.api import MESSAGES, PROTOCOL, bank_app, market_app
from tandem.offers.quota import ContentQuota
from tandem.offers.service import OFFER_MESSAGES, market_router
from tandem.transport.http_client import BlockingPeerHttpClient, PeerUnavailable
from tandem.transport.http_server import HttpServers
from tandem.transport.ports import free_port

LINK = "ab" * 16
VERSION = "cd" * 8
DECISION = {"request_id": "req-000001", "link_id": LINK, "model_version": VERSION, "marketplace_bits": ""}
ENDPOINTS = {       # node -> (method, path, body, status and audit name when the right peer calls)
    "bank": [("POST", "/v1/checkout/installments", {**DECISION, "order": {"amount": 100.0, "currency": "RUB"}},
              409, "customers decision"),
             ("POST", "/v1/sellers/credit-line", {**DECISION, "forecast_gmv": 1000.0}, 409, "sellers decision"),
             ("GET", "/v1/health", None, 200, "/v1/health"),
             ("POST", "/v1/admin/reload", None, 403, "/v1/admin/reload")],
    "market": [("POST", "/v1/bits", {"kind": "customers", "model_version": VERSION, "link_ids": [LINK]}, 409, "bits"),
               ("POST", "/v1/offers/bits", {"model_versions": [VERSION], "link_ids": [LINK]}, 409, "offer bits"),
               ("POST", "/v1/offers/content", {"product": "cashback_card", "link_ids": [LINK, "ef" * 16]}, 200,
                "offer content cashback_card"),
               ("GET", "/v1/health", None, 200, "/v1/health"),
               ("POST", "/v1/admin/reload", None, 403, "/v1/admin/reload")],
}
OTHER = {"bank": "market", "market": "bank"}


class _State:
    """A decision service's state with no model loaded."""

    models: dict = {}
    current: dict = {}
    tables: dict = {}
    counters: dict = {}
    link_versions: dict = {}

    def model(self, entity, version=None):
        return None

    def reload(self) -> dict:
        return {}

    def refresh(self) -> None:
        pass


class _Ledger:
    async def record(self, request_id, request_hash, decide):
        return decide(), False


def _files(certs, name):
    return TlsFiles(certs / "ca.pem", certs / f"{name}.pem", certs / f"{name}.key")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    certs = root / "certs"
    ca, ca_key = make_ca(certs)
    for name in ("bank", "market", "intruder"):            # the intruder: our CA, the wrong name
        make_node_cert(certs, name, ca, ca_key)
    state = _State()
    side = SimpleNamespace(scorers={}, features=SimpleNamespace(index={}),
                           content={"cashback_card": {LINK: ["travel", "books", "pets"]}})
    market = market_app(state, None, "mtls")
    market.include_router(market_router(SimpleNamespace(side=side), state, ContentQuota("bank", 0)))
    apps = {"bank": bank_app(state, _Ledger(), {}, "mtls"), "market": market}
    out = {"certs": certs, "audit": {}, "address": {}}
    running = []
    for name, app in apps.items():
        address = f"127.0.0.1:{free_port()}"
        audit = AuditLog(root / f"{name}-audit.jsonl", name)
        servers = HttpServers([(address, app, True)], _files(certs, name), peer=OTHER[name], audit=audit,
                              messages={**MESSAGES, **OFFER_MESSAGES}, protocol=PROTOCOL, where=f"{name}.toml")
        ready = threading.Event()
        thread = threading.Thread(target=asyncio.run, args=(servers.serve(ready.set),), daemon=True)
        thread.start()
        assert ready.wait(30), f"the {name} listener did not start within 30 s"
        running.append((servers, thread))
        out["address"][name], out["audit"][name] = address, audit.path
    yield out
    for servers, thread in running:
        servers.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()


def _client(certs, name: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.check_hostname = False
    context.load_cert_chain(str(certs / f"{name}.pem"), str(certs / f"{name}.key"))
    return httpx.Client(verify=context, timeout=10)


def _new_lines(path, before: int) -> list[dict]:
    entries, torn = read_audit(path)
    assert torn == 0
    return entries[before:]


def _count(path) -> int:
    return len(read_audit(path)[0]) if path.exists() else 0


CASES = [(node, *endpoint) for node, endpoints in ENDPOINTS.items() for endpoint in endpoints]


@pytest.mark.parametrize("node, method, path, body, status, message", CASES,
                         ids=[f"{c[0]}{c[2]}" for c in CASES])
def test_each_peer_endpoint_answers_the_peer_and_refuses_a_wrong_name_each_call_audited_once(
        nodes, node, method, path, body, status, message):
    url, log = f"https://{nodes['address'][node]}{path}", nodes["audit"][node]
    seen = {}
    for caller, expected in ((OTHER[node], status), ("intruder", 403)):
        before = _count(log)
        with _client(nodes["certs"], caller) as c:
            reply = c.request(method, url, json=body)
        assert reply.status_code == expected, reply.text
        lines = seen[caller] = _new_lines(log, before)
        assert [(e["direction"], e["peer"], e["message"]) for e in lines] == [
            ("in", caller, message + " request"), ("out", caller, message)]
        assert all(e["node"] == node and e["protocol"] == PROTOCOL for e in lines)
        assert lines[1]["bytes"] == len(reply.content)
        if caller == "intruder":
            assert reply.json() == {"detail": f"this listener answers only the node {OTHER[node]}"}
            assert lines[1]["records"] == 0
    if path == "/v1/offers/content":          # rows asked for, and rows answered
        assert [e["records"] for e in seen[OTHER[node]]] == [2, 1]


def test_the_peer_client_audits_what_it_sends_and_receives_and_the_listener_audits_the_same(nodes, tmp_path):
    certs, log = nodes["certs"], nodes["audit"]["market"]
    mine = AuditLog(tmp_path / "bank-audit.jsonl", "bank")
    before = _count(log)
    body = {"product": "cashback_card", "link_ids": [LINK, "ef" * 16]}
    with BlockingPeerHttpClient(nodes["address"]["market"], "market", _files(certs, "bank"), mine, OFFER_MESSAGES,
                                PROTOCOL, timeout_s=10) as client:
        status, answer = client.post("/v1/offers/content", body)
        again, _ = client.post("/v1/offers/content", body)          # the same kept-alive connection
    assert status == again == 200 and b"travel" in answer
    sent = _new_lines(mine.path, 0)
    seen = _new_lines(log, before)
    expect = [("out", "offer content cashback_card request", 2), ("in", "offer content cashback_card", 1)] * 2
    assert [(e["direction"], e["message"], e["records"]) for e in sent] == expect
    assert {e["peer"] for e in sent} == {"market"} and {e["peer"] for e in seen} == {"bank"}
    assert [(e["direction"], e["message"], e["records"]) for e in seen] == [
        ({"out": "in", "in": "out"}[d], m, r) for d, m, r in expect]
    assert [e["bytes"] for e in sent] == [e["bytes"] for e in seen] and sent[1]["bytes"] == len(answer)
    assert {e["session"] for e in sent + seen} == {"cashback_card"}


def test_the_peer_client_sends_nothing_to_a_server_with_another_name_or_none(nodes, tmp_path):
    certs, log = nodes["certs"], nodes["audit"]["bank"]
    mine = AuditLog(tmp_path / "market-audit.jsonl", "market")
    before = _count(log)
    with BlockingPeerHttpClient(nodes["address"]["bank"], "market", _files(certs, "market"), mine, MESSAGES,
                                PROTOCOL, timeout_s=10) as client:
        with pytest.raises(PeerUnavailable, match=r"^the service at 127\.0\.0\.1:\d+ is not market "
                                                  r"\(certificate of bank\)$"):
            client.post("/v1/checkout/installments", DECISION)
    assert _count(mine.path) == 0 and _count(log) == before            # not a byte of payload, either side
    with BlockingPeerHttpClient(f"127.0.0.1:{free_port()}", "bank", _files(certs, "market"), mine, MESSAGES,
                                PROTOCOL, timeout_s=10) as client:
        with pytest.raises(PeerUnavailable, match="bank decision service .* is unreachable"):
            client.post("/v1/checkout/installments", DECISION)
    assert _count(mine.path) == 0


def test_a_renewed_listener_certificate_is_served_to_new_connections_without_a_restart(nodes):
    import socket

    from cryptography import x509

    certs, address = nodes["certs"], nodes["address"]["bank"]

    def served_serial():
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.check_hostname = False
        context.load_cert_chain(str(certs / "market.pem"), str(certs / "market.key"))
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as conn:
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number

    url = f"https://{address}/v1/decisions/customers"
    with _client(certs, "market") as kept:
        first = kept.post(url, json={})                          # an open connection, answered
        before = served_serial()
        make_node_cert(certs, "bank", certs / "ca.pem", certs / "ca.key")   # the bank renews its certificate
        assert served_serial() != before                         # new connections get the new one
        assert kept.post(url, json={}).status_code == first.status_code    # the open one carries on

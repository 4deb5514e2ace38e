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
from tandem.decide.api import MESSAGES, PROTOCOL, bank_app, market_app
from tandem.offers.quota import ContentQuota
from tandem.offers.service import OFFER_MESSAGES, market_router
from tandem.transport.http_client import BlockingPeerHttpClient, PeerUnavailable
from tandem.transport.http_server import HttpServers
from tandem.transport.ports import free_port
from tandem.transport.trust import TlsFiles

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


def _org_pair(root):
    """The bank's and the market's organisations (tandem.crypto.pki), each with its own CA, each trusting
    the other's."""
    from tandem.crypto import pki

    folders = {n: root / n for n in ("bank", "market")}
    for n, folder in folders.items():
        pki.init(folder, n.capitalize(), n)
    pki.trust(folders["bank"], "market", folders["market"] / "ca.pem")
    pki.trust(folders["market"], "bank", folders["bank"] / "ca.pem")
    return folders


def _org_files(folder, node, peer):
    from tandem.crypto import pki

    return TlsFiles(None, folder / f"{node}.pem", folder / f"{node}.key", {peer: pki.peer_ca(folder, peer)})


async def _serial_server(orgs, connections: list, ended: list):
    """A mutual-TLS HTTP/1.1 server with the bank's certificate that answers each POST, after the
    ``wait`` seconds its body asks for, with the serial number of the caller's certificate; the serial
    of each connection goes into ``connections`` when it opens and into ``ended`` when the client closes it."""
    import json

    from cryptography import x509

    from tandem.crypto import pki

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(orgs["bank"] / "bank.pem"), str(orgs["bank"] / "bank.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(pki.peer_ca(orgs["bank"], "market")))

    async def handle(reader, writer):
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        serial = x509.load_der_x509_certificate(der).serial_number
        connections.append(serial)
        while await reader.readline():
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await asyncio.sleep(json.loads(await reader.readexactly(length))["wait"])
            answer = json.dumps({"serial": str(serial)}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
        ended.append(serial)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


def test_the_peer_client_uses_a_renewed_certificate_for_the_next_request_and_finishes_those_under_way(tmp_path):
    import json

    from tandem.crypto import pki
    from tandem.transport.http_client import PeerHttpClient

    orgs = _org_pair(tmp_path)

    async def scenario():
        connections: list = []
        ended: list = []
        server = await _serial_server(orgs, connections, ended)
        port = server.sockets[0].getsockname()[1]
        client = PeerHttpClient(f"127.0.0.1:{port}", "bank", _org_files(orgs["market"], "market", "bank"),
                                AuditLog(tmp_path / "audit.jsonl", "market"), {}, "test", size=4)

        async def serial(wait=0.0):
            status, answer = await asyncio.wait_for(client.post("/serial", {"wait": wait}), 10)
            assert status == 200
            return json.loads(answer)["serial"]

        try:
            old = await serial()
            under_way = asyncio.create_task(serial(wait=1.5))       # on the connection opened with the old files
            await asyncio.sleep(0.2)
            pki.issue_node(orgs["market"], "market")                # the market renews its node certificate
            await asyncio.sleep(PeerHttpClient.RECHECK_S + 0.1)
            new = await serial()
            assert new != old                                       # the next request: a new connection, new cert
            assert await under_way == old                           # the one under way finished on the old one
            assert [await serial(), await serial(), await serial()] == [new] * 3  # the old one is not reused
            await asyncio.sleep(0.2)
            assert len(connections) == 2 and ended == [int(old)]    # the old connection, closed once idle
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_ca_taken_out_of_the_listeners_trust_is_refused_without_a_restart(tmp_path):
    """The market rolls its CA over; once the bank stops trusting the old one, a caller with a certificate
    from it (the old CA's key may have leaked: that is why it was retired) is refused: a new connection at
    the handshake (or with the 403 below), and a connection kept open from before on its next request, with
    a 403 and one line naming the peer and the CA."""
    from tandem.crypto import pki

    orgs = _org_pair(tmp_path)
    new = tmp_path / "market-new"
    pki.init(new, "Market", "market")
    pki.trust(new, "bank", orgs["bank"] / "ca.pem")
    pki.trust(orgs["bank"], "market", new / "ca.pem", add=True)      # the roll-over: both CAs trusted
    address = f"127.0.0.1:{free_port()}"
    servers = HttpServers([(address, bank_app(_State(), _Ledger(), {}, "mtls"), True)],
                          _org_files(orgs["bank"], "bank", "market"), peer="market",
                          audit=AuditLog(tmp_path / "bank-audit.jsonl", "bank"), messages=MESSAGES,
                          protocol=PROTOCOL, where="bank.toml")
    ready = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(servers.serve(ready.set),), daemon=True)
    thread.start()

    def client(folder):
        context = ssl.create_default_context(cafile=str(pki.peer_ca(folder, "bank")))
        context.check_hostname = False
        context.load_cert_chain(str(folder / "market.pem"), str(folder / "market.key"))
        return httpx.Client(verify=context, timeout=10)

    url = f"https://{address}/v1/health"
    try:
        assert ready.wait(30), "the listener did not start within 30 s"
        with client(orgs["market"]) as kept, client(new) as current:
            assert kept.get(url).status_code == 200 and current.get(url).status_code == 200
            pki.trust(orgs["bank"], "market", new / "ca.pem")        # the roll-over is done: the old CA goes
            refused = kept.get(url)
            assert refused.status_code == 403
            detail = refused.json()["detail"]
            assert "peer market" in detail and "not by the CA this node trusts for market" in detail, detail
            assert "\n" not in detail
            with client(orgs["market"]) as fresh:
                try:
                    again = fresh.get(url)
                except httpx.HTTPError:             # the handshake refused the certificate
                    pass
                else:
                    assert again.status_code == 403 and again.json()["detail"] == detail
            assert current.get(url).status_code == 200               # the new CA's node carries on
    finally:
        servers.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()

"""Linking a new buyer at checkout: both decision services as real processes (uvicorn, TLS) on a world
linked in incremental mode, with buyers added to the marketplace's store after that run."""

import tomllib

import duckdb
import httpx
import pandas as pd
import pytest

from tandem.audit import read_audit
from tandem.decide.local import TRAIN, Service, train_models, write_decide_configs
from tandem.link.local import link_world
from tandem.transport.ports import free_port
from tandem.world.generate import generate_world

ARGS = {**TRAIN, "trees": 4, "key_bits": 1024}
PER_MINUTE = 8  # the bank's new-record lookups per minute in this world


def _users(world, sql):
    con = duckdb.connect(str(world / "market.duckdb"))
    try:
        con.execute(sql)
    finally:
        con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = tmp_path_factory.mktemp("checkout-link") / "world"
    generate_world(3000, 5, world, evaluate=False)
    truth = pd.read_parquet(world / "truth.parquet")
    shared = truth[truth.both_consented & truth.phone_matches & truth.market_user_id.notna()]
    held = [int(u) for u in shared.market_user_id[:12]]       # they register after the link run
    clients = dict(zip(held, shared.bank_client_id[:12].astype("int64")))
    ids = ", ".join(map(str, held))
    _users(world, f"CREATE TABLE held AS SELECT * FROM users WHERE user_id IN ({ids}); "
                  f"DELETE FROM users WHERE user_id IN ({ids})")
    link_world(world, entities=["customers"], count_only=False, incremental=True)
    models = train_models(world, ["customers"], args=ARGS)
    _users(world, "INSERT INTO users SELECT * FROM held; INSERT INTO users SELECT 999000000001, '+7 999 000-11-22', "
                  "'nobody.at.the.bank@example.org', DATE '2018-12-30', 'Other', true")
    paths, key = write_decide_configs(world, models, extra={"peer_new_links_per_minute": PER_MINUTE})
    bank, market = Service(paths["bank"]).wait_ready(), Service(paths["market"]).wait_ready()
    state = {"world": world, "paths": paths, "key": key, "bank": bank, "market": market, "held": held,
             "clients": clients, "models": models}
    yield state
    state["bank"].stop()
    state["market"].stop()


def _checkout(api, key, request_id, user):
    return httpx.post(api + "/v1/checkout", verify=False, headers={"X-API-Key": key}, timeout=30, json={
        "request_id": request_id, "user_id": user, "order": {"amount": 15000.0, "currency": "RUB"}})


def _bank_peer(s, body):
    """A request to the bank's mutual-TLS listener with the marketplace node's certificate."""
    nodes = s["world"] / "nodes"
    listen = tomllib.loads(s["paths"]["bank"].read_text())["decide"]["listen"]
    market = nodes / "certs" / "market"
    certs = (str(market / "market.pem"), str(market / "market.key"))
    import ssl

    context = ssl.create_default_context(cafile=str(market / "peers" / "bank.pem"))
    context.check_hostname = False
    context.load_cert_chain(*certs)
    return httpx.post(f"https://{listen}/v1/link/new", verify=context, json=body, timeout=30)


def _state_id(s):
    from tandem.link.memory import load_memory, memory_path

    memory = load_memory(memory_path(s["world"] / "nodes" / "state-market", "bank", "customers", "phone"))
    assert memory is not None
    return memory.state_id


def test_a_buyer_registered_after_the_link_run_gets_a_decision(world):
    s = world
    user = s["held"][0]
    reply = _checkout(s["market"].api, s["key"], "new-000001", user)
    assert reply.status_code == 200, reply.text
    decision = reply.json()
    assert decision["decision"] in ("approve", "decline", "refer") and len(decision["link_id"]) == 32
    again = _checkout(s["market"].api, s["key"], "new-000002", user)           # linked now: no second lookup
    assert again.status_code == 200 and again.json()["link_id"] == decision["link_id"]
    sent, _ = read_audit(s["world"] / "nodes" / "state-market" / "audit.jsonl")
    heard, _ = read_audit(s["world"] / "nodes" / "state-bank" / "audit.jsonl")
    asked = [e for e in sent if e["message"] == "new record link phone request" and e["direction"] == "out"]
    assert [e["session"] for e in asked] == ["new-000001"] and asked[0]["records"] == 1
    assert [e["session"] for e in heard if e["message"] == "new record link phone request"] == ["new-000001"]
    answered = [e for e in heard if e["message"] == "new record link phone" and e["direction"] == "out"]
    assert answered[0]["records"] == 1                                          # one record matched
    s["linked"] = {user: decision["link_id"]}


def test_a_buyer_the_bank_does_not_know_gets_a_clear_404(world):
    s = world
    reply = _checkout(s["market"].api, s["key"], "new-000003", 999000000001)
    assert reply.status_code == 404
    assert reply.json()["detail"] == "user 999000000001 is not a customer shared with the bank " \
                                     "(looked up just now on phone, email)"
    linked = _checkout(s["market"].api, s["key"], "new-000004", 12345)          # not in the store at all
    assert linked.status_code == 404 and "not in this node's store" in linked.json()["detail"]


def test_malformed_and_low_order_points_are_refused(world):
    s = world
    body = {"request_id": "bad-point-01", "entity": "customers", "key": "phone", "state_id": _state_id(s)}
    for points, fragment in ((["zz"], "hex"), (["ab" * 31], "32 bytes"), ([], "points"),
                             (["00" * 32] * 17, "points")):
        reply = _bank_peer(s, {**body, "points": points})
        assert reply.status_code == 422 and fragment in reply.text, reply.text
    for low in ("00" * 32, "01" + "00" * 31):                                   # points of order 1 and 4
        reply = _bank_peer(s, {**body, "points": [low]})
        assert reply.status_code == 422 and reply.json()["detail"] == "received a malformed group element"
    stale = _bank_peer(s, {**body, "state_id": "0" * 32, "points": ["09" + "00" * 31]})
    assert stale.status_code == 409 and "kept link states" in stale.json()["detail"]
    other = _bank_peer(s, {**body, "key": "inn", "points": ["09" + "00" * 31]})
    assert other.status_code == 422 and "not on inn" in other.json()["detail"]
    bank_api = "https://" + tomllib.loads(s["paths"]["bank"].read_text())["decide"]["api_listen"]
    shop = httpx.post(bank_api + "/v1/link/new", verify=False, headers={"X-API-Key": s["key"]},
                      json={**body, "points": ["09" + "00" * 31]})
    assert shop.status_code == 404                                          # the peer's route only


def test_a_gateway_without_kept_state_says_to_run_an_incremental_link(world):
    s = world
    text = s["paths"]["market"].read_text()
    decide = tomllib.loads(text)["decide"]
    for old in (decide["listen"], decide["api_listen"]):
        text = text.replace(old, f"127.0.0.1:{free_port()}")
    bare = s["paths"]["market"].with_name("decide-market-bare.toml")
    bare.write_text(text.replace('state_dir = "state-market"', 'state_dir = "state-market-bare"'))
    gateway = Service(bare).wait_ready()
    try:
        reply = _checkout(gateway.api, s["key"], "bare-000001", s["held"][1])
    finally:
        gateway.stop()
    assert reply.status_code == 404
    assert "run an incremental link first" in reply.json()["detail"] and "\n" not in reply.json()["detail"]


def test_the_banks_new_link_quota_trips(world):
    s = world
    replies = [_checkout(s["market"].api, s["key"], f"quota-{i:06d}", user) for i, user in enumerate(s["held"][1:])]
    codes = [r.status_code for r in replies]
    assert 200 in codes and 429 in codes and codes.index(429) < PER_MINUTE, codes
    refused = next(r for r in replies if r.status_code == 429)
    assert "new-record lookups per minute" in refused.json()["detail"] and int(refused.headers["retry-after"]) >= 1
    s["linked"].update({u: r.json()["link_id"] for u, r in zip(s["held"][1:], replies) if r.status_code == 200})


def test_the_next_incremental_run_gives_both_sides_the_same_link_ids(world):
    s = world
    s["market"].stop()
    s["market"] = Service(s["paths"]["market"]).wait_ready()                   # the journal survives a restart
    user, link_id = next(iter(s["linked"].items()))
    assert _checkout(s["market"].api, s["key"], "restart-0001", user).json()["link_id"] == link_id
    s["bank"].stop()
    s["market"].stop()
    link_world(s["world"], entities=["customers"], count_only=False, incremental=True)
    for party in ("market", "bank"):
        con = duckdb.connect(str(s["world"] / f"{party}.duckdb"), read_only=True)
        rows = dict(con.execute("SELECT link_id, local_id FROM link_customers").fetchall())
        con.close()
        for user, link_id in s["linked"].items():
            assert rows.get(link_id) == (user if party == "market" else s["clients"][user]), (party, user)
    assert len(s["linked"]) >= 2


def _memories(market: list[str], bank: list[str], salt: bytes):
    """The state both sides keep after an incremental run of ``market`` x ``bank`` values (one key)."""
    import numpy as np

    from tandem.crypto.psi_group import blind, hash_to_points, new_secret
    from tandem.protocols.psi_sets import KeyMemory
    from tandem.protocols.psi_sets import value_digests as _digests

    a, b = new_secret(), new_secret()
    arr = lambda buf: np.frombuffer(buf, dtype="S32")  # noqa: E731
    m_blind = blind(a, hash_to_points("customers:phone", salt, market))
    b_blind = blind(b, hash_to_points("customers:phone", salt, bank))
    m_double, b_double = blind(b, m_blind), blind(a, b_blind)
    mine = KeyMemory("s" * 32, a, salt, _digests(salt, market), arr(m_blind), arr(m_double), arr(b_blind),
                     arr(b_double))
    theirs = KeyMemory("s" * 32, b, salt, _digests(salt, bank), arr(b_blind), arr(b_double), arr(m_blind),
                       arr(m_double))
    return mine, theirs


def test_one_lookup_gives_the_link_id_of_the_run_and_keeps_its_rules():
    import hashlib

    import numpy as np

    from tandem.crypto.psi_group import InvalidPoint, link_ids
    from tandem.decide.newlinks import Bucket
    from tandem.link.one import Answerer, Asker, decode_points, encode_points

    salt = bytes(32)
    phones = [f"7900{i:07d}" for i in range(40)]
    # a value whose kept digest ends in a zero byte (numpy strips those from an S32 item)
    zero = next(v for v in (f"7901{i:07d}" for i in range(10_000))
                if hashlib.sha256(salt + v.encode()).digest()[-1] == 0)
    phones[0] = zero
    mine, theirs = _memories(phones[:20], phones[10:30], salt)
    asker = Asker("customers", "phone", mine)
    ids = np.arange(100, 120, dtype=np.int64)
    values = np.array(phones[10:30], dtype=object)
    answerer = Answerer("customers", "phone", theirs, ids, values)
    assert all(asker.was_in_last_run(v) for v in phones[:20]) and not asker.was_in_last_run(phones[25])
    assert asker.was_in_last_run(zero)
    (double, owner, lid), (_d2, none, _l2) = answerer.answer(asker.blinded([phones[25], phones[35]]))
    assert owner == 115 and none is None                                   # phones[25] is the bank's record 115
    run_id = link_ids("customers:phone", theirs.own_double[15:16].tobytes())[0]
    assert lid == run_id and asker.links(double, [True]) == [run_id]        # the id the run gives that pair
    with pytest.raises(ValueError, match="not in the link state kept here"):
        asker.links(_d2, [True])                                            # a match the kept state refutes
    values[15] = None                                                       # record 115 withdrew its consent
    gone = Answerer("customers", "phone", theirs, ids, values)
    assert gone.answer(asker.blinded([phones[25]]))[0][1] is None
    with pytest.raises(InvalidPoint):
        answerer.answer(bytes(32))
    assert decode_points(encode_points(double)) == double
    for bad in (["zz"], ["ab" * 31], ["00" * 32] * 17):
        with pytest.raises(ValueError):
            decode_points(bad)
    bucket = Bucket(3)
    assert [bucket.take(1, now=bucket.at) for _ in range(3)] == [None] * 3
    assert bucket.take(1, now=bucket.at) == pytest.approx(20.0)            # a minute's 3 tokens: one per 20 s
    assert bucket.take(1, now=bucket.at + 20.0) is None

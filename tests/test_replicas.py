"""The bank's decision service on two replicas sharing one PostgreSQL ledger, each behind its own marketplace
gateway (real processes, TLS): the same request ids sent to both at once, and while one bank replica is
killed (SIGKILL) and restarted; afterwards each request id is booked once, every answered decision is in the
table, and every answer to one request id is the one recorded."""

import json
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest
import sqlalchemy as sa

from tandem.decide.local import TRAIN, Service, copy_store, replica_configs, train_models, write_decide_configs
from tandem.link.local import link_world
from tandem.transport.http_client import ApiClient
from tandem.world.generate import generate_world

ARGS = {**TRAIN, "trees": 4, "key_bits": 1024}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres_url):
    world = tmp_path_factory.mktemp("replicas") / "world"
    generate_world(3000, 11, world, evaluate=False)
    link_world(world, entities=["customers"], count_only=False)
    models = train_models(world, ["customers"], args=ARGS)
    paths, key = write_decide_configs(world, models, extra={"peer_rate": 20000})
    engine = sa.create_engine(postgres_url)
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)                                      # an empty database: the bank's store moves in
    copy_store(world / "bank.duckdb", postgres_url)
    banks = replica_configs(paths["bank"], 2, store=postgres_url)
    markets = replica_configs(paths["market"], 2, peers=[tomllib.loads(p.read_text())["decide"]["listen"]
                                                         for p in banks])
    services = [Service(p) for p in banks + markets]           # all four start at once
    for s in services:
        s.wait_ready()
    con = duckdb.connect(str(world / "market.duckdb"), read_only=True)
    users = [r[0] for r in con.sql("SELECT local_id FROM link_customers ORDER BY link_id").fetchall()]
    con.close()
    state = {"banks": services[:2], "markets": services[2:], "bank_paths": banks, "key": key, "users": users,
             "engine": engine}
    yield state
    for s in state["banks"] + state["markets"]:
        s.proc.terminate()                                     # all at once: each closes its ledger on SIGTERM
    for s in state["banks"] + state["markets"]:
        s.stop()
    engine.dispose()


def _body(request_id: str, users: list[int]) -> dict:
    i = int(request_id.rsplit("-", 1)[1])
    return {"request_id": request_id, "user_id": users[i % len(users)],
            "order": {"amount": 1000.0 + 97 * (i % 500), "currency": "RUB", "categories": ["electronics"]}}


def _booked(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT request_id, response FROM decisions")).fetchall()
    out: dict[str, list[str]] = {}
    for rid, response in rows:
        out.setdefault(rid, []).append(response)
    return out


def _same(answers: list[dict]) -> bool:
    return len({repr(sorted((k, v) for k, v in a.items() if k != "replayed")) for a in answers}) == 1


def test_the_same_request_ids_at_both_replicas_and_through_a_restart_are_each_booked_once(replicas):
    s = replicas
    local, clients = threading.local(), []

    def send(job: tuple[str, int]) -> tuple[str, int, int, dict | None]:
        if not hasattr(local, "client"):
            local.client = ApiClient(s["key"], timeout_s=10)
            clients.append(local.client)
        rid, which = job
        status, answer = local.client.post(s["markets"][which].api + "/v1/checkout", _body(rid, s["users"]))
        return rid, which, status, answer

    # 1. each request id to both replicas at the same moment
    ids = [f"both-{i:06d}" for i in range(120)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, [(rid, w) for rid in ids for w in (0, 1)], timeout=60))
    assert all(status == 200 for _, _, status, _ in results), [(st, a) for _, _, st, a in results if st != 200][:3]
    by_id: dict[str, list[dict]] = {}
    for rid, _, _, answer in results:
        by_id.setdefault(rid, []).append(answer)
    for rid, answers in by_id.items():
        assert _same(answers), rid                              # both replicas answer the one recorded decision
        assert sorted(a["replayed"] for a in answers) == [False, True], rid  # booked by one, replayed by the other

    # 2. requests flow to both while bank replica 0 is killed and restarted; a failed request is retried
    answered: dict[str, list[dict]] = {}
    failed = {"count": 0}
    stop = threading.Event()

    def flow(worker: int) -> None:
        n = 0
        while not stop.is_set():
            rid = f"flow-{worker * 100_000 + n:07d}"
            n += 1
            for which in (worker % 2, 1 - worker % 2):         # both replicas, in turn; each retried until answered
                deadline = time.monotonic() + 40
                while True:
                    _, _, status, answer = send((rid, which))
                    if status == 200:
                        answered.setdefault(rid, []).append(answer)
                        break
                    assert status in (0, 502, 503), (rid, status, answer)  # unreachable or not recorded: retry
                    failed["count"] += 1
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{rid} never answered by replica {which} (last status {status})")
                    time.sleep(0.05)

    with ThreadPoolExecutor(8) as pool:
        flows = [pool.submit(flow, w) for w in range(8)]
        time.sleep(1.5)
        bank0 = s["banks"][0]
        bank0.proc.kill()                                      # SIGKILL: no clean stop, transactions cut off
        bank0.proc.wait(10)
        s["banks"][0] = Service(s["bank_paths"][0]).wait_ready()
        time.sleep(1.5)
        stop.set()
        for f in flows:
            f.result(timeout=60)
    assert failed["count"] > 0, "the kill hit no request: the restart was not under load"
    assert len(answered) > 50

    # 3. the table: each request id once, every answered one there, each answer the recorded one
    booked = _booked(s["engine"])
    assert [rid for rid, rows in booked.items() if len(rows) > 1] == []
    for rid, answers in {**by_id, **answered}.items():
        assert rid in booked, rid                              # answered, so booked
        assert _same(answers), rid
        recorded = json.loads(booked[rid][0])
        assert all(a["decision"] == recorded["decision"] and a["decided_at"] == recorded["decided_at"]
                   for a in answers), rid
    replays = [send((rid, w)) for rid in list(answered)[:10] + ids[:10] for w in (0, 1)]
    for rid, _, status, answer in replays:
        assert status == 200 and answer["replayed"] and _same([answer, *({**by_id, **answered}[rid])]), rid
    for client in clients:
        client.close()

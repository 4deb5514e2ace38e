"""Decide: both decision services as real processes (uvicorn, TLS) on a linked world with trained
federated models; decisions, idempotency, errors, batch scoring, restarts and a schemathesis run."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest
from helpers import run_cli

from tandem.audit import read_audit
from tandem.decide import policy as rules
from tandem.decide.local import TRAIN, Service, train_models, write_decide_configs
from tandem.decide.state import key_hash
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.federated import ordered, split_rows
from tandem.learn.options import TrainingOptions, estimator_kwargs
from tandem.link.local import link_world
from tandem.world.generate import generate_world

ARGS = {**TRAIN, "trees": 8, "key_bits": 1024}
POLICY = rules.load_policy()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    world = tmp_path_factory.mktemp("decide") / "world"
    cfg = world.parent / "sellers.toml"
    cfg.write_text("[population]\npersons_per_seller = 5\n\n[sellers]\nbusiness_loan_share = 0.8\n")
    generate_world(6000, 11, world, config=cfg, evaluate=False)
    link_world(world, entities=["customers", "sellers"], count_only=False)
    models = train_models(world, args=ARGS)
    paths, key = write_decide_configs(world, models)
    admin = "operator-" + key                                   # the bank's operators' key for /v1/admin/*
    (world / "nodes" / "admin-keys.txt").write_text(key_hash(admin) + "\n")
    paths["bank"].write_text(paths["bank"].read_text() + 'admin_keys = "admin-keys.txt"\n')
    bank, market = Service(paths["bank"]).wait_ready(), Service(paths["market"]).wait_ready()
    con = duckdb.connect(str(world / "market.duckdb"), read_only=True)
    users = [r[0] for r in con.sql("SELECT local_id FROM link_customers ORDER BY link_id").fetchall()]
    sellers = [r[0] for r in con.sql("SELECT local_id FROM link_sellers ORDER BY link_id").fetchall()]
    con.close()
    state = {"world": world, "paths": paths, "key": key, "admin": admin, "bank": bank, "market": market, "users": users,
             "sellers": sellers, "models": models}
    yield state
    state["bank"].stop()
    state["market"].stop()


def _client(key):
    return httpx.Client(verify=False, headers={"X-API-Key": key}, timeout=30)


def _checkout(s, request_id, user, amount=15000.0):
    return _client(s["key"]).post(s["market"].api + "/v1/checkout", json={
        "request_id": request_id, "user_id": user, "order": {"amount": amount, "currency": "RUB",
                                                             "categories": ["electronics"]}})


def _reference(world: Path, link_ids: list[str]) -> dict[str, float]:
    """The plaintext reference: the same algorithm on the pooled export, same rows and split."""
    bank = pd.read_parquet(world / "train" / "bank.parquet")
    market = pd.read_parquet(world / "train" / "market.parquet")
    pooled = bank.merge(market, on="link_id")
    fields = TrainingOptions.from_args(ARGS).request_fields()
    pooled = pooled.iloc[ordered(pooled["link_id"].tolist(), fields["seed"])]
    test, valid = split_rows(pooled["link_id"].tolist(), fields)
    cols = [c for c in pooled.columns if c not in ("link_id", "default")]
    X, y = pooled[cols].to_numpy(dtype=float), pooled["default"].to_numpy()
    merged = dict(min_bin_rows=MIN_BIN_ROWS, passive_from=len(bank.columns) - 2)  # the market merges its bins
    ref = HistBoostingClassifier(**estimator_kwargs(fields), **merged).fit(X[~test], y[~test], valid[~test])
    at = pooled.set_index("link_id").loc[link_ids, cols].to_numpy(dtype=float)
    return dict(zip(link_ids, ref.predict_proba(at)[:, 1]))


def test_checkout_decisions_equal_the_batch_and_plaintext_scores_and_survive_a_restart(services):
    s = services
    labelled = set(pd.read_parquet(s["world"] / "train" / "bank.parquet")["link_id"])
    decisions = {}
    for i, user in enumerate(s["users"][:60]):
        reply = _checkout(s, f"co-{i:06d}", user)
        assert reply.status_code == 200, reply.text
        d = reply.json()
        assert d["decision"] in ("approve", "decline", "refer") and not d["replayed"]
        assert "pd" not in d and d["pd_band"] in POLICY["pd_bands"]                 # coarse: the PD stays home
        assert (d["limit"] is not None) == (d["decision"] == "approve")
        assert d["decision"] == "decline" or d["terms"][0]["months"] == 3
        decisions[d["link_id"]] = d
    assert {r["party"] for d in decisions.values() for r in d["reasons"]} <= {"bank", "market"}
    assert any(r["description"] == "marketplace behaviour" for d in decisions.values() for r in d["reasons"])
    assert all(set(r) == {"code", "description", "party"} for d in decisions.values() for r in d["reasons"])

    s["bank"].stop()                                   # the bank's store is free: batch scoring
    proc = run_cli("score", "--config", str(s["paths"]["bank"]), "--entity", "customers")
    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(s["world"] / "bank.duckdb"), read_only=True)
    batch = dict(con.sql("SELECT link_id, pd FROM scores_customers").fetchall())
    pds = dict(con.execute("SELECT link_id, pd FROM decisions WHERE request_id LIKE 'co-%'").fetchall())
    con.close()
    assert len(pds) == 60                              # the exact PD of each answer is in the bank's ledger
    for lid, d in decisions.items():
        assert abs(batch[lid] - pds[lid]) < 1e-9 and d["pd_band"] == rules.pd_grade(pds[lid], POLICY)
    ref = _reference(s["world"], [lid for lid in decisions if lid in labelled])
    assert len(ref) >= 10
    for lid, p in ref.items():
        assert abs(pds[lid] - p) < 1e-9
    s["bank"] = Service(s["paths"]["bank"]).wait_ready()
    again = _checkout(s, "co-000000", s["users"][0]).json()
    first = decisions[again["link_id"]]
    assert again["replayed"] and {k: v for k, v in again.items() if k != "replayed"} == \
        {k: v for k, v in first.items() if k != "replayed"}


def test_bad_requests_get_clear_4xx_answers(services):
    s = services
    c = _client(s["key"])
    bank_api = "https://" + tomllib.loads(s["paths"]["bank"].read_text())["decide"]["api_listen"]
    good = json.loads(Path(s["models"]["customers"]["model_path"]).read_text())["model_id"]
    assert httpx.post(s["market"].api + "/v1/checkout", verify=False, json={}).status_code == 401
    assert c.post(s["market"].api + "/v1/checkout", headers={"X-API-Key": "wrong"}, json={}).status_code == 401
    bad = c.post(s["market"].api + "/v1/checkout", json={"request_id": "bad-000001", "user_id": s["users"][0],
                                                         "order": {"amount": -5, "currency": "USD"}})
    assert bad.status_code == 422 and "amount" in bad.text and "currency" in bad.text
    assert c.post(s["market"].api + "/v1/checkout", json={"request_id": "bad-000002", "user_id": 12345,
                                                          "order": {"amount": 5, "currency": "RUB"}}).status_code == 404
    assert _checkout(s, "reuse-0001", s["users"][1]).status_code == 200
    reused = _checkout(s, "reuse-0001", s["users"][1], amount=99.0)
    assert reused.status_code == 409 and "already used" in reused.json()["detail"]
    body = {"request_id": "direct-0001", "link_id": "0" * 32, "model_version": good,
            "order": {"amount": 100, "currency": "RUB"}, "marketplace_bits": ""}
    assert c.post(bank_api + "/v1/checkout/installments", json=body).status_code in (404, 422)
    body["model_version"] = "f" * 16
    mismatch = c.post(bank_api + "/v1/checkout/installments", json=body)
    assert mismatch.status_code == 409 and "not loaded" in mismatch.json()["detail"]
    con = duckdb.connect(str(s["world"] / "market.duckdb"), read_only=True)
    link = con.execute(f"SELECT link_id FROM link_customers WHERE local_id = {s['users'][2]}").fetchone()[0]
    con.close()
    body.update(model_version=good, link_id=link, request_id="direct-0002", marketplace_bits="!!")
    assert c.post(bank_api + "/v1/checkout/installments", json=body).status_code == 422


def test_a_client_over_its_rate_limit_is_told_to_wait(services, tmp_path):
    s = services
    from tandem.transport.ports import free_port

    text = s["paths"]["market"].read_text()
    decide = tomllib.loads(text)["decide"]
    for old in (decide["listen"], decide["api_listen"]):
        text = text.replace(old, f"127.0.0.1:{free_port()}")
    limited = s["paths"]["market"].with_name("decide-market-limited.toml")
    limited.write_text(text.replace("[decide]\n", "[decide]\nrate_limit = 5\n"))
    gateway = Service(limited).wait_ready()
    try:
        c = _client(s["key"])
        statuses = [c.post(gateway.api + "/v1/checkout", json={"request_id": "limit-000", "user_id": s["users"][0],
                                                               "order": {"amount": 100.0, "currency": "RUB"}})
                    for _ in range(12)]
    finally:
        gateway.stop()
    codes = [r.status_code for r in statuses]
    assert codes[:5] == [200] * 5 and 429 in codes[5:]                   # a burst of one second's worth, then 429
    refused = next(r for r in statuses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1 and "requests per second" in refused.json()["detail"]


def test_seller_credit_lines_and_the_audit_log(services):
    s = services
    c = _client(s["key"])
    answers = [c.post(s["market"].api + "/v1/sellers/credit-line",
                      json={"request_id": f"seller-{i:05d}", "seller_id": seller}) for i, seller in
               enumerate(s["sellers"][:10])]
    assert all(a.status_code == 200 for a in answers), answers[0].text
    for a in answers:
        d = a.json()
        assert d["kind"] == "seller_credit_line" and (d["limit"] is not None) == (d["decision"] == "approve")
        p = POLICY["sellers"]
        assert d["limit"] is None or (d["limit"] - p["min_limit"]) % p["limit_step"] == 0      # on the grid
        assert len(d["terms"]) == (d["decision"] == "approve")      # no amount asked: a referral prices nothing
    sent, _ = read_audit(s["world"] / "nodes" / "state-market" / "audit.jsonl")
    received, _ = read_audit(s["world"] / "nodes" / "state-bank" / "audit.jsonl")
    for kind in ("sellers", "customers"):           # each call and answer, on both nodes, with the real peer
        asked = {e["session"] for e in sent if (e["direction"], e["peer"], e["message"]) == (
            "out", "bank", f"{kind} decision request")}
        answered = {e["session"] for e in sent if (e["direction"], e["peer"], e["message"]) == (
            "in", "bank", f"{kind} decision")}
        heard = {e["session"] for e in received if (e["direction"], e["peer"], e["message"]) == (
            "in", "market", f"{kind} decision request")}
        assert answered and answered <= asked and answered <= heard
        if kind == "sellers":
            assert {f"seller-{i:05d}" for i in range(10)} <= answered


def test_restarting_the_bank_mid_load_loses_no_recorded_decision(services):
    s = services
    ok, stop = {}, threading.Event()

    def load(worker):
        i = 0
        while not stop.is_set():
            rid = f"load-{worker}-{i:05d}"
            try:
                reply = _checkout(s, rid, s["users"][i % len(s["users"])])
                if reply.status_code == 200:
                    ok[rid] = reply.json()
            except httpx.HTTPError:
                pass
            i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    while len(ok) < 40 and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    if len(ok) < 40:
        stop.set()
    assert len(ok) >= 40, f"only {len(ok)} decisions within 300 s"
    s["bank"].proc.send_signal(signal.SIGKILL)              # crash, mid-load
    s["bank"].proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a load thread did not stop within 60 s"
    s["bank"] = Service(s["paths"]["bank"]).wait_ready()
    for rid, d in list(ok.items())[:: max(1, len(ok) // 15)]:
        user = s["users"][int(rid.rsplit("-", 1)[1]) % len(s["users"])]
        again = _checkout(s, rid, user).json()
        assert again["replayed"] and again["decision"] == d["decision"] and again["pd_band"] == d["pd_band"]
    s["bank"].stop()                       # a clean stop: every answered decision is in the store's table
    con = duckdb.connect(str(s["world"] / "bank.duckdb"), read_only=True)
    stored = dict(con.execute("SELECT request_id, decision FROM decisions WHERE request_id LIKE 'load-%'").fetchall())
    con.close()
    assert {rid: d["decision"] for rid, d in ok.items()}.items() <= stored.items()
    assert all(p.stat().st_size == 0 for p in (s["world"] / "nodes" / "state-bank" / "ledger").glob("*.jsonl"))
    s["bank"] = Service(s["paths"]["bank"]).wait_ready()


def test_the_bank_api_survives_schemathesis(services):
    s = services
    api = "https://" + tomllib.loads(s["paths"]["bank"].read_text())["decide"]["api_listen"]
    proc = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run", f"{api}/openapi.json",
                           "--checks", "not_a_server_error", "--header", f"X-API-Key: {s['key']}",
                           "--header", f"X-Admin-Key: {s['admin']}",
                           "--tls-verify", "false", "--max-examples", "25", "--workers", "1"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "No issues found" in proc.stdout and "Tested: 5" in proc.stdout     # all five operations, admin too


def test_a_scorer_plugin_registers_a_model_format(tmp_path):
    """Formats other than the federated model's come from plugin files named in ``[decide] scorers``
    (the benchmark's bank-only LightGBM is one); the product itself knows none of them."""
    from tandem.decide import scorers
    from tandem.errors import InputError

    plugin = tmp_path / "plugin.py"
    plugin.write_text("from tandem.decide.scorers import register\n\n\nclass Flat:\n"
                      "    n_bits, parties, names = 0, [], ['x']\n\n    def __init__(self, model):\n"
                      "        self.version = model['model_id']\n\n    def score(self, x, bits):\n"
                      "        return 0.5, {'x': 0.0}\n\n\nregister('test-flat/1', Flat)\n")
    model = tmp_path / "flat.json"
    model.write_text(json.dumps({"format": "test-flat/1", "model_id": "f1"}))
    with pytest.raises(InputError, match="not a tandem-boost/2 model"):
        scorers.load_scorer(model, None)              # unknown until its plugin is loaded
    try:
        scorers.load_plugins([plugin])
        scorer = scorers.load_scorer(model, None)
        assert scorer.version == "f1" and scorer.score(None, None) == (0.5, {"x": 0.0})
    finally:
        scorers.FORMATS.pop("test-flat/1", None)
    with pytest.raises(InputError, match="nowhere.py"):
        scorers.load_plugins([tmp_path / "nowhere.py"])

"""Decide and offers over the network lab (tandem/netlab.py): both decision services (``tandem serve``) in a
network namespace of the test's own, with a delay proxy in front of each one's mutual-TLS peer listener and
each one's ``[peers.NAME] decide`` pointed at the other's proxy, over `wan` and over `wan` with 1% loss.

What crosses between the parties: a checkout at the marketplace's gateway asks the bank's decision service
(market -> bank); the bank's online offers (``GET /v1/clients/{link_id}/offers``) and its offers batch
(``tandem offers``) ask the marketplace for go-left bits and personalised content (bank -> market). Every
one of these must give over the lab exactly what it gives on plain loopback (each run on its own copy of
one small world, so the ledgers and contact quotas start the same), and take at least the round trip the
lab adds (so a run whose traffic bypassed the proxies fails). The shops' client runs inside the namespace
too (the API-key listeners are not proxied: only the crossing between the organisations is the WAN).
"""

import json
import shutil
import subprocess
import sys
import time

import duckdb
import numpy as np
import pytest
from helpers import run_cli

from tandem.decide.local import TRAIN, Service, train_models, write_decide_configs
from tandem.link.local import link_world
from tandem.netlab import PROFILES
from tandem.offers.local import add_offers_sections
from tandem.world.generate import generate_world

CHECKOUTS = 150                           # enough crossings that 1% loss holds a few (~10)
CLIENTS = 8                               # clients whose online offers are asked
ROUND_TRIP_S = 2 * PROFILES["wan"].delay_s

pytestmark = pytest.mark.timeout(120)

_CLIENT = """
import json, sys, time, httpx
out = []
with httpx.Client(verify=False, headers={"X-API-Key": sys.argv[1]}, timeout=30) as c:
    for method, url, body in json.load(sys.stdin):
        t = time.perf_counter()
        r = c.request(method, url, json=body)
        out.append([r.status_code, r.json(), time.perf_counter() - t])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small linked world with a 4-tree PD model, 3-tree propensity models and both decide configs
    (with ``[offers]``); each run copies it."""
    world = tmp_path_factory.mktemp("services") / "world"
    cfg = world.parent / "campaigns.toml"                # enough contacts for propensity in a small world
    cfg.write_text("[campaigns]\ncontacts_share = 0.8\ntest_wave_share = 1.0\n")
    generate_world(6000, 5, world, config=cfg, evaluate=False)
    link_world(world, entities=["customers"], count_only=False)
    models = train_models(world, ["customers"], args={**TRAIN, "trees": 4, "key_bits": 1024})
    run_cli("propensity", "--world", str(world), "--trees", "3", "--key-bits", "1024", check=True)
    paths, key = write_decide_configs(world, models)
    add_offers_sections(paths, {p: world / "nodes" / f"offers-{p}.json" for p in ("bank", "market")})
    con = duckdb.connect(str(world / "market.duckdb"), read_only=True)
    linked = con.sql("SELECT local_id, link_id FROM link_customers ORDER BY link_id").fetchall()
    con.close()
    rng = np.random.default_rng(3)
    picks = rng.choice(len(linked), CHECKOUTS, replace=False)
    checkouts = [{"request_id": f"wan-{i:05d}", "user_id": int(linked[j][0]),
                  "order": {"amount": float(round(rng.uniform(1000, 60000), 2)), "currency": "RUB",
                            "categories": ["electronics"]}} for i, j in enumerate(picks)]
    clients = [linked[j][1] for j in picks[:CLIENTS]]
    return {"world": world, "key": key, "checkouts": checkouts, "clients": clients}


def _frame(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


def _run(built, folder, lab=None):
    """Both services (in ``lab``'s namespace, wired through its proxies, or on plain loopback) on a fresh
    copy of the world: the checkouts, the online offers, then the offers batch. -> what each gave."""
    world = folder / "world"
    shutil.copytree(built["world"], world)
    paths = {p: world / "nodes" / f"decide-{p}.toml" for p in ("bank", "market")}
    prefix = lab.prefix if lab else []
    if lab:
        lab.wire(paths, "decide")
    services = [Service(paths["market"], prefix)]
    try:
        market = services[0].wait_ready()
        services.append(Service(paths["bank"], prefix))
        bank = services[1].wait_ready()
        jobs = [("POST", market.api + "/v1/checkout", c) for c in built["checkouts"]]
        jobs += [("GET", f"{bank.api}/v1/clients/{lid}/offers", None) for lid in built["clients"]]
        client = subprocess.run([*prefix, sys.executable, "-c", _CLIENT, built["key"]], input=json.dumps(jobs),
                                capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr[-2000:]
        answers = json.loads(client.stdout)
        bank.stop()                                     # the bank's store is free: the offers batch
        began = time.monotonic()
        batch = subprocess.run([*prefix, sys.executable, "-m", "tandem.cli", "offers", "--config",
                                str(paths["bank"]), "--no-evaluate"], capture_output=True, text=True, timeout=60)
        batch_s = time.monotonic() - began
        assert batch.returncode == 0, batch.stderr[-2000:]
    finally:
        for s in services:
            s.stop()
    pds = _frame(world / "bank.duckdb", "SELECT request_id, pd FROM decisions ORDER BY request_id")
    table = _frame(world / "bank.duckdb", "SELECT * FROM offers ORDER BY link_id, product")
    return {"checkouts": answers[:CHECKOUTS], "offers": answers[CHECKOUTS:], "batch_s": batch_s,
            "pds": dict(zip(pds["request_id"], pds["pd"])),
            "table": table.drop(columns=[c for c in table.columns if c.endswith("_at")])}


@pytest.fixture(scope="module")
def loopback(built, tmp_path_factory):
    got = _run(built, tmp_path_factory.mktemp("loopback"))
    assert all(status == 200 for status, _a, _s in got["checkouts"] + got["offers"]), got["checkouts"][:3]
    kinds = {a["decision"] for _st, a, _s in got["checkouts"]}
    assert len(kinds) >= 2, kinds                       # a comparison over more than one kind of answer
    assert len(got["pds"]) == CHECKOUTS and got["table"]["offered"].any()
    return got


def _timeless(answer):
    return {k: v for k, v in answer.items() if not k.endswith("_at")}


def _same_as_loopback(got, loopback, label):
    for (status, answer, _s), (_st, expected, _e) in zip(got["checkouts"], loopback["checkouts"], strict=True):
        assert status == 200 and _timeless(answer) == _timeless(expected)  # decision, PD band, terms, reasons
    assert got["pds"] == loopback["pds"]                     # the exact PD of each, in the bank's ledger
    assert [(st, a) for st, a, _s in got["offers"]] == [(st, a) for st, a, _s in loopback["offers"]]
    assert got["table"].equals(loopback["table"])            # the offers batch wrote the same offers
    seconds = [s for _st, _a, s in got["checkouts"] + got["offers"]]
    # each crossed the proxy: at least one lab round trip; loopback answers take a few milliseconds (the
    # batch reads the same [peers.market] decide as the bank's service, so it crossed the same proxy)
    assert min(seconds) >= ROUND_TRIP_S, min(seconds)
    loop = [s for _st, _a, s in loopback["checkouts"]]
    print(f"{label}: checkout median {np.median(seconds[:CHECKOUTS]) * 1000:.1f} ms (loopback "
          f"{np.median(loop) * 1000:.1f} ms), online offers median {np.median(seconds[CHECKOUTS:]) * 1000:.1f} ms, "
          f"offers batch {got['batch_s']:.1f} s (loopback {loopback['batch_s']:.1f} s)")


def test_decisions_and_offers_over_wan_are_the_loopback_ones(make_lab, built, loopback, tmp_path):
    lab = make_lab("wan")
    _same_as_loopback(_run(built, tmp_path, lab), loopback, "wan")
    assert lab.pids() <= lab.proxy_pids() and not lab.close()


def test_decisions_and_offers_over_wan_with_loss_are_the_loopback_ones(make_lab, built, loopback, tmp_path):
    lab = make_lab("wan", loss=0.01)
    _same_as_loopback(_run(built, tmp_path, lab), loopback, "wan, 1% loss")
    assert lab.losses() > 0, "no chunk was held as lost"
    print(f"wan, 1% loss: {lab.losses()} chunks held")
    assert lab.pids() <= lab.proxy_pids() and not lab.close()

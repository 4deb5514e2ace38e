"""Offer: propensity models trained federated (real node processes), `tandem offers` into the bank's
store, the online endpoint on the bank's decision service, the marketplace's offer endpoints, the
replay of the held-out wave and its report — on one linked world shared by every test here."""

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import render, run_cli

from tandem.decide.local import TRAIN, Service, train_models, write_decide_configs
from tandem.decide.policy import load_policy
from tandem.decide.scoring import PassiveScorer, decode_bits
from tandem.learn import model_io
from tandem.link.local import link_world
from tandem.offers.catalog import load_catalog
from tandem.offers.local import add_offers_sections
from tandem.transport.ports import free_port
from tandem.world.generate import generate_world

ARGS = {**TRAIN, "trees": 8, "key_bits": 1024}          # the PD model, as small as test_decide's
CATALOG = load_catalog()
POLICY = load_policy()
PRODUCTS = [p.key for p in CATALOG.customer_products]


def _frame(path: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


@contextmanager
def _garbage_market(world: Path):
    """A server with the marketplace's certificate that answers every request for bits with nonsense."""
    import uvicorn
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.post("/v1/offers/bits")
    async def bits(request: Request) -> dict:
        body = await request.json()
        n = len(body["link_ids"])
        return {"found": [True] * n, "bits": {v: ["not base64!"] * n for v in body["model_versions"]}}

    certs, port = world / "nodes" / "certs", free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ssl_certfile=str(certs / "market" / "market.pem"),
                                           ssl_keyfile=str(certs / "market" / "market.key"),
                                           ssl_ca_certs=str(certs / "market" / "peers" / "bank.pem"),
                                           ssl_cert_reqs=ssl.CERT_REQUIRED, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def offers(tmp_path_factory):
    world = tmp_path_factory.mktemp("offers") / "world"
    cfg = world.parent / "campaigns.toml"           # more contacts than the default, for a small world
    cfg.write_text("[campaigns]\ncontacts_share = 0.8\ntest_wave_share = 1.0\n")
    generate_world(30_000, 5, world, config=cfg, evaluate=False)
    link_world(world, entities=["customers"], count_only=False)
    models = train_models(world, ["customers"], args=ARGS)
    run_cli("propensity", "--world", str(world), "--trees", "10", "--key-bits", "1024", check=True)
    paths, key = write_decide_configs(world, models)
    add_offers_sections(paths, {p: world / "nodes" / f"offers-{p}.json" for p in ("bank", "market")})
    market = Service(paths["market"]).wait_ready()
    bank = None
    try:
        batch = run_cli("offers", "--config", str(paths["bank"]), "--json", "--report", str(world / "offers.html"),
                        check=True)
        state = {"world": world, "paths": paths, "key": key, "market": market, "result": json.loads(batch.stdout),
                 "audit": (world / "nodes" / "state-market" / "audit.jsonl").read_text(),
                 "bank_audit": (world / "nodes" / "state-bank" / "audit.jsonl").read_text(),
                 "offers": _frame(world / "bank.duckdb", "SELECT * FROM offers"),
                 "clients": _frame(world / "bank.duckdb", """
                     SELECT l.link_id, c.client_id, c.consent_partner, p.marketing_consent, p.do_not_disturb_until,
                            c.birth_date FROM link_customers l JOIN clients c ON c.client_id = l.local_id
                     LEFT JOIN contact_preferences p USING (client_id)"""),
                 "contacts": _frame(world / "bank.duckdb", """
                     SELECT c.client_id, m.product, m.sent_on, c.responded FROM campaign_contacts c
                     JOIN campaigns m USING (campaign_id)""")}
        dead = paths["bank"].with_name("decide-bank-dead-peer.toml")   # the marketplace's service is not there
        text = paths["bank"].read_text()
        market_at = tomllib.loads(text)["peers"]["market"]["decide"]
        dead.write_text(text.replace(f'decide = "{market_at}"', f'decide = "127.0.0.1:{free_port()}"'))
        state["dead_peer"] = run_cli("offers", "--config", str(dead))
        with _garbage_market(world) as address:
            dead.write_text(text.replace(f'decide = "{market_at}"', f'decide = "{address}"'))
            state["garbage_peer"] = run_cli("offers", "--config", str(dead))
        state["after_failure"] = _frame(world / "bank.duckdb", "SELECT count(*) AS n, max(decided_at) AS t FROM offers")
        unknown = world.parent / "catalog.toml"            # a product the bank never marketed
        unknown.write_text(CATALOG.path.read_text() + '\n[products.mortgage]\nname = "Mortgage"\naudience = '
                           '"customers"\ncredit = true\nsolvency = "installments"\nvalue_rub = 30000.0\n')
        manifest = (world / "nodes" / "offers-bank.json").read_bytes()
        state["unknown_product"] = run_cli("propensity", "--world", str(world), "--catalog", str(unknown))
        state["manifest_kept"] = (world / "nodes" / "offers-bank.json").read_bytes() == manifest
        bank = state["bank"] = Service(paths["bank"]).wait_ready()
        state["bank_api"] = "https://" + tomllib.loads(paths["bank"].read_text())["decide"]["api_listen"]
        yield state
    finally:
        market.stop()
        if bank is not None:
            bank.stop()


def test_every_offer_respects_solvency_consent_rules_and_contact_limits(offers):
    o, clients, contacts = offers["offers"], offers["clients"].set_index("client_id"), offers["contacts"]
    as_of = pd.Timestamp(o["as_of"].iloc[0])
    assert len(o) == len(clients) * len(PRODUCTS) and set(o["product"]) == set(PRODUCTS)
    offered = o[o["offered"]]
    cut, floor = POLICY["installments"]["pd_approve"], POLICY["installments"]["min_limit"]
    credit = offered[offered["credit"]]
    assert len(credit) > 100 and (o["reason"] == "pd_above_cutoff").sum() > 100     # the gate is exercised
    assert (credit["pd"] < cut).all() and (credit["limit_amount"] >= floor).all()    # every credit row
    assert not (o[o["credit"] & (o["pd"] >= cut)]["offered"]).any()
    who = clients.loc[offered["client_id"]]
    assert who["consent_partner"].all() and who["marketing_consent"].fillna(False).astype(bool).all()
    dnd = pd.to_datetime(who["do_not_disturb_until"])
    assert (dnd.isna() | (dnd <= as_of)).all()
    # contact limits, recomputed here from the campaign history
    since = as_of - pd.Timedelta(days=CATALOG.period_days)
    recent = contacts[(pd.to_datetime(contacts["sent_on"]) >= since)].groupby("client_id").size()
    made = offered.groupby("client_id").size()
    slots = (CATALOG.max_offers - recent.reindex(made.index, fill_value=0)).clip(lower=0)
    assert (made <= slots).all() and (made == slots).any()
    last = contacts.groupby(["client_id", "product"])["sent_on"].max()
    for p in CATALOG.customer_products:
        mine = offered[offered["product"] == p.key]
        seen = last.reindex(list(zip(mine["client_id"], mine["product"])))
        assert ((as_of - pd.to_datetime(seen.dropna())).dt.days >= p.cooldown_days).all(), p.key
        ages = (as_of - pd.to_datetime(clients.loc[mine["client_id"], "birth_date"])).dt.days / 365.25
        if p.min_age is not None:
            assert (ages >= p.min_age - 1).all(), p.key
    # ranks: 1..m per client, best expected value first; categories exactly on offered cashback rows
    for _, g in offered.groupby("client_id"):
        g = g.sort_values("rank")
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert (np.diff(g["expected_value_rub"].to_numpy()) <= 1e-12).all()
    personal = o["categories"].notna()
    assert (personal == (o["offered"] & (o["product"] == "cashback_card"))).all() and personal.sum() > 0
    for text in o.loc[personal, "categories"]:
        names = text.split(",")
        assert len(names) == 3 and set(names) <= set(CATALOG.categories)


def test_an_unreachable_or_garbled_marketplace_is_one_error_line_and_the_offers_table_is_kept(offers):
    for proc, words in ((offers["dead_peer"], ("market", "unreachable")),
                        (offers["garbage_peer"], ("market", "bits of model", "do not fit"))):
        assert proc.returncode == 2
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("offers ")]
        assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words), proc.stderr
    kept = offers["after_failure"].iloc[0]
    assert kept["n"] == len(offers["offers"]) and kept["t"] == offers["offers"]["decided_at"].max()


def test_a_catalog_product_without_campaign_history_is_one_error_line(offers):
    proc = offers["unknown_product"]
    assert proc.returncode == 2 and offers["manifest_kept"]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "'mortgage'" in lines[0] and "campaigns.product" in lines[0] and "bank.duckdb" in lines[0]


def test_federated_targeting_beats_random_twice_and_the_bank_alone(offers):
    ev = offers["result"]["evaluation"]
    s = {r["strategy"]: r for r in ev["strategies"]}
    assert ev["contacts"] > 3000 and s["federated"]["contacts"] > 500
    assert s["federated"]["acceptance"] >= 2 * s["random"]["acceptance"]
    assert s["federated"]["acceptance"] > s["bank only"]["acceptance"]
    assert s["federated"]["revenue_per_1000"] > s["bank only"]["revenue_per_1000"] > s["random"]["revenue_per_1000"]
    aucs = {p["product"]: p for p in ev["products"]}
    assert aucs["cross_border_insurance"]["auc_federated"] > aucs["cross_border_insurance"]["auc_bank_only"] + 0.1
    mix = {m["product"]: m for m in offers["result"]["mix"]}
    assert sum(m["offers"] for m in mix.values()) == int(offers["offers"]["offered"].sum())


def test_acceptance_in_the_world_depends_on_both_sides(offers):
    """The training files each party exported: marketplace behaviour that the bank does not see, and
    the bank's own, both move the responses to the world's campaigns."""
    folder = offers["world"] / "propensity"
    market = pd.read_parquet(folder / "market.parquet")

    def ratio(product: str, column: str) -> float:
        f = pd.read_parquet(folder / product / "bank.parquet").merge(market, on="link_id", suffixes=("", "_m"))
        high = f[column] >= f[column].quantile(0.75)
        return f.loc[high, "responded"].mean() / max(1e-9, f.loc[~high, "responded"].mean())

    assert ratio("cross_border_insurance", "cross_border_share") > 2       # marketplace side
    assert ratio("installment_plan", "installment_share") > 2
    assert ratio("deposit", "savings_to_income") > 1.5                     # bank side


def _mtls(offers, party: str) -> httpx.Client:
    """A client with ``party``'s node certificate (the other node's view)."""
    mine = offers["world"] / "nodes" / "certs" / party  # its own CA's folder: its certificate, the peer's CA
    other = "bank" if party == "market" else "market"
    context = ssl.create_default_context(cafile=str(mine / "peers" / f"{other}.pem"))
    context.check_hostname = False
    context.load_cert_chain(str(mine / f"{party}.pem"), str(mine / f"{party}.key"))
    return httpx.Client(verify=context, timeout=30)


def test_online_offers_equal_the_batch(offers):
    o = offers["offers"]
    c = httpx.Client(verify=False, headers={"X-API-Key": offers["key"]}, timeout=30)
    offered = o[o["offered"]]
    sample = list(dict.fromkeys(offered[offered["product"] == "cashback_card"]["link_id"].head(8).tolist()
                                + offered[offered["credit"]]["link_id"].head(8).tolist()
                                + o[o["reason"] == "pd_above_cutoff"]["link_id"].head(6).tolist()
                                + o["link_id"].drop_duplicates().sample(10, random_state=1).tolist()))
    for link_id in sample:
        reply = c.get(f"{offers['bank_api']}/v1/clients/{link_id}/offers")
        assert reply.status_code == 200, reply.text
        d = reply.json()
        rows = o[o["link_id"] == link_id].set_index("product")
        assert abs(d["pd"] - rows["pd"].iloc[0]) < 1e-9
        got = {x["product"]: x for x in d["offers"]}
        assert set(got) == set(rows.index[rows["offered"]])
        for key, x in got.items():
            r = rows.loc[key]
            assert x["rank"] == r["rank"] and abs(x["propensity"] - r["propensity"]) < 1e-9
            assert (x["limit"] is None) == pd.isna(r["limit_amount"])
            assert (x["categories"] or None) == (r["categories"].split(",") if isinstance(r["categories"], str)
                                                 else None)
            if x["credit"]:
                assert d["pd"] < POLICY["installments"]["pd_approve"] and x["limit"] >= POLICY["installments"]["min_limit"]
        assert {w["product"]: w["reason"] for w in d["withheld"]} == rows.loc[~rows["offered"], "reason"].to_dict()


def test_online_errors_and_listeners(offers):
    c = httpx.Client(verify=False, headers={"X-API-Key": offers["key"]}, timeout=30)
    api, some = offers["bank_api"], offers["offers"]["link_id"].iloc[0]
    assert httpx.get(f"{api}/v1/clients/{some}/offers", verify=False).status_code == 401
    unknown = c.get(f"{api}/v1/clients/{'0' * 32}/offers")
    assert unknown.status_code == 404 and "unknown link_id" in unknown.json()["detail"]
    assert c.get(f"{api}/v1/clients/not-a-link/offers").status_code == 422
    decide = {p: tomllib.loads(offers["paths"][p].read_text())["decide"] for p in ("bank", "market")}
    with _mtls(offers, "market") as node:       # the marketplace node cannot ask for the bank's offers
        assert node.get(f"https://{decide['bank']['listen']}/v1/clients/{some}/offers").status_code == 404
    body = {"model_versions": ["0" * 16], "link_ids": [some]}
    assert c.post(f"https://{decide['market']['api_listen']}/v1/offers/bits", json=body).status_code == 404
    with _mtls(offers, "bank") as node:
        mismatch = node.post(f"https://{decide['market']['listen']}/v1/offers/bits", json=body)
        assert mismatch.status_code == 409 and "not loaded" in mismatch.json()["detail"]
        none = node.post(f"https://{decide['market']['listen']}/v1/offers/content",
                         json={"product": "deposit", "link_ids": [some]})
        assert none.status_code == 404


def test_the_marketplace_sends_content_only_for_offered_clients_and_only_public_names(offers):
    o = offers["offers"]
    entries = [json.loads(line) for line in offers["audit"].splitlines() if line.strip()]
    sent = sum(e["records"] for e in entries if e["message"] == "offer content cashback_card")
    assert sent == int((o["offered"] & (o["product"] == "cashback_card")).sum()) > 0
    scored = sum(e["records"] for e in entries if e["message"] == "offer bits")
    assert scored == o["link_id"].nunique()
    listen = tomllib.loads(offers["paths"]["market"].read_text())["decide"]["listen"]
    ids = o["link_id"].drop_duplicates().head(50).tolist()
    with _mtls(offers, "bank") as node:
        raw = node.post(f"https://{listen}/v1/offers/content", json={"product": "cashback_card", "link_ids": ids})
        versions = json.loads(Path(json.loads((offers["world"] / "nodes" / "offers-bank.json").read_text())["models"]
                                   ["cashback_card"]).read_text())["model_id"]
        bits = node.post(f"https://{listen}/v1/offers/bits", json={"model_versions": [versions], "link_ids": ids})
    answer = json.loads(raw.content)
    assert set(answer) == {"found", "categories"} and all(answer["found"])
    assert all(len(c) == 3 and set(c) <= set(CATALOG.categories) for c in answer["categories"])
    assert not any(ch.isdigit() for ch in raw.content.decode())              # no amounts, counts or ids
    b = json.loads(bits.content)
    assert set(b) == {"found", "bits"} and list(b["bits"]) == [versions] and len(b["bits"][versions]) == len(ids)
    assert b"." not in bits.content                                             # no numbers: bits and ids only
    market_part = json.loads((offers["world"] / "nodes" / "offers-market.json").read_text())["models"]["cashback_card"]
    k = len(PassiveScorer(model_io.load(market_part, "passive")).split_ids)
    assert all(decode_bits(text, k) is not None for text in b["bits"][versions])   # one bit per marketplace split


def test_the_offer_report_renders_in_a_real_browser(offers, chromium):
    shown = render(chromium, offers["world"] / "offers.html")
    images, body, errors = shown["images"], shown["body"], shown["errors"]
    assert shown["title"] == "Next best offers"
    assert {i[0] for i in images} == {"Top-1 acceptance", "Revenue per 1,000 contacts", "Acceptance by propensity "
                                      "decile", "Propensity AUC per product", "Offer mix", "Withheld"}
    for alt, complete, natural_width, shown_width in images:
        assert complete and natural_width > 200 and shown_width > 100, alt
    fed = next(s for s in offers["result"]["evaluation"]["strategies"] if s["strategy"] == "federated")
    for text in ("Uplift on the held-out campaigns", "bank only", "federated", f"{fed['acceptance']:.2%}",
                 "cashback_card", "pd_above_cutoff"):
        assert text in body, text
    assert not errors


def test_the_offers_endpoint_survives_schemathesis(offers):
    proc = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run", f"{offers['bank_api']}/openapi.json",
                           "--checks", "not_a_server_error", "--header", f"X-API-Key: {offers['key']}",
                           "--tls-verify", "false", "--max-examples", "20", "--workers", "1",
                           "--include-path-regex", "offers"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Tested: 1" in proc.stdout and "failed" not in proc.stdout.split("Test cases:")[-1], proc.stdout[-1500:]


def test_the_marketplace_holds_the_bank_to_the_agreed_daily_volume_of_content(offers):
    """A bank node that asks for every client's content, offered or not: once past the agreed volume
    the marketplace refuses whole requests (429, Retry-After), counts it, and repeats cost nothing."""
    from fastapi.testclient import TestClient

    from tandem.decide.api import market_app
    from tandem.decide.state import ApiClients, ServiceState, load_decide_config
    from tandem.offers.quota import ContentQuota
    from tandem.offers.service import attach_offers
    from tandem.store import open_store

    config = offers["paths"]["market"].with_name("decide-market-quota.toml")    # paths resolve beside it
    text = offers["paths"]["market"].read_text()
    assert 'state_dir = "state-market"' in text
    text = text.replace('state_dir = "state-market"', 'state_dir = "state-market-quota"')   # its own reveal log
    config.write_text(text.replace("\n[offers]\n", "\n[offers]\ncontent_daily = 60\n"))
    cfg = load_decide_config(config)
    store = open_store(cfg.node.store, read_only=True)
    try:
        state = ServiceState(cfg, store, "passive")
        apps = [("", market_app(state, None, "mtls"), True)]
        attach_offers(apps, str(config), cfg, state, store, None, "passive", None, ApiClients(set()))
        ids = offers["offers"]["link_id"].drop_duplicates().head(80).tolist()
        with TestClient(apps[0][1]) as bank:
            def ask(link_ids):
                return bank.post("/v1/offers/content", json={"product": "cashback_card", "link_ids": link_ids})

            assert ask(ids[:50]).status_code == 200
            assert ask(ids[:50]).status_code == 200                       # the same reveals again: free
            over = ask(ids[40:80])                                         # 30 new: 80 > 60
            assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
            assert "categories" not in over.json()                          # nothing of it revealed
            assert ask(ids[50:60]).status_code == 200                       # 60: still within the day's volume
        assert state.counters["offer_content"]() == {"per_day": 60, "today": 60, "refused": 1}
        restarted = ContentQuota("bank", 60, cfg.node.state_dir / "offers")    # a restart keeps the day's count
        assert restarted.stats()["today"] == 60 and restarted.admit("cashback_card", ids[60:61]) is not None
        assert restarted.admit("cashback_card", ids[:10]) is None                      # repeats still free
    finally:
        store.close()


def test_both_audit_logs_reconcile_and_a_dropped_line_is_found(offers, tmp_path):
    bank_log, market_log = tmp_path / "bank-audit.jsonl", tmp_path / "market-audit.jsonl"
    bank_log.write_text(offers["bank_audit"])                               # both logs right after the batch
    market_log.write_text(offers["audit"])
    agree = run_cli("audit", str(bank_log), "--reconcile", str(market_log))
    assert agree.returncode == 0 and "both logs agree" in agree.stdout, agree.stderr
    lines = offers["audit"].splitlines()
    cut = next(i for i, line in enumerate(lines) if '"offer content cashback_card request"' in line)
    market_log.write_text("\n".join(lines[:cut] + lines[cut + 1:]) + "\n")  # one content request the market hides
    differ = run_cli("audit", str(bank_log), "--reconcile", str(market_log))
    assert differ.returncode == 1 and "offer content cashback_card request (sent)" in differ.stderr, differ.stderr

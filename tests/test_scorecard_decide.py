"""The scorecard as the decision service's customer model (issue 15): both services run a federated scorecard
for customers (sellers keep a boosted model); an online checkout and the batch `tandem score` give the PD the
two model parts give for that buyer; `tandem monitor` reads the portfolio's scores and the bank's features."""

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import one_line_error, run_cli

from tandem.decide.local import TRAIN, Service, train_models, write_decide_configs
from tandem.decide.monitor import monitor, parse_day
from tandem.decide.state import key_hash, load_decide_config
from tandem.demo import export_training_files
from tandem.errors import InputError
from tandem.features.rows import rows
from tandem.learn.options import TrainingOptions
from tandem.learn.scorecard.job import default_options_json
from tandem.learn.scorecard.local import scorecard_local
from tandem.learn.scorecard.model import final_bins
from tandem.learn.scorecard.points import Scaling
from tandem.learn.scorecard.scorer import ActiveScorecardScorer, PassiveScorecardScorer
from tandem.learn.scorecard.stability import SCORE_DECIMALS
from tandem.link.local import link_world
from tandem.store import open_store
from tandem.world.generate import generate_world

ARGS = {**TRAIN, "trees": 4, "key_bits": 1024}
BUYERS = 3


def _checkout(s, request_id, user):
    return httpx.post(s["market"].api + "/v1/checkout", verify=False, headers={"X-API-Key": s["key"]}, timeout=30,
                      json={"request_id": request_id, "user_id": user,
                            "order": {"amount": 15000.0, "currency": "RUB", "categories": ["electronics"]}})


def _binnable(files: dict[str, Path]) -> dict[str, Path]:
    """The training files without the columns that are almost constant in this small world (fewer than 50 rows
    off the commonest value: the scorecard cannot bin them and asks to drop them)."""
    for path in files.values():
        frame = pd.read_parquet(path)
        rare = [c for c in frame.columns if len(frame) - frame[c].value_counts(dropna=False).iloc[0] < 50]
        frame.drop(columns=[c for c in rare if c != "default"]).to_parquet(path)
    return files


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Scorecard for customers, boosted for sellers; a few checkouts, then the bank stops and scores in batch."""
    world = tmp_path_factory.mktemp("scorecard-decide") / "world"
    cfg = world.parent / "sellers.toml"
    cfg.write_text("[population]\npersons_per_seller = 5\n\n[sellers]\nbusiness_loan_share = 0.8\n")
    generate_world(6000, 11, world, config=cfg, evaluate=False)
    link_world(world, entities=["customers", "sellers"], count_only=False)
    card = scorecard_local(_binnable(export_training_files(world, "customers")), "link_id", "bank", "default",
                           TrainingOptions(key_bits=1024), default_options_json(), world / "train" / "scorecard-nodes")
    models = train_models(world, entities=["sellers"], args=ARGS)
    models["customers"] = {**card["bank"], "market": card["market"]}
    paths, key = write_decide_configs(world, models)
    (world / "nodes" / "admin-keys.txt").write_text(key_hash("operator-" + key) + "\n")
    for path in paths.values():                                  # both operators may reload their service
        path.write_text(path.read_text() + 'admin_keys = "admin-keys.txt"\n')
    s = {"world": world, "paths": paths, "key": key, "models": {p: Path(card[p]["model_path"]) for p in card}}
    s["bank"], s["market"] = Service(paths["bank"]).wait_ready(), Service(paths["market"]).wait_ready()
    try:
        con = duckdb.connect(str(world / "market.duckdb"), read_only=True)
        users = [r[0] for r in con.sql("SELECT local_id FROM link_customers ORDER BY link_id").fetchall()]
        con.close()
        s["replies"] = [_checkout(s, f"card-{i:04d}", u) for i, u in enumerate(users[:BUYERS - 1])]
        s["reloads"] = [httpx.post(s[p].api + "/v1/admin/reload", verify=False, timeout=30,
                                   headers={"X-Admin-Key": "operator-" + key}) for p in ("bank", "market")]
        s["replies"].append(_checkout(s, f"card-{BUYERS - 1:04d}", users[BUYERS - 1]))  # after the reload
        s["bank"].stop()                                        # the bank's store is free: batch scoring
        s["score"] = run_cli("score", "--config", str(paths["bank"]), "--entity", "customers")
    finally:
        s["bank"].stop()
        s["market"].stop()
    return s


def _expected_pds(s, link_ids: list[str]) -> dict[str, float]:
    """Each buyer's PD from the two model files and each party's feature rows (its store, the config's as_of)."""
    bank = ActiveScorecardScorer(json.loads(s["models"]["bank"].read_text()))
    market = PassiveScorecardScorer(json.loads(s["models"]["market"].read_text()))
    X = {}
    for party, scorer in (("bank", bank), ("market", market)):
        cfg = load_decide_config(str(s["paths"][party]))
        store = open_store(cfg.node.store, read_only=True)
        try:
            table = rows(store, party, "customers", cfg.as_of).to_pandas().set_index("link_id")
        finally:
            store.close()
        X[party] = table.loc[link_ids, scorer.names].to_numpy(dtype=float)
    return {lid: bank.score(X["bank"][i], market.row_bits(X["market"][i]))[0] for i, lid in enumerate(link_ids)}


def test_checkout_and_batch_score_with_the_scorecard_give_its_pd(served):
    s = served
    assert all(r.status_code == 200 for r in s["replies"] + s["reloads"]), [r.text for r in s["replies"] + s["reloads"]]
    model_id = json.loads(s["models"]["bank"].read_text())["model_id"]
    assert all(r.json()["current"]["customers"] == model_id for r in s["reloads"])
    assert s["score"].returncode == 0, s["score"].stderr
    decisions = {d["link_id"]: d for d in (r.json() for r in s["replies"])}
    con = duckdb.connect(str(s["world"] / "bank.duckdb"), read_only=True)
    online = dict(con.execute("SELECT link_id, pd FROM decisions WHERE request_id LIKE 'card-%'").fetchall())
    batch = dict(con.sql("SELECT link_id, pd FROM scores_customers").fetchall())
    versions = {v for (v,) in con.sql("SELECT DISTINCT model_version FROM scores_customers").fetchall()}
    con.close()
    model = json.loads(s["models"]["bank"].read_text())
    assert versions == {model["model_id"]} and len(online) == BUYERS
    expected = _expected_pds(s, list(decisions))
    own = {f["name"].replace("_", " ") for f in model["features"] if "prebins" in f}
    for lid in decisions:
        assert abs(online[lid] - expected[lid]) < 1e-9 and abs(batch[lid] - expected[lid]) < 1e-9
    reasons = [r for d in decisions.values() for r in d["reasons"]]
    assert reasons and all((r["party"], r["description"]) == ("market", "marketplace behaviour")
                           or (r["party"] == "bank" and r["description"] in own) for r in reasons), reasons


def test_monitor_gives_the_score_psi_of_the_portfolio_and_the_csi_of_each_bank_feature(served, tmp_path):
    s = served
    assert s["score"].returncode == 0, s["score"].stderr
    today = datetime.now(UTC).date()
    out = tmp_path / "monitor.json"
    proc = run_cli("monitor", "--config", str(s["paths"]["bank"]), "--from", str(today - timedelta(days=1)),
                   "--to", str(today + timedelta(days=1)), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Score stability" in proc.stdout and "Characteristic stability" in proc.stdout
    m = json.loads(out.read_text())
    model = json.loads(s["models"]["bank"].read_text())
    con = duckdb.connect(str(s["world"] / "bank.duckdb"), read_only=True)
    pds = np.array([p for (p,) in con.sql("SELECT pd FROM scores_customers").fetchall()])
    con.close()
    o = model["options"]                                        # the score PSI by hand: points, bands, shares
    points = Scaling(o["pdo"], o["base_score"], o["base_odds"]).score_from_logit(np.log(pds / (1 - pds)))
    ref = model["score_reference"]
    banded = np.round(points, SCORE_DECIMALS)                  # the same score by two paths: last bits differ
    actual = np.bincount(np.searchsorted(ref["edges"], banded, side="right"), minlength=len(ref["counts"]))
    e = np.maximum(np.array(ref["counts"]) / sum(ref["counts"]), 1e-4)
    a = np.maximum(actual / actual.sum(), 1e-4)
    psi = math.fsum((a - e) * np.log(a / e))
    light = "green" if psi < 0.1 else "amber" if psi <= 0.25 else "red"
    assert m["score"]["scores"] == len(pds) and abs(m["score"]["psi"] - psi) < 1e-12 and m["score"]["light"] == light
    assert [r["actual"] for r in m["score"]["rows"]] == actual.tolist()
    own = [f["name"] for f in model["features"] if "prebins" in f]
    assert own and [f["feature"] for f in m["features"]] == own
    cfg = load_decide_config(str(s["paths"]["bank"]))
    as_of = min(today + timedelta(days=1), cfg.as_of)             # the world's node is pinned to a past day
    assert m["as_of"] == str(as_of)
    store = open_store(cfg.node.store, read_only=True)
    try:
        table = rows(store, "bank", "customers", as_of).to_pandas()
    finally:
        store.close()
    entries = {e["name"]: e for e in model["features"]}
    for f in m["features"]:                                       # each feature's bins of the bank's rows then
        e = entries[f["feature"]]
        bins = final_bins(e, table[f["feature"]].to_numpy(dtype=float, na_value=np.nan))
        assert [r["actual"] for r in f["rows"]] == np.bincount(bins, minlength=len(e["counts"])).tolist()
        assert [r["expected"] for r in f["rows"]] == e["counts"] and sum(r["actual"] for r in f["rows"]) == len(table)
        assert abs(f["psi"] - math.fsum(r["psi"] for r in f["rows"])) < 1e-12
        assert f["light"] == ("green" if f["psi"] < 0.1 else "amber" if f["psi"] <= 0.25 else "red")


def test_monitor_errors_are_one_line(served):
    bank = str(served["paths"]["bank"])
    proc = run_cli("monitor", "--config", bank, "--from", "2001-01-01", "--to", "2001-01-31")
    assert proc.returncode == 2
    one_line_error(proc, "no customers scores", "2001-01-01", "run tandem score")
    with pytest.raises(InputError, match="--from must be a date"):
        parse_day("2001-13-01", "--from")
    with pytest.raises(InputError, match="is after --to"):
        monitor(bank, "customers", date(2001, 2, 1), date(2001, 1, 31))
    with pytest.raises(InputError, match="the model is not a scorecard"):
        monitor(bank, "sellers", date(2001, 1, 1), date(2001, 1, 31))    # sellers keep the boosted model

"""`tandem scorecard` (issue 15): both parties as node processes over loopback mutual TLS; the federated
scorecard equals the same pipeline on pooled rows (IV, selection, coefficients, test AUC) and lands near
scikit-learn's exact logistic regression; each model part names only its own party's features."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli


def _files(tmp_path, n=4000, label=None):
    rng = np.random.default_rng(7)
    z = rng.normal(size=(n, 4))
    logit = -1.6 + 0.9 * z[:, 0] - 0.7 * z[:, 1] + 0.8 * z[:, 2] - 0.5 * z[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = [f"C{i}" for i in range(n)]
    income = np.round(np.exp(10 + 0.4 * -z[:, 0]), 0)
    income[rng.random(n) < 0.03] = -999  # a special code
    debt = np.where(rng.random(n) < 0.05, np.nan, z[:, 1])
    bank = pd.DataFrame({"cid": ids, "income": income, "debt": debt, "noise": rng.normal(size=n),
                         "default": y if label is None else label})
    bank.to_csv(tmp_path / "bank.csv", index=False)
    market = pd.DataFrame({"cid": ids, "returns": z[:, 2], "returns_copy": z[:, 2] + 0.05 * rng.normal(size=n),
                           "traffic": -z[:, 3], "junk": rng.normal(size=n)})
    market.sample(frac=0.97, random_state=1).to_parquet(tmp_path / "market.parquet")


def _scorecard(tmp_path, *extra):
    return run_cli("scorecard", "--party", f"bank={tmp_path / 'bank.csv'}", "--party",
                   f"market={tmp_path / 'market.parquet'}", "--id", "cid", "--label", "bank:default",
                   "--workdir", str(tmp_path / "work"), "--metrics-out", str(tmp_path / "metrics.json"), "--key-bits", "1024",
                   *extra)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("scorecard")
    _files(tmp_path)
    proc = _scorecard(tmp_path, "--special-code", "-999")
    assert proc.returncode == 0, proc.stderr
    return tmp_path, proc, json.loads((tmp_path / "metrics.json").read_text())


def test_scorecard_equals_the_pooled_pipeline_and_keeps_each_party_to_its_own_features(fitted):
    tmp_path, proc, m = fitted
    for key in ("auc", "auc_plaintext", "auc_sklearn", "ks", "gini", "n_train", "n_test", "n_features_in",
                "n_features_selected", "iv", "train_seconds", "bytes_sent"):
        assert key in m, key
    assert abs(m["auc"] - m["auc_plaintext"]) < 1e-9
    assert m["coef_max_abs_diff"] < 1e-6 and m["pd_max_abs_diff"] < 1e-9
    assert abs(m["auc"] - m["auc_sklearn"]) < 0.01
    assert m["auc"] > 0.75
    assert set(m["iv"]) == {"income", "debt", "noise", "f0", "f1", "f2", "f3"}
    assert max(abs(m["iv"][k] - m["iv_plaintext"][k]) for k in m["iv"]) < 1e-9
    status = {r["name"]: r["status"] for r in m["selection"]}
    assert status["noise"].startswith("IV") and status["f3"].startswith("IV")       # below iv_min
    kept, dropped = sorted(["f0", "f1"], key=lambda f: status[f] != "selected")  # returns or its copy goes
    assert status[kept] == "selected" and status[dropped].startswith(f"correlated with {kept}")
    assert m["n_features_in"] == 7 and m["n_features_selected"] == 4
    assert m["bytes_sent"]["bank"] > 0 and m["bytes_sent"]["market"] > 0
    bank = json.loads(open(m["models"]["bank"]).read())
    market = json.loads(open(m["models"]["market"]).read())
    assert bank["format"] == market["format"] == "tandem-scorecard/1" and bank["model_id"] == market["model_id"]
    assert not any(w in json.dumps(bank) for w in ("returns", "traffic", "junk"))
    assert not any(w in json.dumps(market) for w in ("income", "debt", "noise", "default"))
    assert [f["as"] for f in market["features"]] == sorted([kept, "f2"])
    bank_points = {(r["feature"], r["bin"]): r["points_exact"] for r in m["points"]}
    for f in market["features"]:                       # the marketplace holds its own points, as the bank has them
        assert np.allclose(f["points"], [bank_points[(f["as"], b)] for b in range(len(f["points"]))], atol=1e-9)
    assert "Scorecard (test)" in proc.stdout and "Feature selection" in proc.stdout and "Points of bank" in proc.stdout
    assert any(r["label"].startswith("special") for r in m["points"] if r["feature"] == "income")  # -999's own bin
    assert m["points"][0]["label"] == "base points" and {r["feature"] for r in m["points"][1:]} == set(
        m["selected"])
    page = open(m["report"]).read()
    assert "Points table" in page and not any(w in page for w in ("returns", "traffic", "junk"))


@pytest.mark.parametrize("case,fragments", [
    ("label", ("label column 'default' must hold only 0 and 1",)),
    ("one party", ("the scorecard takes the label holder and one other party",)),
    ("one value", ("market's feature f1 (its feature 2", "cannot be binned", "drop it")),
])
def test_bad_scorecard_input_fails_with_one_line(tmp_path, case, fragments):
    _files(tmp_path, label=np.where(np.arange(4000) % 3 == 0, 2, 0) if case == "label" else None)
    if case == "one value":
        market = pd.read_parquet(tmp_path / "market.parquet")
        market["returns_copy"] = 7.0
        market.to_parquet(tmp_path / "market.parquet")
    if case == "one party":
        proc = run_cli("scorecard", "--party", f"bank={tmp_path / 'bank.csv'}", "--id", "cid", "--label",
                       "bank:default", "--workdir", str(tmp_path / "work"))
    else:
        proc = _scorecard(tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(f in lines[0] for f in fragments) and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "metrics.json").exists()
    assert "returns_copy" not in lines[0]                # the bank hears of the marketplace's column by position


def test_online_batch_and_pooled_pd_agree_and_reasons_name_the_points_lost(fitted):
    """The decision service's scorers on the model parts: one row at a time (as a checkout) equals the batch
    scoring and the pooled reference to 1e-9; the marketplace's bins travel one-hot, its reasons under its name."""
    from tandem.learn.scorecard.options import BinningOptions, ScorecardOptions
    from tandem.learn.scorecard.reference import pooled_scorecard
    from tandem.learn.scorecard.scorer import ActiveScorecardScorer, PassiveScorecardScorer

    tmp_path, _, m = fitted
    bank_part = ActiveScorecardScorer(json.loads(open(m["models"]["bank"]).read()))
    market_part = PassiveScorecardScorer(json.loads(open(m["models"]["market"]).read()))
    files = {"bank": tmp_path / "bank.csv", "market": tmp_path / "market.parquet"}
    ref = pooled_scorecard(files, "cid", "bank", "default", 42, 0.2, BinningOptions(special_codes=(-999.0,)),
                           ScorecardOptions())
    bank = pd.read_csv(files["bank"]).set_index("cid").loc[ref["test_ids"]]
    market = pd.read_parquet(files["market"]).set_index("cid").loc[ref["test_ids"]]
    X, Xm = bank[bank_part.names].to_numpy(float), market[market_part.names].to_numpy(float)
    bits = market_part.bits(Xm)
    assert bits.shape == (len(X), bank_part.n_bits) and (bits.sum(axis=1) == 2).all()  # one bin per feature
    batch = bank_part.score_batch(X, bits)
    online = [bank_part.score(x, market_part.row_bits(xm)) for x, xm in zip(X[:200], Xm[:200])]
    pooled = 1 / (1 + np.exp(-np.asarray(ref["test_logit"])))
    np.testing.assert_allclose(batch, pooled, rtol=0, atol=1e-9)
    np.testing.assert_allclose([pd_ for pd_, _ in online], batch[:200], rtol=0, atol=1e-12)
    lost = online[0][1]
    assert set(lost) == set(bank_part.names) | {"market"} and min(lost.values()) >= 0
    from tandem.decide.scoring import ScoringError
    with pytest.raises(ScoringError, match="exactly one bin"):
        bank_part.score(X[0], np.zeros(bank_part.n_bits, bool))


def test_a_marketplace_killed_mid_fit_stops_the_bank_with_one_line_and_a_rerun_works(tmp_path):
    from tandem.devcluster import NodeProcess, node_configs

    _files(tmp_path, n=3000)
    started = []

    def run(folder, on_event=lambda name, event: None):
        configs = node_configs(folder, {"bank": "bank.duckdb", "market": "market.duckdb"},
                               {"bank": "bank", "market": "bank"}, timeout_s=10)
        market = NodeProcess("market", ["--config", str(configs["market"]), "--once", "--data",
                                        str(tmp_path / "market.parquet"), "--id", "cid"], on_event)
        started.append(market)
        assert market.ready.wait(60)
        bank = NodeProcess("bank", ["--config", str(configs["bank"]), "--scorecard", "market", "--data",
                                    str(tmp_path / "bank.csv"), "--id", "cid", "--label", "default",
                                    "--key-bits", "1024"], on_event)
        started.append(bank)
        return bank, market

    procs = {}

    def kill_at_the_moments(name, event):
        if name == "bank" and event.get("what") == "second moments":
            procs["market"].proc.kill()

    try:
        procs["bank"], procs["market"] = run(tmp_path / "run", kill_at_the_moments)
        assert procs["bank"].wait(timeout=120) != 0
        error = procs["bank"].error()
        assert "market" in error and "\n" not in error and "Traceback" not in "".join(procs["bank"]._stderr)
        assert not list((tmp_path / "run" / "state-bank").glob("models/*.json"))           # nothing written
        bank, market = run(tmp_path / "run")
        assert bank.wait(timeout=120) == 0 and market.wait(timeout=60) == 0, bank.error()
        assert bank.result()["metrics"]["auc"] > 0.7 and list((tmp_path / "run" / "state-bank").glob("models/*.json"))
    finally:
        for p in started:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()


def test_text_columns_are_categorical_features_on_both_sides_and_a_tab_file_is_sniffed(tmp_path):
    """String columns (a housing type at the bank, a Y/N flag at the marketplace) are binned by category,
    with the same IV and coefficients as the pooled pipeline; the marketplace's file is tab-separated."""
    rng = np.random.default_rng(3)
    n = 3000
    housing = rng.choice(["own", "rent", "free", "council"], n, p=[0.5, 0.3, 0.15, 0.05])
    flag = rng.choice(["Y", "N"], n)
    x = rng.normal(size=n)
    logit = -1.5 + 0.9 * x + np.select([housing == "rent", housing == "free"], [0.8, 1.2], 0) + (flag == "Y") * 0.7
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = [f"C{i}" for i in range(n)]
    pd.DataFrame({"cid": ids, "income": x, "housing": housing, "default": y}).to_csv(tmp_path / "bank.csv", index=False)
    market = pd.DataFrame({"cid": ids, "premium": flag, "visits": rng.poisson(3, n)})
    market.loc[rng.random(n) < 0.05, "premium"] = None
    market.to_csv(tmp_path / "market.tsv", sep="\t", index=False)
    proc = run_cli("scorecard", "--party", f"bank={tmp_path / 'bank.csv'}", "--party", f"market={tmp_path / 'market.tsv'}",
                   "--id", "cid", "--label", "bank:default", "--workdir", str(tmp_path / "work"),
                   "--metrics-out", str(tmp_path / "metrics.json"), "--key-bits", "1024")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["iv"]) == {"income", "housing", "f0", "f1"}                # f1: the text flag, after numeric visits
    assert max(abs(m["iv"][k] - m["iv_plaintext"][k]) for k in m["iv"]) < 1e-9
    assert m["coef_max_abs_diff"] < 1e-6 and abs(m["auc"] - m["auc_plaintext"]) < 1e-9
    assert "housing" in m["selected"] and "f1" in m["selected"]
    labels = {r["label"] for r in m["points"] if r["feature"] == "housing"}
    assert any("rent" in label for label in labels)                      # the bank's own categories, by name
    assert not any("Y" == r["label"] for r in m["points"] if r["feature"] == "f1")  # the marketplace's stay bins


def test_a_passive_party_shares_its_feature_names_only_when_its_config_says_so(tmp_path):
    from tandem.learn.scorecard.job import wire_names
    from tandem.node_config import load_node_config

    names = ["NumberOfTime30-59DaysPastDueNotWorse", "NumberOfTime60-89DaysPastDueNotWorse", "30d visits", "visits"]
    assert wire_names(names, share=False) == ["f0", "f1", "f2", "f3"]
    shared = wire_names(names, share=True)
    assert shared[:2] == ["numberoftime30_59dayspastduenotw", "numberoftime60_89dayspastduenotw"]
    assert shared[2:] == ["f_30d_visits", "visits"] and len(set(shared)) == 4
    from tandem.protocols.message import NAME
    assert all(NAME.fullmatch(n) for n in shared)                       # each passes the wire's identifier rule
    from tandem.devcluster import node_configs
    path = node_configs(tmp_path, {"market": "m.duckdb"}, {"market": "bank"}, 10)["market"]
    assert load_node_config(path).share_names is False                  # opaque unless the marketplace says so
    path.write_text(path.read_text() + "\n[train]\nshare_names = true\n")
    assert load_node_config(path).share_names is True
    path.write_text(path.read_text().replace("share_names = true", 'share_names = "yes"'))
    with pytest.raises(Exception, match=r"\[train\] share_names must be true or false"):
        load_node_config(path)

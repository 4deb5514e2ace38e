"""`tandem train`: each party its own process over loopback mutual TLS; the command other tools rely on."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli


def _files(tmp_path, n=1500, market_ids=None):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - 1.2 * X[:, 2])))).astype(int)
    ids = [f"C{i}" for i in range(n)]
    pd.DataFrame({"cid": ids, "income": X[:, 0], "debt": X[:, 1], "default": y}).to_csv(tmp_path / "bank.csv",
                                                                                         index=False)
    market = pd.DataFrame({"cid": market_ids or ids, "returns": X[:, 2], "cod": X[:, 3]})
    market.sample(frac=0.95, random_state=1).to_parquet(tmp_path / "market.parquet")


def _train(tmp_path, *extra):
    return run_cli("train", "--party", f"bank={tmp_path / 'bank.csv'}", "--party",
                   f"market={tmp_path / 'market.parquet'}", "--id", "cid", "--label", "bank:default",
                   "--test-fraction", "0.2", "--seed", "42", "--trees", "4", "--max-depth", "3",
                   "--learning-rate", "0.3", "--bins", "16", "--workdir", str(tmp_path / "work"), *extra)


def test_train_writes_metrics_models_and_matches_the_pooled_reference(tmp_path):
    _files(tmp_path)
    proc = _train(tmp_path, "--metrics-out", str(tmp_path / "metrics.json"), "--first-tree-active-only")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("auc", "auc_plaintext", "auc_xgboost", "ks", "train_seconds", "seconds_per_tree", "bytes_sent",
                "n_train", "n_test"):
        assert key in m
    assert abs(m["auc"] - m["auc_plaintext"]) < 1e-9                 # lossless
    assert abs(m["auc"] - m["auc_xgboost"]) < 0.03
    assert m["n_train"] + m["n_test"] == 1425 and m["bytes_sent"]["bank"] > 0 and m["bytes_sent"]["market"] > 0
    bank_model = json.loads(open(m["models"]["bank"]).read())
    market_model = json.loads(open(m["models"]["market"]).read())
    assert bank_model["role"] == "active" and market_model["role"] == "passive"
    assert bank_model["model_id"] == market_model["model_id"]
    assert "returns" not in json.dumps(bank_model) and "income" not in json.dumps(market_model)
    # the HTML model report: charts are real PNGs, passive features stay opaque
    import base64
    import re
    from html.parser import HTMLParser

    page = open(m["report"]).read()
    HTMLParser().feed(page)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 6 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    for section in ("ROC curve", "KS", "Lift", "Calibration", "Importance by party", "market</td><td>(not shared)"):
        assert section in page
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)      # names, not random base64 letters
    assert "returns" not in text and "cod" not in text


@pytest.mark.parametrize("market_ids,label,message", [
    ([f"X{i}" for i in range(1500)], "bank:default", "no ids shared with the other party"),
    (None, "bank:debt", "label column 'debt' must hold only 0 and 1"),
    (None, "shop:default", "--label names party 'shop'"),
])
def test_bad_training_input_fails_with_one_line(tmp_path, market_ids, label, message):
    _files(tmp_path, market_ids=market_ids)
    proc = run_cli("train", "--party", f"bank={tmp_path / 'bank.csv'}", "--party",
                   f"market={tmp_path / 'market.parquet'}", "--id", "cid", "--label", label, "--trees", "2",
                   "--workdir", str(tmp_path / "work"), "--metrics-out", str(tmp_path / "metrics.json"))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_three_parties_paillier_and_256_bins_through_the_command(tmp_path):
    _files(tmp_path)
    rng = np.random.default_rng(5)
    pd.DataFrame({"cid": [f"C{i}" for i in range(1500)], "calls": rng.normal(size=1500)}).to_csv(
        tmp_path / "telco.csv", index=False)
    proc = run_cli("train", "--party", f"bank={tmp_path / 'bank.csv'}", "--party",
                   f"market={tmp_path / 'market.parquet'}", "--party", f"telco={tmp_path / 'telco.csv'}",
                   "--id", "cid", "--label", "bank:default", "--trees", "3", "--max-depth", "3", "--bins", "256",
                   "--he", "paillier", "--key-bits", "1024", "--early-stopping", "2",
                   "--workdir", str(tmp_path / "work"), "--metrics-out", str(tmp_path / "metrics.json"))
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(m["auc"] - m["auc_plaintext"]) < 1e-9 and set(m["bytes_sent"]) == {"bank", "market", "telco"}
    assert json.loads(open(m["models"]["bank"]).read())["passive_parties"] == ["market", "telco"]


_STARTED: list = []


@pytest.fixture(autouse=True)
def _no_node_left():
    """A node the test started and no longer waits for (its peer failed first) is killed at the end."""
    yield
    while _STARTED:
        proc = _STARTED.pop().proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _node_run(folder, on_event=lambda name, event: None):
    """Start the market node (serving once) and the bank node training with it; return both processes."""
    from tandem.devcluster import NodeProcess, node_configs

    configs = node_configs(folder, {"bank": "bank.duckdb", "market": "market.duckdb"},
                           {"bank": "bank", "market": "bank"}, timeout_s=10)
    market = NodeProcess("market", ["--config", str(configs["market"]), "--once", "--data",
                                    str(folder.parent / "market.parquet"), "--id", "cid"], on_event)
    _STARTED.append(market)
    assert market.ready.wait(60)
    bank = NodeProcess("bank", ["--config", str(configs["bank"]), "--train", "market", "--data",
                                str(folder.parent / "bank.csv"), "--id", "cid", "--label", "default",
                                "--trees", "8", "--max-depth", "3", "--bins", "16", "--learning-rate", "0.3",
                                "--key-bits", "1024"], on_event)
    _STARTED.append(bank)
    return bank, market


def _model_trees(result: dict) -> list:
    """The label holder's trees with each passive split replaced by the passive party's own record of it."""
    bank = json.loads(open(result["bank"]["model_path"]).read())
    market = json.loads(open(result["market"]["model_path"]).read())["splits"]
    return [[{k: v for k, v in (market[n["split_id"]] if "split_id" in n else n).items() if k != "split_id"}
             | {"left": n["left"], "right": n["right"], "value": n["value"]} for n in tree] for tree in bank["trees"]]


def test_a_passive_party_killed_mid_training_stops_the_label_holder_and_a_rerun_resumes(tmp_path):
    _files(tmp_path)
    whole = {}
    for name, proc in zip(("bank", "market"), _node_run(tmp_path / "whole")):
        assert proc.wait(timeout=300) == 0, proc.error()
        whole[name] = proc.result()

    procs = {}

    def kill_after_three_trees(name, event):
        if name == "bank" and event.get("what") == "tree 3 of 8":
            procs["market"].proc.kill()

    procs["bank"], procs["market"] = _node_run(tmp_path / "run", kill_after_three_trees)
    assert procs["bank"].wait(timeout=120) != 0
    assert "market" in procs["bank"].error() and "Traceback" not in "".join(procs["bank"]._stderr)
    assert not list((tmp_path / "run" / "state-bank").glob("models/*.json"))           # no model written
    checkpoints = list((tmp_path / "run" / "state-bank" / "checkpoints").glob("*.json"))
    assert checkpoints                                                                 # but a checkpoint
    seed = json.loads(checkpoints[0].read_text())["goss_seed"]     # the label holder's private draw, kept

    rerun = {}
    for name, proc in zip(("bank", "market"), _node_run(tmp_path / "run")):
        assert proc.wait(timeout=300) == 0, proc.error()
        rerun[name] = proc.result()
    assert rerun["bank"]["resumed_trees"] >= 3 and rerun["bank"]["goss_seed"] == seed != whole["bank"]["goss_seed"]
    assert _model_trees(rerun) == _model_trees(whole)
    assert rerun["bank"]["metrics"]["auc"] == whole["bank"]["metrics"]["auc"]
    assert not list((tmp_path / "run" / "state-bank" / "checkpoints").glob("*.json"))


def test_a_text_column_at_the_label_holder_is_categorical_and_matches_the_pooled_reference(tmp_path):
    _files(tmp_path)
    bank = pd.read_csv(tmp_path / "bank.csv")
    rng = np.random.default_rng(3)
    segment = rng.choice(["retail", "sme", "corporate", "private"], len(bank)).astype(object)
    segment[rng.random(len(bank)) < 0.05] = None
    segment[:2] = "one-off"                                              # rare: the "other" bin
    flip = (segment == "sme") & (rng.random(len(bank)) < 0.5)           # the segment carries signal
    bank["default"] = np.where(flip, 1 - bank["default"], bank["default"])
    bank.insert(2, "segment", segment)
    bank.to_csv(tmp_path / "bank.csv", index=False)
    proc = _train(tmp_path, "--metrics-out", str(tmp_path / "metrics.json"))
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(m["auc"] - m["auc_plaintext"]) < 1e-9                     # lossless with the categorical column
    assert abs(m["auc"] - m["auc_xgboost"]) < 0.05
    bank_model = json.loads(open(m["models"]["bank"]).read())
    assert bank_model["binning"]["features"] == ["income", "debt", "segment"]
    assert bank_model["binning"]["categories"][2] == ["corporate", "private", "retail", "sme"]
    assert any(nd.get("feature") == "segment" and nd["left_categories"] for t in bank_model["trees"] for nd in t)


def test_a_text_column_at_the_passive_party_is_categorical_too(tmp_path):
    _files(tmp_path)
    market = pd.read_parquet(tmp_path / "market.parquet")
    bank = pd.read_csv(tmp_path / "bank.csv").set_index("cid")
    rng = np.random.default_rng(4)
    channel = rng.choice(["app", "web", "store"], len(market)).astype(object)
    channel[rng.random(len(market)) < 0.05] = None
    market["channel"] = channel
    market.to_parquet(tmp_path / "market.parquet")
    flip = set(market["cid"][(channel == "store") & (rng.random(len(market)) < 0.6)])
    bank["default"] = [1 if c in flip else d for c, d in zip(bank.index, bank["default"])]
    bank.reset_index().to_csv(tmp_path / "bank.csv", index=False)
    proc = _train(tmp_path, "--metrics-out", str(tmp_path / "metrics.json"))
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(m["auc"] - m["auc_plaintext"]) < 1e-9                     # lossless with the passive categorical
    assert abs(m["auc"] - m["auc_xgboost"]) < 0.05
    market_model = json.loads(open(m["models"]["market"]).read())
    assert market_model["binning"]["categories"] == [None, None, ["app", "store", "web"]]
    assert any("left_categories" in s for s in market_model["splits"].values())
    assert "channel" not in json.dumps(json.loads(open(m["models"]["bank"]).read()))

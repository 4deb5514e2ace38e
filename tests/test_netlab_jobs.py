"""Training and insight over the network lab: SecureBoost and an insight query between node processes
in a namespace of the test's own, over `wan` with 1% loss, and training through a 20-second partition
(tandem/netlab.py; see tests/test_netlab.py for the lab's own checks and the link over the same profiles).

The nodes' ``timeout_s`` is 10 s, as in test_netlab.py: shorter than the partition (a node waiting for
its partitioned peer stops with one line; the label holder's checkpoint makes the rerun resume), far
longer than what wan's 20 ms round trips and 200 ms loss holds make a node wait.
"""

import time

import pytest
from helpers import one_error_line
from test_insight import linked  # noqa: F401  (a fixture: the small world, linked)
from test_train import _files, _model_trees, _node_run

from tandem.devcluster import node_configs

TIMEOUT_S = 10
PARTITION_S = 20
TRAIN = ["--trees", "8", "--max-depth", "3", "--bins", "16", "--learning-rate", "0.3", "--key-bits", "1024"]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    """The same training on plain loopback: the model and metrics the lab runs must give."""
    folder = tmp_path_factory.mktemp("loop")
    _files(folder)
    out = {}
    for name, proc in zip(("bank", "market"), _node_run(folder / "nodes")):
        assert proc.wait(timeout=300) == 0, proc.error()
        out[name] = proc.result()
    return folder, out


def _configs(lab, folder):
    configs = node_configs(folder / "nodes", {"bank": "bank.duckdb", "market": "market.duckdb"},
                           {"bank": "bank", "market": "bank"}, timeout_s=TIMEOUT_S)
    lab.wire(configs)
    return configs


def _train(lab, configs, data, on_event=lambda name, event: None):
    market = lab.node("market", ["--config", str(configs["market"]), "--once", "--data",
                                 str(data / "market.parquet"), "--id", "cid"], on_event)
    assert market.ready.wait(60), market.error()
    bank = lab.node("bank", ["--config", str(configs["bank"]), "--train", "market", "--data", str(data / "bank.csv"),
                             "--id", "cid", "--label", "default", *TRAIN], on_event)
    bank.wait(timeout=150)
    market.wait(timeout=TIMEOUT_S + 30)
    return bank, market


def _results(bank, market):
    assert (bank.proc.returncode, market.proc.returncode) == (0, 0), (bank.error(), market.error())
    return {"bank": bank.result(), "market": market.result()}


def test_training_over_wan_with_loss_grows_the_trees_loopback_grows(make_lab, tmp_path, loopback):
    data, whole = loopback
    lab = make_lab("wan", loss=0.01)
    began = time.monotonic()
    got = _results(*_train(lab, _configs(lab, tmp_path), data))
    assert _model_trees(got) == _model_trees(whole)                          # the same trees, split for split
    assert got["bank"]["metrics"]["auc"] == whole["bank"]["metrics"]["auc"]
    assert lab.losses() > 0
    print(f"8 trees over wan with 1% loss: {time.monotonic() - began:.1f} s, {lab.losses()} chunks held")
    assert not lab.close()


def test_a_partition_mid_training_ends_cleanly_and_the_rerun_resumes(make_lab, tmp_path, loopback):
    data, whole = loopback
    lab = make_lab("wan")
    configs = _configs(lab, tmp_path)
    cut = []

    def on_event(name, event):
        if name == "bank" and event.get("what") == "tree 3 of 8" and not cut:
            cut.append(lab.partition(PARTITION_S))

    bank, market = _train(lab, configs, data, on_event)
    assert cut, "the label holder never reported tree 3"
    if bank.proc.returncode == 0:                                            # the transport rode it out
        assert _model_trees(_results(bank, market)) == _model_trees(whole)
        return
    print(f"bank: {one_error_line(bank.stderr(), 'market')}")
    assert market.proc.returncode != 0
    state = tmp_path / "nodes" / "state-bank"
    assert not list(state.glob("models/*.json"))                             # no model written
    assert list((state / "checkpoints").glob("*.json"))                      # but the trees so far, kept
    assert cut[0].wait(PARTITION_S + 5)
    rerun = _results(*_train(lab, configs, data))
    assert rerun["bank"]["resumed_trees"] >= 2
    assert _model_trees(rerun) == _model_trees(whole)
    assert rerun["bank"]["metrics"]["auc"] == whole["bank"]["metrics"]["auc"]
    assert not list((state / "checkpoints").glob("*.json"))
    assert not lab.close()


def _insight(node, configs, qfile):
    """One insight query between node processes (``node``: a NodeProcess maker); -> the bank's result event."""
    market = node("market", ["--config", str(configs["market"]), "--once"])
    assert market.ready.wait(60), market.error()
    bank = node("bank", ["--config", str(configs["bank"]), "--insight", "market", "--query", str(qfile)])
    assert bank.wait(timeout=120) == 0 and market.wait(timeout=60) == 0, (bank.error(), market.error())
    result = bank.result()
    return {k: v for k, v in result.items() if k not in ("session", "query_id", "seconds", "bytes_sent", "bytes_received")}


def test_an_insight_query_over_wan_with_loss_gives_the_loopback_figures(make_lab, linked, tmp_path, monkeypatch):
    import shutil

    from tandem.devcluster import NodeProcess, write_configs
    from tandem.insight.job import NOISE_OFF_ENV

    monkeypatch.setenv(NOISE_OFF_ENV, "1")   # exact figures, so that the two runs can be compared
    qfile = tmp_path / "q.toml"
    qfile.write_text('[[query]]\nname = "avg check"\ngroup_by = "bank.income_band"\n'
                     'measures = ["count", "mean(market.avg_check)"]\nnoise = false\n')
    worlds = {where: tmp_path / where for where in ("loop", "lab")}
    for folder in worlds.values():
        shutil.copytree(linked, folder)
    expected = _insight(lambda *a: NodeProcess(*a), write_configs(worlds["loop"], timeout_s=TIMEOUT_S), qfile)
    lab = make_lab("wan", loss=0.01)
    configs = write_configs(worlds["lab"], timeout_s=TIMEOUT_S)
    lab.wire(configs)
    got = _insight(lab.node, configs, qfile)
    assert got == expected and len(got["figures"]) >= 2, got
    assert not lab.close()

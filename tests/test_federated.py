"""The whole training job in memory: link on ids, align, split, train, predict, against the pooled reference."""

import threading

import numpy as np
import pandas as pd
import pytest

from tandem.engine import LocalEngine
from tandem.errors import InputError
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.federated import active_job, is_test, passive_job, read_party_file
from tandem.learn.metrics import roc_auc
from tandem.link.blinder import EngineBlinder
from tandem.protocols.wire import TrainRequest
from tandem.transport.base import memory_pair
from tandem.transport.session import Session

BLINDER = EngineBlinder(LocalEngine(0))


def _files(tmp_path, n=900, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - 1.2 * X[:, 2])))).astype(int)
    ids = [f"C{i:05d}" for i in range(n)]
    bank = pd.DataFrame({"cid": ids, "income": X[:, 0], "debt": X[:, 1], "default": y})
    keep = rng.random(n) < 0.9                                   # the marketplace knows 90% of them
    market = pd.DataFrame({"cid": np.array(ids)[keep], "returns": X[keep, 2], "cod": X[keep, 3]})
    market = market.sample(frac=1, random_state=1)               # its own row order
    bank.to_csv(tmp_path / "bank.csv", index=False)
    market.to_parquet(tmp_path / "market.parquet")
    return bank, market


def test_training_job_equals_the_pooled_reference(tmp_path):
    bank, market = _files(tmp_path)
    a = read_party_file(tmp_path / "bank.csv", "cid", "default")
    p = read_party_file(tmp_path / "market.parquet", "cid")
    request = TrainRequest("s", "boost/1", "m1", 42, 200_000, 6, 3, 16, 0.3, False)
    ca, cb = memory_pair("bank", "market")
    out = {}
    t = threading.Thread(target=lambda: out.update(
        passive=passive_job(Session(cb, "s", "boost/1", None, 30), p, request, BLINDER, party="market")))
    t.start()
    out["active"] = active_job(Session(ca, "s", "boost/1", None, 30), a, request, BLINDER, party="bank",
                               passive_party="market")
    t.join()
    res = out["active"]
    assert res["n_train"] + res["n_test"] == len(market) and res["n_test"] > 50
    # the pooled reference on the same rows and split (the split is a function of the ids' link ids,
    # so take the test ids the job reports)
    pooled = bank.merge(market, on="cid")
    test = pooled["cid"].isin(res["test_ids"]).to_numpy()
    cols = ["income", "debt", "returns", "cod"]
    ref = HistBoostingClassifier(n_trees=6, max_depth=3, learning_rate=0.3, bins=16, seed=42).fit(
        pooled.loc[~test, cols].to_numpy(), pooled.loc[~test, "default"].to_numpy())
    ref_scores = ref.predict_proba(pooled.set_index("cid").loc[res["test_ids"], cols].to_numpy())[:, 1]
    assert np.allclose(res["test_scores"], ref_scores, rtol=0, atol=1e-12)
    y_test = pooled.set_index("cid").loc[res["test_ids"], "default"].to_numpy()
    assert res["metrics"]["auc"] == pytest.approx(roc_auc(y_test, ref_scores), abs=1e-12)
    assert res["metrics"]["auc"] > 0.75 and len(res["metrics"]["deciles"]) == 10
    assert set(out["passive"]["model"]["splits"]) == {n["split_id"] for t in res["model"]["trees"] for n in t
                                                      if "split_id" in n}


def test_the_split_is_the_same_on_both_sides_and_near_the_fraction():
    ids = [f"{i:032x}" for i in range(20_000)]
    a, b = is_test(ids, 7, 200_000), is_test(list(ids), 7, 200_000)
    assert np.array_equal(a, b) and 0.19 < a.mean() < 0.21
    assert not np.array_equal(a, is_test(ids, 8, 200_000))


@pytest.mark.parametrize("content,message", [
    ("cid,x,default\n1,0.5,1\n1,0.7,0\n", "duplicate ids in column 'cid'"),
    ("cid,x,default\n1,0.5,2\n2,0.7,0\n", "must hold only 0 and 1"),
    ("cid,x,default\n1,abc,1\n2,0.7,0\n", "feature column 'x' is not numeric"),
    ("cid,x,default\n1,0.5,1\n2,0.7,1\n", "only one class"),
    ("id,x,default\n1,0.5,1\n2,0.7,0\n", "no id column 'cid'"),
])
def test_bad_training_files_fail_with_one_clear_line(tmp_path, content, message):
    f = tmp_path / "bank.csv"
    f.write_text(content)
    with pytest.raises(InputError, match=message):
        read_party_file(f, "cid", "default")

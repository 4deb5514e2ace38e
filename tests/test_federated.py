"""The whole training job in memory: link on ids, align, split, train, predict, against the pooled reference."""

import threading

import numpy as np
import pandas as pd
import pytest

from tandem.engine import LocalEngine
from tandem.errors import InputError
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.federated import active_job, is_test, ordered, passive_job, read_party_file, split_rows
from tandem.learn.metrics import roc_auc
from tandem.learn.options import TrainingOptions, estimator_kwargs
from tandem.learn.secureboost.shared import PROTOCOL
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


def _request(**over) -> TrainRequest:
    fields = TrainingOptions(seed=42, test_fraction=0.2, trees=6, max_depth=3, learning_rate=0.3,
                             bins=16).with_args(over).request_fields()
    return TrainRequest("s", PROTOCOL, "m1", **fields)


def _run_job(active_data, passive_data: dict, request: TrainRequest, tmp_path=None) -> dict:
    """The job in memory: the label holder and each passive party on threads, over memory channels."""
    out, threads, sessions = {}, [], []
    for name, data in passive_data.items():
        ca, cb = memory_pair("bank", name)
        sid = f"s-{name}"
        req = TrainRequest(sid, **{k: v for k, v in vars(request).items() if k != "session"})

        def serve(name=name, data=data, session=Session(cb, sid, PROTOCOL, None, 30), req=req):
            out[name] = passive_job(session, data, req, BLINDER, party=name,
                                    checkpoints=tmp_path / name if tmp_path else None)

        threads.append(threading.Thread(target=serve))
        threads[-1].start()
        sessions.append(Session(ca, sid, PROTOCOL, None, 30))
    out["active"] = active_job(sessions, active_data, request, BLINDER, party="bank",
                               passive_parties=list(passive_data), key_bits=1024,
                               checkpoints=tmp_path / "bank" if tmp_path else None)
    for t in threads:
        t.join()
    return out


def _pooled_reference(frames: list[pd.DataFrame], request: TrainRequest, goss_seed: int | None = None):
    """The same algorithm on the pooled table, rows in the agreed order and split (GOSS with the
    label holder's private seed, from its result)."""
    pooled = frames[0]
    for f in frames[1:]:
        pooled = pooled.merge(f, on="cid")
    fields = {k: v for k, v in vars(request).items()}
    pooled = pooled.iloc[ordered(pooled["cid"].tolist(), request.seed)]
    test, valid = split_rows(pooled["cid"].tolist(), fields)
    cols = [c for c in pooled.columns if c not in ("cid", "default")]
    X, y = pooled[cols].to_numpy(dtype=float), pooled["default"].to_numpy()
    merged = dict(min_bin_rows=MIN_BIN_ROWS, passive_from=len(frames[0].columns) - 2)  # the bank's own: cid, default
    ref = HistBoostingClassifier(**estimator_kwargs(fields), **merged, goss_seed=goss_seed).fit(
        X[~test], y[~test], valid[~test]
    )
    return ref, ref.predict_proba(X[test])[:, 1], y[test]


def test_training_job_equals_the_pooled_reference(tmp_path):
    bank, market = _files(tmp_path)
    a = read_party_file(tmp_path / "bank.csv", "cid", "default")
    p = read_party_file(tmp_path / "market.parquet", "cid")
    request = _request()
    out = _run_job(a, {"market": p}, request, tmp_path)
    res = out["active"]
    assert res["n_train"] + res["n_test"] == len(market) and res["n_test"] > 50
    _, ref_scores, y_test = _pooled_reference([bank, market], request)
    assert np.allclose(res["test_scores"], ref_scores, rtol=0, atol=1e-12)
    assert res["metrics"]["auc"] == pytest.approx(roc_auc(y_test, ref_scores), abs=1e-12)
    assert res["metrics"]["auc"] > 0.75 and len(res["metrics"]["deciles"]) == 10
    assert set(out["market"]["model"]["splits"]) == {n["split_id"] for t in res["model"]["trees"] for n in t
                                                     if "split_id" in n}
    assert not list((tmp_path / "bank").glob("*.json")) and not list((tmp_path / "market").glob("*.json"))


def test_three_parties_with_goss_and_early_stopping_equal_the_pooled_reference(tmp_path):
    bank, market = _files(tmp_path, n=1200)
    rng = np.random.default_rng(8)
    telco = pd.DataFrame({"cid": bank["cid"], "calls": bank["income"] * 0.5 + rng.normal(size=len(bank)),
                          "roaming": rng.normal(size=len(bank))}).sample(frac=0.8, random_state=3)
    telco.to_csv(tmp_path / "telco.csv", index=False)
    a = read_party_file(tmp_path / "bank.csv", "cid", "default")
    parties = {"market": read_party_file(tmp_path / "market.parquet", "cid"),
               "telco": read_party_file(tmp_path / "telco.csv", "cid")}
    request = _request(trees=25, learning_rate=0.5, goss=True, early_stopping=3, validation_fraction=0.2)
    res = _run_job(a, parties, request)["active"]
    ref, ref_scores, _ = _pooled_reference([bank, market, telco], request, res["goss_seed"])
    public = _pooled_reference([bank, market, telco], request)[1]       # with the request's (public) seed instead
    assert not np.allclose(public, ref_scores, rtol=0, atol=1e-6)
    shared = set(bank["cid"]) & set(market["cid"]) & set(telco["cid"])
    assert res["n_train"] + res["n_test"] == len(shared) and res["n_valid"] > 0
    assert res["n_trees"] == len(ref.trees_) < 25
    assert np.allclose(res["test_scores"], ref_scores, rtol=0, atol=1e-12)
    assert {n["party"] for t in res["model"]["trees"] for n in t if "split_id" in n} <= {"market", "telco"}


def test_the_split_is_the_same_on_both_sides_and_near_the_fraction():
    ids = [f"{i:032x}" for i in range(20_000)]
    a, b = is_test(ids, 7, 200_000), is_test(list(ids), 7, 200_000)
    assert np.array_equal(a, b) and 0.19 < a.mean() < 0.21
    assert not np.array_equal(a, is_test(ids, 8, 200_000))


@pytest.mark.parametrize("content,message", [
    ("cid,x,default\n1,0.5,1\n1,0.7,0\n", "duplicate ids in column 'cid'"),
    ("cid,x,default\n1,0.5,2\n2,0.7,0\n", "must hold only 0 and 1"),
    ("cid,x,default\n1,inf,1\n2,0.7,0\n", "feature column 'x' holds infinite values"),
    ("cid,x,default\n1,0.5,1\n2,0.7,1\n", "only one class"),
    ("id,x,default\n1,0.5,1\n2,0.7,0\n", "no id column 'cid'"),
])
def test_bad_training_files_fail_with_one_clear_line(tmp_path, content, message):
    f = tmp_path / "bank.csv"
    f.write_text(content)
    with pytest.raises(InputError, match=message):
        read_party_file(f, "cid", "default")

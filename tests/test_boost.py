"""SecureBoost roles in memory: the federated trees equal the plaintext reference, and the bytes
each side sends hold nothing they must not."""

import struct
import threading

import numpy as np
import pytest

from tandem.crypto.he import SecretHe, quantise
from tandem.learn.binning import Binner
from tandem.learn.boosting import HistBoostingClassifier
from tandem.protocols.boost import ActiveBoost, BoostParams, PassiveBoost
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.wire import BoostStart, EncryptedGradients, decode
from tandem.transport.base import memory_pair
from tandem.transport.session import Session


def _run(role, session):
    session.send_all(role.start())
    while not role.done:
        session.send_all(role.receive(session.recv()))


def _data(n=700, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[rng.random((n, 5)) < 0.1] = np.nan
    logit = 1.2 * np.nan_to_num(X[:, 0]) - 1.5 * np.nan_to_num(X[:, 3]) + 0.8 * np.nan_to_num(X[:, 4])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y


def _federated(X, y, params: BoostParams):
    """Train in memory with the first two columns at the active party; return both roles and channels."""
    Xa, Xp = X[:, :2], X[:, 2:]
    ba, bp = Binner(params.bins).fit(Xa), Binner(params.bins).fit(Xp)
    active = ActiveBoost("s", ba.transform(Xa), y, params, SecretHe.generate())
    passive = PassiveBoost("s", bp.transform(Xp), bp.threshold)
    ca, cb = memory_pair("bank", "market")
    t = threading.Thread(target=_run, args=(passive, Session(cb, "s", "boost/1", None, 30)))
    t.start()
    _run(active, Session(ca, "s", "boost/1", None, 30))
    t.join()
    return active, passive, ca, cb


@pytest.fixture(scope="module")
def trained():
    X, y = _data()
    bins = 16
    Xp = X[:, 2:]
    active, passive, ca, cb = _federated(X, y, BoostParams(n_trees=5, max_depth=3, learning_rate=0.3, bins=bins))
    reference = HistBoostingClassifier(n_trees=5, max_depth=3, learning_rate=0.3, bins=bins).fit(X, y)
    return dict(X=X, y=y, Xp=Xp, active=active, passive=passive, reference=reference, sent_active=ca.sent,
                sent_passive=cb.sent)


def test_federated_trees_equal_the_plaintext_reference(trained):
    active, reference = trained["active"], trained["reference"]
    assert len(active.trees_) == len(reference.trees_) == 5
    for fed, ref in zip(active.trees_, reference.trees_):
        assert (fed.feature, fed.bin_, fed.missing_left, fed.left, fed.right) == \
               (ref.feature, ref.bin_, ref.missing_left, ref.left, ref.right)
        assert fed.value == ref.value                     # bit for bit
    assert np.array_equal(active.raw_, reference.decision_function(trained["X"]))
    passive_splits = sum(f >= 2 for t in active.trees_ for f in t.feature)
    assert passive_splits > 0 and len(trained["passive"].splits_) == passive_splits
    assert sum(len(ids) for ids in active.split_ids_) == passive_splits


def test_the_active_party_sends_no_labels_or_plain_gradients(trained):
    sent = b"".join(trained["sent_active"])
    y = trained["y"]
    p = np.full(len(y), y.mean())
    first_g = quantise(p - y)
    for value in first_g[:50]:
        assert struct.pack(">q", int(value)) not in sent and struct.pack("<q", int(value)) not in sent
    assert y.astype(np.uint8).tobytes() not in sent and np.packbits(y.astype(bool)).tobytes() not in sent
    kinds = {decode(f).name for f in trained["sent_active"]}
    assert kinds == {"BoostStart", "PublicKeyMsg", "EncryptedGradients", "SplitDecisions", "BoostDone"}


def test_the_passive_party_sends_no_feature_values_or_thresholds(trained):
    sent = b"".join(trained["sent_passive"])
    Xp = trained["Xp"]
    values = Xp[~np.isnan(Xp)]
    for v in values[:200]:
        assert struct.pack("<d", v) not in sent and struct.pack(">d", v) not in sent
        assert repr(float(v)).encode() not in sent
    for _feature, threshold, _missing in trained["passive"].splits_.values():
        assert struct.pack("<d", threshold) not in sent and repr(threshold).encode() not in sent
    kinds = {decode(f).name for f in trained["sent_passive"]}
    assert kinds == {"BoostReady", "EncryptedHistograms", "PassivePartitions"}


def test_passive_refuses_mismatched_rows_and_bad_decisions():
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="active party has 12 rows, this party 10"):
        passive.receive(BoostStart("s", 12, 1, 2, 16, np.packbits(np.ones(12, bool)).tobytes()))
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="unexpected EncryptedGradients"):
        passive.receive(EncryptedGradients("s", 0, b""))


def test_federated_prediction_equals_the_reference_on_new_rows(trained):
    from tandem.protocols.boost import passive_bitmaps, predict_federated, unpack_mask
    from tandem.protocols.boost import unframe_blobs
    from tandem.protocols.wire import PredictRequest

    X_new, _ = _data(n=300, seed=9)
    active, passive, reference = trained["active"], trained["passive"], trained["reference"]
    ba = Binner(16).fit(trained["X"][:, :2])
    bp = Binner(16).fit(trained["X"][:, 2:])
    ids = [i for t in active.split_ids_ for i in t.values()]
    reply = passive_bitmaps(PredictRequest("s", "m1", len(X_new), ids), bp.transform(X_new[:, 2:]),
                            passive.split_bins_, 15)
    decoded = decode(reply.encode())
    masks = {i: unpack_mask(b, len(X_new)) for i, b in zip(ids, unframe_blobs(decoded.payload, len(ids)))}
    raw = predict_federated(active.trees_, active.split_ids_, active.base_score_, ba.transform(X_new[:, :2]), 15,
                            masks)
    assert np.array_equal(raw, reference.decision_function(X_new))
    with pytest.raises(RemoteProtocolError, match="unknown split id"):
        passive_bitmaps(PredictRequest("s", "m1", len(X_new), ["nope"]), bp.transform(X_new[:, 2:]),
                        passive.split_bins_, 15)


def test_each_party_saves_its_part_as_json_and_reloads_it(trained, tmp_path):
    from tandem.errors import InputError
    from tandem.learn import model_io
    from tandem.protocols.boost import passive_bitmaps, predict_federated, unpack_mask, unframe_blobs
    from tandem.protocols.wire import PredictRequest

    X = trained["X"]
    active, passive = trained["active"], trained["passive"]
    ba, bp = Binner(16).fit(X[:, :2]), Binner(16).fit(X[:, 2:])
    a = model_io.active_json("m1", "bank", ba, ["income", "debt"], active.base_score_, active.trees_,
                             active.split_ids_, "market", {"n_trees": 5})
    p = model_io.passive_json("m1", "market", bp, ["returns", "cod", "night"], passive.split_bins_)
    model_io.save(a, tmp_path / "bank.json")
    model_io.save(p, tmp_path / "market.json")
    text = (tmp_path / "bank.json").read_text()
    assert "returns" not in text and "cod" not in text                    # no passive names on the active side
    for _f, threshold, _m in passive.splits_.values():
        assert repr(threshold) not in text
    binner_a, _, base, trees, ids = model_io.active_trees(model_io.load(tmp_path / "bank.json", "active"))
    binner_p, _, splits = model_io.passive_splits(model_io.load(tmp_path / "market.json", "passive"))
    id_list = [i for t in ids for i in t.values()]
    reply = passive_bitmaps(PredictRequest("s", "m1", len(X), id_list), binner_p.transform(X[:, 2:]), splits, 15)
    masks = {i: unpack_mask(b, len(X)) for i, b in zip(id_list, unframe_blobs(reply.payload, len(id_list)))}
    raw = predict_federated(trees, ids, base, binner_a.transform(X[:, :2]), 15, masks)
    assert np.array_equal(raw, trained["reference"].decision_function(X))
    with pytest.raises(InputError, match="is the active party's model, expected the passive"):
        model_io.load(tmp_path / "bank.json", "passive")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a tandem-boost/1 model"):
        model_io.load(tmp_path / "bad.json", "active")


def test_first_tree_on_active_features_only_sends_nothing_for_it():
    X, y = _data(seed=3)
    params = BoostParams(n_trees=3, max_depth=3, learning_rate=0.3, bins=16, first_tree_active_only=True)
    active, _, ca, _ = _federated(X, y, params)
    reference = HistBoostingClassifier(n_trees=3, max_depth=3, learning_rate=0.3, bins=16,
                                       first_tree_features=2).fit(X, y)
    assert all(f < 2 for f in active.trees_[0].feature)
    assert np.array_equal(active.raw_, reference.decision_function(X))
    trees_sent = [decode(f).tree for f in ca.sent if decode(f).name == "EncryptedGradients"]
    assert trees_sent == [1, 2]

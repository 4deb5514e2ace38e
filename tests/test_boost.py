"""SecureBoost roles in memory: the federated trees equal the plaintext reference (one or more passive
parties, GOSS, early stopping, up to 256 bins, resumed runs), and the bytes each side sends hold
nothing they must not."""

import json
import struct
import threading

import numpy as np
import pytest
from helpers import labelled_data

from tandem.crypto.he import quantise
from tandem.learn.binning import Binner
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.secureboost.passive import PassiveBoost
from tandem.learn.secureboost.predict import passive_bitmaps, predict_federated
from tandem.learn.secureboost.shared import PROTOCOL
from tandem.learn.vertical import VerticalBoostingClassifier, serve_passive
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.framing import frame_blobs, histogram_payload, unframe_blobs, unpack_mask
from tandem.protocols.message import decode
from tandem.protocols.wire import BoostStart, EncryptedGradients, PredictRequest
from tandem.transport.base import TransportError, memory_pair
from tandem.transport.session import Session

KEY_BITS = 1024          # small keys keep the suite fast; the protocol does not depend on the size
MERGED = dict(min_bin_rows=MIN_BIN_ROWS, passive_from=2)  # the reference merges passive bins as they do


def _data(n=700, seed=0, f=5):
    return labelled_data(n, f, seed, lambda X: 1.2 * X[:, 0] - 1.5 * X[:, 3] + 0.8 * X[:, 4], missing_first=True)


def _fit(X, y, cuts=(2,), valid=None, resume=None, saved=None, on_tree=None, on_split=None, timeout=30,
         passive_errors=None, min_bin_rows=MIN_BIN_ROWS, passive_categorical=(), **kw):
    """Train in memory: columns before ``cuts[0]`` at the active party, then one passive party per
    slice. Returns the estimator, the passive roles and every party's channel (for the bytes sent).

    A passive party's exception fails the test, unless ``passive_errors`` (a list) is given to
    collect them (the interrupted-run test stops the active party on purpose). ``passive_categorical``:
    columns of ``X`` (past ``cuts[0]``) that are the passive parties' categorical features."""
    parts = np.split(np.arange(X.shape[1]), list(cuts))
    sessions, passives, threads, channels = [], [], [], []
    errors = [] if passive_errors is None else passive_errors
    for k, cols in enumerate(parts[1:]):
        local = [j for j, c in enumerate(cols) if c in passive_categorical]
        binner = Binner(kw.get("bins", 32), kw.get("seed", 0), local).fit(X[:, cols])
        role = PassiveBoost(f"s{k}", binner.transform(X[:, cols]), (saved or {}).get(k), min_bin_rows,
                            binner.categorical_)
        ca, cb = memory_pair("bank", f"party{k}")
        session = Session(cb, f"s{k}", PROTOCOL, None, timeout)

        def serve(session=session, role=role, k=k):
            try:
                serve_passive(session, role, (lambda r: on_split(k, r)) if on_split else None)
            except Exception as exc:  # noqa: BLE001 - handed to the test thread below
                errors.append(exc)

        threads.append(threading.Thread(target=serve, daemon=True))
        threads[-1].start()
        sessions.append(Session(ca, f"s{k}", PROTOCOL, None, timeout))
        passives.append(role)
        channels.append((ca, cb))
    model = VerticalBoostingClassifier(sessions, key_bits=KEY_BITS, **kw)
    try:
        model.fit(X[:, parts[0]], y, valid, resume=resume, on_tree=on_tree)
    finally:
        for t in threads:
            t.join(timeout=timeout + 5)
    assert not any(t.is_alive() for t in threads), "a passive party is still running"
    if errors and passive_errors is None:
        raise errors[0]
    return model, passives, channels


def _same_trees(a, b):
    assert len(a) == len(b)
    for fed, ref in zip(a, b):
        assert (fed.feature, fed.bin_, fed.missing_left, fed.left, fed.right, fed.left_bins) == \
               (ref.feature, ref.bin_, ref.missing_left, ref.left, ref.right, ref.left_bins)
        assert fed.value == ref.value                     # bit for bit


@pytest.fixture(scope="module")
def trained():
    X, y = _data()
    kw = dict(n_trees=5, max_depth=3, learning_rate=0.3, bins=16)
    model, passives, channels = _fit(X, y, **kw)
    reference = HistBoostingClassifier(**kw, **MERGED).fit(X, y)
    return dict(X=X, y=y, Xp=X[:, 2:], model=model, passive=passives[0], reference=reference,
                sent_active=channels[0][0].sent, sent_passive=channels[0][1].sent)


def test_federated_trees_equal_the_plaintext_reference(trained):
    model, reference = trained["model"], trained["reference"]
    _same_trees(model.trees_, reference.trees_)
    assert np.array_equal(model.raw_, reference.decision_function(trained["X"]))
    passive_splits = sum(f >= 2 for t in model.trees_ for f in t.feature)
    assert passive_splits > 0 and len(trained["passive"].splits_) == passive_splits
    assert sum(len(ids) for ids in model.split_ids_) == passive_splits


def test_two_passive_parties_give_the_trees_of_the_pooled_table():
    X, y = _data(seed=5, f=6)
    kw = dict(n_trees=4, max_depth=3, learning_rate=0.3, bins=16)
    model, passives, _ = _fit(X, y, cuts=(2, 4), **kw)
    _same_trees(model.trees_, HistBoostingClassifier(**kw, **MERGED).fit(X, y).trees_)
    owners = {party for ids in model.split_ids_ for party, _ in ids.values()}
    assert owners == {0, 1}                                 # both passive parties own splits
    assert all(len(p.splits_) > 0 for p in passives)


def test_heavy_bin_merging_still_gives_the_trees_of_the_reference_applying_it():
    X, y = _data(n=400, seed=2)
    kw = dict(n_trees=3, max_depth=4, learning_rate=0.3, bins=32)
    model, passives, _ = _fit(X, y, min_bin_rows=25, **kw)
    _same_trees(model.trees_, HistBoostingClassifier(**kw, min_bin_rows=25, passive_from=2).fit(X, y).trees_)
    plain = HistBoostingClassifier(**kw).fit(X, y).trees_
    assert any(a.bin_ != b.bin_ or a.feature != b.feature for a, b in zip(model.trees_, plain))  # the rule bites
    assert len(passives[0].splits_) > 0


@pytest.mark.parametrize("bins", [16, 200])
def test_goss_and_early_stopping_match_the_reference(bins):
    X, y = _data(n=900, seed=7)
    valid = np.random.default_rng(1).random(len(y)) < 0.2
    kw = dict(n_trees=30, max_depth=3, learning_rate=0.5, bins=bins, goss=(0.2, 0.1), early_stopping_rounds=3,
              seed=4)
    model, passives, _ = _fit(X, y, valid=valid, **kw)
    reference = HistBoostingClassifier(**kw, **MERGED).fit(X, y, valid)
    _same_trees(model.trees_, reference.trees_)
    assert len(model.trees_) < 30 and model.scores_[:len(reference.scores_)] == reference.scores_
    kept = {sid for ids in model.split_ids_ for _, sid in ids.values()}
    assert set(passives[0].splits_) == kept                 # splits of dropped trees are dropped too


def test_goss_sends_ciphertexts_of_the_sample_only():
    X, y = _data(n=600, seed=2)
    _, _, channels = _fit(X, y, n_trees=2, max_depth=2, bins=16, goss=(0.2, 0.1))
    for frame in channels[0][0].sent:
        msg = decode(frame)
        if msg.name == "EncryptedGradients":
            mask = unpack_mask(unframe_blobs(msg.payload, 2)[0], len(y))
            assert mask.sum() == 120 + 60                   # 20% by |gradient| + 10% of the rest


@pytest.mark.parametrize("bins, workers", [(16, None), (200, None), (16, 1)])
def test_gradients_in_parts_give_the_same_trees_and_each_part_is_summed_on_arrival(bins, workers, monkeypatch):
    """Parts encrypted in this process, or by an engine's worker process (as a node does)."""
    from tandem.engine import LocalEngine
    from tandem.learn.secureboost import active

    monkeypatch.setattr(active, "GRADIENT_PART_ROWS", 97)  # 700 rows: 8 parts, the last one short
    X, y = _data(n=700, seed=3, f=6)
    kw = dict(n_trees=3, max_depth=3, learning_rate=0.3, bins=bins)
    with LocalEngine(workers or 0) as engine:
        model, passives, channels = _fit(X, y, cuts=(2, 4), engine=engine if workers else None, **kw)
    _same_trees(model.trees_, HistBoostingClassifier(**kw, **MERGED).fit(X, y).trees_)
    for ca, _cb in channels:
        parts = [decode(f) for f in ca.sent if decode(f).name == "EncryptedGradients"]
        assert [(m.tree, m.part, m.parts) for m in parts] == [(t, i, 8) for t in range(3) for i in range(8)]
        assert all(unframe_blobs(m.payload, 2)[0] == b"" for m in parts if m.part > 0)  # the bitmap once per tree
    assert len(passives[0]._parts) == 8 and passives[0]._starts[-1] == 700


def test_the_active_party_sends_no_labels_or_plain_gradients(trained):
    sent = b"".join(trained["sent_active"])
    y = trained["y"]
    p = np.full(len(y), y.mean())
    first_g = quantise(p - y)
    for value in first_g[:50]:
        assert struct.pack(">q", int(value)) not in sent and struct.pack("<q", int(value)) not in sent
    assert y.astype(np.uint8).tobytes() not in sent and np.packbits(y.astype(bool)).tobytes() not in sent
    kinds = {decode(f).name for f in trained["sent_active"]}
    assert kinds == {"BoostStart", "PublicKeyMsg", "EncryptedGradients", "SplitRequest", "SplitDecisions",
                     "BoostDone"}


def test_the_passive_party_sends_no_feature_values_or_thresholds(trained):
    sent = b"".join(trained["sent_passive"])
    Xp = trained["Xp"]
    values = Xp[~np.isnan(Xp)]
    binner = Binner(16).fit(Xp)
    for v in values[:200]:
        assert struct.pack("<d", v) not in sent and struct.pack(">d", v) not in sent
        assert repr(float(v)).encode() not in sent
    for f, b, _missing, _tree, _left in trained["passive"].splits_.values():
        threshold = binner.threshold(f, b)
        assert struct.pack("<d", threshold) not in sent and repr(threshold).encode() not in sent
    kinds = {decode(f).name for f in trained["sent_passive"]}
    assert kinds == {"BoostReady", "EncryptedHistograms", "PassivePartitions"}


def test_passive_refuses_mismatched_rows_and_bad_messages():
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="active party has 12 rows, this party 10"):
        passive.receive(BoostStart("s", 12, 1, 2, 16, 0, b""))
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="unexpected EncryptedGradients"):
        passive.receive(EncryptedGradients("s", 0, b""))
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="malformed"):
        passive.receive(BoostStart("s", 10, 1, 2, 16, 0, b"\x00\x00\x00\x09short"))


def test_federated_prediction_equals_the_reference_on_new_rows(trained):
    X_new, _ = _data(n=300, seed=9)
    model, passive, reference = trained["model"], trained["passive"], trained["reference"]
    bp = Binner(16).fit(trained["X"][:, 2:])
    ids = [sid for t in model.split_ids_ for _, sid in t.values()]
    reply = passive_bitmaps(PredictRequest("s", "m1", len(X_new), "\n".join(ids).encode()),
                            bp.transform(X_new[:, 2:]), passive.split_bins_, 15)
    decoded = decode(reply.encode())
    masks = {(0, i): unpack_mask(b, len(X_new)) for i, b in zip(ids, unframe_blobs(decoded.payload, len(ids)))}
    raw = predict_federated(model.trees_, model.split_ids_, model.base_score_,
                            model.binner_.transform(X_new[:, :2]), 15, masks)
    assert np.array_equal(raw, reference.decision_function(X_new))
    with pytest.raises(RemoteProtocolError, match="unknown split id"):
        passive_bitmaps(PredictRequest("s", "m1", len(X_new), b"nope"), bp.transform(X_new[:, 2:]),
                        passive.split_bins_, 15)


def test_each_party_saves_its_part_as_json_and_reloads_it(trained, tmp_path):
    from tandem.errors import InputError
    from tandem.learn import model_io

    X = trained["X"]
    model, passive = trained["model"], trained["passive"]
    bp = Binner(16).fit(X[:, 2:])
    a = model_io.active_json("m1", "bank", model.binner_, ["income", "debt"], model.base_score_, model.trees_,
                             model.split_ids_, ["market"], {"n_trees": 5})
    p = model_io.passive_json("m1", "market", bp, ["returns", "cod", "night"], passive.split_bins_)
    model_io.save(a, tmp_path / "bank.json")
    model_io.save(p, tmp_path / "market.json")
    text = (tmp_path / "bank.json").read_text()
    assert "returns" not in text and "cod" not in text                    # no passive names on the active side
    for f, b, _m, _t, _left in passive.splits_.values():
        assert repr(bp.threshold(f, b)) not in text
    binner_a, _, base, trees, ids = model_io.active_trees(model_io.load(tmp_path / "bank.json", "active"))
    binner_p, _, splits = model_io.passive_splits(model_io.load(tmp_path / "market.json", "passive"))
    id_list = [sid for t in ids for _, sid in t.values()]
    reply = passive_bitmaps(PredictRequest("s", "m1", len(X), "\n".join(id_list).encode()),
                            binner_p.transform(X[:, 2:]), splits, 15)
    masks = {("market", i): unpack_mask(b, len(X)) for i, b in zip(id_list, unframe_blobs(reply.payload, len(id_list)))}
    raw = predict_federated(trees, ids, base, binner_a.transform(X[:, :2]), 15, masks)
    assert np.array_equal(raw, trained["reference"].decision_function(X))
    with pytest.raises(InputError, match="is the active party's model, expected the passive"):
        model_io.load(tmp_path / "bank.json", "passive")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a tandem-boost/2 model"):
        model_io.load(tmp_path / "bad.json", "active")


def test_first_tree_on_active_features_only_sends_nothing_for_it():
    X, y = _data(seed=3)
    kw = dict(n_trees=3, max_depth=3, learning_rate=0.3, bins=16)
    model, _, channels = _fit(X, y, first_tree_active_only=True, **kw)
    reference = HistBoostingClassifier(**kw, **MERGED, first_tree_features=2).fit(X, y)
    assert all(f < 2 for f in model.trees_[0].feature)
    assert np.array_equal(model.raw_, reference.decision_function(X))
    trees_sent = [decode(f).tree for f in channels[0][0].sent if decode(f).name == "EncryptedGradients"]
    assert trees_sent == [1, 2]


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_model():
    X, y = _data(n=500, seed=11)
    kw = dict(n_trees=5, max_depth=3, learning_rate=0.3, bins=16, goss=(0.3, 0.2), goss_seed=2**62 + 7)
    whole, _, _ = _fit(X, y, **kw)
    kept, saved = {}, {}

    def stop_after_two(done):
        kept["resume"] = done
        if len(done.trees) == 2:
            raise KeyboardInterrupt                           # the label holder dies after tree 2

    def save_splits(k, role):
        saved[k] = dict(role.splits_)

    stopped = []
    with pytest.raises(KeyboardInterrupt):
        _fit(X, y, on_tree=stop_after_two, on_split=save_splits, timeout=5, passive_errors=stopped, **kw)
    assert len(stopped) == 1 and isinstance(stopped[0], TransportError)   # it waited for a party that left
    assert kept["resume"].goss_seed == 2**62 + 7                # the private GOSS seed travels in the checkpoint
    assert len(kept["resume"].trees) == 2 and len(saved[0]) >= sum(len(t) for t in kept["resume"].split_ids)
    resumed, _, channels = _fit(X, y, resume=kept["resume"], saved=saved, **kw)
    assert resumed.resumed_ == 2
    _same_trees(resumed.trees_, whole.trees_)
    assert np.array_equal(resumed.raw_, whole.raw_)
    trees_sent = [decode(f).tree for f in channels[0][0].sent if decode(f).name == "EncryptedGradients"]
    assert trees_sent == [2, 3, 4]                          # the first two trees were not grown again
    fresh, _, _ = _fit(X, y, resume=kept["resume"], saved={}, **kw)    # the passive party lost its splits
    assert fresh.resumed_ == 0
    _same_trees(fresh.trees_, whole.trees_)


def test_the_active_party_refuses_garbage_histograms_and_out_of_turn_messages():
    from tandem.crypto.he import SecretHe
    from tandem.learn.rounds import BoostParams
    from tandem.learn.secureboost.active import ActiveBoost
    from tandem.protocols.wire import BoostReady, EncryptedHistograms

    X, y = _data(n=100)
    binned = Binner(16).fit(X[:, :2]).transform(X[:, :2])
    active = ActiveBoost(["s"], binned, y, BoostParams(n_trees=2, max_depth=2, bins=16), SecretHe.generate("ou", 1024))
    active.start()
    with pytest.raises(RemoteProtocolError, match="unexpected EncryptedHistograms from passive party 0"):
        active.receive(0, EncryptedHistograms("s", 0, [0], b""))
    he = SecretHe.generate("ou", 1024)
    active = ActiveBoost(["s"], binned, y, BoostParams(n_trees=2, max_depth=2, bins=16), he)
    active.start()
    sent = active.receive(0, BoostReady("s", 3, False, b""))
    assert [m.name for _, m in sent] == ["PublicKeyMsg", "EncryptedGradients"]
    with pytest.raises(RemoteProtocolError, match="passive party 0: received malformed ciphertexts"):
        active.receive(0, EncryptedHistograms("s", 0, [0], frame_blobs([histogram_payload(np.ones((3, 16), bool), [b"\x00garbage"], 16)])))
    for buckets in (np.zeros((3, 16), bool), np.ones((2, 16), bool)):  # no last value bucket; wrong shape
        active = ActiveBoost(["s"], binned, y, BoostParams(n_trees=2, max_depth=2, bins=16), he)
        active.start()
        active.receive(0, BoostReady("s", 3, False, b""))
        with pytest.raises(RemoteProtocolError, match="passive party 0: malformed"):
            active.receive(0, EncryptedHistograms("s", 0, [0], frame_blobs([histogram_payload(buckets, [b"\x00garbage"], 16)])))
    for nodes, blobs in (([0, 1], 2), ([1], 1), ([0], 2)):     # a node not asked for; another; two blobs for one
        active = ActiveBoost(["s"], binned, y, BoostParams(n_trees=2, max_depth=2, bins=16), he)
        active.start()
        list(active.receive(0, BoostReady("s", 3, False, b"")))
        with pytest.raises(RemoteProtocolError, match="passive party 0(: malformed| sent histograms of tree 0 nodes .*, expected tree 0 nodes \\[0\\])"):
            active.receive(0, EncryptedHistograms("s", 0, nodes, frame_blobs([b"x"] * blobs)))


CITIES = np.array(["ankara", "berlin", "cairo", "delhi", "essen", "faro", "graz", "hue"], dtype=object)


def _categorical_data(n=800, seed=3):
    """Column 1 (the label holder's) is a city: eight with their own effect on the label, one rare
    city ("zz", 3 rows) and 8% missing; columns 2.. are the passive party's numeric features."""
    rng = np.random.default_rng(seed)
    X, _ = _data(n, seed)
    city = rng.choice(CITIES, n)
    city[rng.random(n) < 0.08] = None
    city[:3] = "zz"
    effect = dict(zip(CITIES, [1.6, -1.4, 0.9, -0.8, 1.2, -1.7, 0.2, -0.3]))
    logit = np.array([effect.get(c, 0.5) for c in city]) + 1.2 * np.nan_to_num(X[:, 0]) - 1.5 * np.nan_to_num(X[:, 3])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    table = X.astype(object)
    table[:, 1] = city
    return table, y


@pytest.fixture(scope="module")
def categorical_trained():
    X, y = _categorical_data()
    kw = dict(n_trees=4, max_depth=3, learning_rate=0.3, bins=16, categorical=[1])
    model, passives, _ = _fit(X, y, **kw)
    reference = HistBoostingClassifier(**kw, **MERGED).fit(X, y)
    return dict(X=X, y=y, model=model, passive=passives[0], reference=reference)


def test_a_categorical_column_of_the_label_holder_gives_the_trees_of_the_reference(categorical_trained):
    model, reference, X = categorical_trained["model"], categorical_trained["reference"], categorical_trained["X"]
    _same_trees(model.trees_, reference.trees_)
    assert np.array_equal(model.raw_, reference.decision_function(X))
    city_splits = [(t.left_bins[n], t.bin_[n]) for t in model.trees_ for n, f in enumerate(t.feature) if f == 1]
    assert city_splits and all(left and b == -1 for left, b in city_splits)   # split as sets of city bins
    sets = {left for left, _ in city_splits}
    assert any(left != tuple(range(len(left))) for left in sets)              # not a threshold's prefix of bins
    assert model.binner_.categories_[1] == sorted(CITIES.tolist())            # "zz" (3 rows) has no bin of its own
    assert sum(f >= 2 for t in model.trees_ for f in t.feature) > 0          # the passive party still splits


def test_first_tree_on_a_categorical_active_column_and_goss_match_the_reference():
    X, y = _categorical_data(n=600, seed=8)
    kw = dict(n_trees=3, max_depth=2, learning_rate=0.4, bins=16, categorical=[1], goss=(0.3, 0.2), seed=2)
    model, _, _ = _fit(X, y, first_tree_active_only=True, **kw)
    reference = HistBoostingClassifier(**kw, **MERGED, first_tree_features=2).fit(X, y)
    _same_trees(model.trees_, reference.trees_)
    assert any(model.trees_[0].left_bins)                               # the local tree splits on the city too


def test_an_unseen_category_goes_where_the_other_bin_goes(categorical_trained):
    model, reference = categorical_trained["model"], categorical_trained["reference"]
    rows = np.array([categorical_trained["X"][5]] * 3, dtype=object)
    rows[:, 1] = ["zz", "never-seen", 42]                                     # rare, unseen, not even text
    binned = model.binner_.transform(rows[:, :2])
    assert binned[:, 1].tolist() == [8, 8, 8]                                 # the "other" bin after 8 cities
    assert len(set(reference.decision_function(rows).tolist())) == 1
    rows[:, 1] = None
    assert model.binner_.transform(rows[:, :2])[0, 1] == 15                   # missing keeps its own bin


def test_a_categorical_model_saves_reloads_and_predicts_the_same(categorical_trained, tmp_path):
    from tandem.decide.scoring import ActiveScorer
    from tandem.errors import InputError
    from tandem.learn import model_io

    X, model, passive = categorical_trained["X"], categorical_trained["model"], categorical_trained["passive"]
    X_new, _ = _categorical_data(n=200, seed=11)
    X_new[:4, 1] = ["new town", None, "zz", "berlin"]
    bp = Binner(16).fit(X[:, 2:])
    a = model_io.active_json("m1", "bank", model.binner_, ["income", "city"], model.base_score_, model.trees_,
                             model.split_ids_, ["market"], {"n_trees": 4})
    model_io.save(a, tmp_path / "bank.json")
    saved = json.loads((tmp_path / "bank.json").read_text())
    assert saved["binning"]["categories"] == [None, sorted(CITIES.tolist())]
    city_nodes = [nd for t in saved["trees"] for nd in t if nd.get("feature") == "city"]
    assert city_nodes and all(set(nd["left_categories"]) <= set(CITIES) | {None} for nd in city_nodes)
    binner_a, _, base, trees, ids = model_io.active_trees(model_io.load(tmp_path / "bank.json", "active"))
    assert [t.left_bins for t in trees] == [t.left_bins for t in model.trees_]
    id_list = [sid for t in ids for _, sid in t.values()]
    reply = passive_bitmaps(PredictRequest("s", "m1", len(X_new), "\n".join(id_list).encode()),
                            bp.transform(X_new[:, 2:]), passive.split_bins_, 15)
    masks = {("market", i): unpack_mask(b, len(X_new))
             for i, b in zip(id_list, unframe_blobs(reply.payload, len(id_list)))}
    raw = predict_federated(trees, ids, base, binner_a.transform(X_new[:, :2]), 15, masks)
    assert np.array_equal(raw, categorical_trained["reference"].decision_function(X_new))
    with pytest.raises(InputError, match="'city' are categorical; the decision service scores numeric features only"):
        ActiveScorer(saved)


def test_a_passive_categorical_column_gives_the_trees_of_the_reference_and_reloads(tmp_path):
    from tandem.learn import model_io

    X, y = _categorical_data(n=900, seed=4)
    X[:, 3] = X[:, 1][np.random.default_rng(2).permutation(len(X))]       # a second city column, at the passive party
    X[X[:, 3] == "zz", 3] = "hue"     # no rare city: a bin of 1..4 rows at a node makes the feature one bucket there
    cities = {c: i for i, c in enumerate(CITIES)}
    y = np.where(np.array([cities.get(c, 0) % 3 == 0 for c in X[:, 3]]) & (np.arange(len(y)) % 2 == 0), 1.0, y)
    kw = dict(n_trees=4, max_depth=3, learning_rate=0.3, bins=16)
    model, passives, _ = _fit(X, y, passive_categorical=(3,), categorical=[1], **kw)
    reference = HistBoostingClassifier(**kw, **MERGED, categorical=[1, 3]).fit(X, y)
    _same_trees(model.trees_, reference.trees_)
    assert np.array_equal(model.raw_, reference.decision_function(X))
    passive = passives[0]
    sets = [left for f, _b, _m, _t, left in passive.splits_.values() if f == 1]   # column 3 = passive feature 1
    assert sets and all(sets)                                                  # split as sets of its categories
    bp = Binner(16, 0, [1]).fit(X[:, 2:])
    p = model_io.passive_json("m1", "market", bp, ["returns", "city2", "night"], passive.split_bins_)
    model_io.save(p, tmp_path / "market.json")
    binner_p, _, splits = model_io.passive_splits(model_io.load(tmp_path / "market.json", "passive"))
    assert splits == passive.split_bins_
    X_new, _ = _categorical_data(n=150, seed=12)
    X_new[:3, 3] = ["nowhere", None, "zz"]
    ids = [sid for t in model.split_ids_ for _, sid in t.values()]
    reply = passive_bitmaps(PredictRequest("s", "m1", len(X_new), "\n".join(ids).encode()),
                            binner_p.transform(X_new[:, 2:]), splits, 15)
    masks = {(0, i): unpack_mask(b, len(X_new)) for i, b in zip(ids, unframe_blobs(reply.payload, len(ids)))}
    raw = predict_federated(model.trees_, model.split_ids_, model.base_score_,
                            model.binner_.transform(X_new[:, :2]), 15, masks)
    assert np.array_equal(raw, reference.decision_function(X_new))

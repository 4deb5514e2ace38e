"""Scorecard second moments and scoring (issue 15): the federated AᵀA and Aᵀy of the WoE design equal numpy
on the pooled quantised rows; the label holder decrypts only masked per-bin sums (each entry and nothing
else); lying peers on both sides end the run with one clear error; partial scores are the passive part."""

import numpy as np
import pytest

from tandem.crypto.he import PublicHe, SecretHe, looks_masked
from tandem.errors import InputError
from tandem.learn.scorecard.gram import ActiveGram, PassiveGram, pair_order, quantise_woe
from tandem.learn.scorecard.prebin import Layout
from tandem.learn.scorecard.scoring import ActiveScoring, PassiveScoring
from tandem.learn.scorecard.tables import BinTable
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.framing import frame_blobs, unframe_blobs
from tandem.protocols.message import decode
from tandem.protocols.wire import GramColumns, GramStart, GramSums, PartialScores, ScoreRequest


@pytest.fixture(scope="module")
def keys():
    return SecretHe.generate("ou", 1024)


def _case(n=3000, n_own=3, sizes=(4, 6, 3), seed=0):
    """Labels, own quantised WoE columns (n, n_own), passive final bins (n, f) and their BinTables."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(float)
    own = quantise_woe(rng.normal(scale=0.8, size=(n, n_own)))
    base = rng.integers(0, 100, n)
    bins = np.zeros((n, len(sizes)), dtype=np.int64)
    for j, m in enumerate(sizes):
        bins[:, j] = (base * (j + 3) // 7 + rng.integers(0, 2, n)) % m
    tables = []
    for j, m in enumerate(sizes):
        ev = np.bincount(bins[:, j], weights=y, minlength=m).astype(np.int64)
        ct = np.bincount(bins[:, j], minlength=m).astype(np.int64)
        tables.append(BinTable(f"f{j}", Layout("numeric", m - 1, 0), np.arange(m), m - 1, ev, ct))
    return y, own, bins, tables


def _pooled(y, own, bins, tables):
    w = np.zeros((len(y), len(tables)))
    for j, t in enumerate(tables):
        w[:, j] = quantise_woe(t.woe)[bins[:, j]]
    a = np.column_stack([np.ones(len(y)), own, w])
    return a.T @ a, a.T @ y


def _run(active, passive, tamper=None):
    """Drive both roles through decode(encode()); ``tamper(msg) -> msg`` rewrites what the passive sends."""
    passive.start()
    back = []
    for m in active.start():
        back += passive.receive(decode(m.encode()))
    for m in back:
        active.receive(decode((tamper(m) if tamper else m).encode()))
    return back


@pytest.mark.parametrize(
    "n_own,sizes,chunk",
    [(3, (4, 6, 3), 1000), (0, (5, 2), 3000), (7, (3,), 700), (2, (), 3000)],
    ids=["three-own-three-passive-chunked", "no-own", "two-slot-columns", "no-passive"],
)
def test_federated_moments_equal_pooled_numpy(keys, n_own, sizes, chunk):
    y, own, bins, tables = _case(n_own=n_own, sizes=sizes)
    names = [f"a{k}" for k in range(n_own)]
    active = ActiveGram("s1", y, own, names, tables, keys, chunk_rows=chunk)
    passive = PassiveGram("s1", bins, list(sizes), [t.name for t in tables], PublicHe.from_bytes(keys.public_bytes()))
    _run(active, passive)
    assert active.done and passive.done
    xtx, xty = _pooled(y, own, bins, tables)
    assert active.names_ == names + [t.name for t in tables]
    np.testing.assert_allclose(active.xtx_, xtx, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(active.xty_, xty, rtol=1e-12, atol=1e-9)
    assert np.array_equal(active.xtx_, active.xtx_.T)


def test_passive_may_use_a_subset_of_its_features_and_the_rest_stay_out(keys):
    y, own, bins, tables = _case(sizes=(4, 6, 3))
    active = ActiveGram("s1", y, own, ["a0", "a1", "a2"], [tables[0], tables[2]], keys)
    passive = PassiveGram("s1", bins, [4, 6, 3], ["f0", "f1", "f2"], PublicHe.from_bytes(keys.public_bytes()))
    _run(active, passive)
    xtx, _ = _pooled(y, own, bins[:, [0, 2]], [tables[0], tables[2]])
    np.testing.assert_allclose(active.xtx_, xtx, rtol=1e-12, atol=1e-9)


def test_the_label_holder_decrypts_masked_sums_only_and_the_passive_sees_ciphertexts(keys):
    y, own, bins, tables = _case(n=1500, n_own=2, sizes=(4, 3))
    active = ActiveGram("s1", y, own, ["a0", "a1"], tables, keys)
    passive = PassiveGram("s1", bins, [4, 3], ["f0", "f1"], PublicHe.from_bytes(keys.public_bytes()))
    sent = active.start()
    passive.start()
    # what the passive party receives: ciphertexts, every one distinct (randomised), no WoE in plaintext
    start, columns = sent[0], sent[1:]
    table = keys.load(start.payload)
    assert table.rows == 7 and len({table[i, 0].serialize() for i in range(7)}) == 7
    woe_bytes = [np.float64(v).tobytes() for t in tables for v in quantise_woe(t.woe)]
    assert not any(b in m.encode() for m in sent for b in woe_bytes)
    back = []
    for m in sent:
        back += passive.receive(decode(m.encode()))
    (sums,) = back
    blobs = [keys.load(b) for b in unframe_blobs(sums.payload, sums.n_blobs)]
    order = pair_order(2, 2)
    assert sums.n_blobs == 2 * len(order)
    for idx, (_j, other) in enumerate(order):
        n_slots = 2 if other is None else 1
        # every per-bin sum the label holder can decrypt carries a fresh mask of 101 bits
        assert looks_masked(keys.decrypt_slots(blobs[2 * idx], n_slots))
    active.receive(decode(sums.encode()))
    assert active.done and len(columns) == 1


def _gram_roles(keys, sizes=(4, 3)):
    y, own, bins, tables = _case(n=1200, n_own=2, sizes=sizes)
    active = ActiveGram("s1", y, own, ["a0", "a1"], tables, keys)
    passive = PassiveGram("s1", bins, list(sizes), ["f0", "f1"], PublicHe.from_bytes(keys.public_bytes()))
    return active, passive


def test_a_lying_passive_party_is_refused(keys):
    active, passive = _gram_roles(keys)
    with pytest.raises(RemoteProtocolError, match="blobs"):
        _run(active, passive, lambda m: GramSums(m.session, m.n_blobs - 2, frame_blobs(unframe_blobs(m.payload)[2:])))
    active, passive = _gram_roles(keys)
    with pytest.raises(RemoteProtocolError, match="not readable"):
        _run(active, passive, lambda m: GramSums(m.session, m.n_blobs, frame_blobs([b"junk"] * m.n_blobs)))

    def swapped(m):  # a masked sum where its weighted masks belong: the unmasking goes out of range
        blobs = unframe_blobs(m.payload)
        blobs[2], blobs[3] = blobs[3], blobs[2]
        return GramSums(m.session, m.n_blobs, frame_blobs(blobs))

    active, passive = _gram_roles(keys)
    with pytest.raises(RemoteProtocolError, match="shape|out of range"):
        _run(active, passive, swapped)
    assert active.state.name == "ERROR"


def test_a_lying_label_holder_is_refused(keys):
    pub = PublicHe.from_bytes(keys.public_bytes())
    active, passive = _gram_roles(keys)
    start = active.start()[0]
    cases = [
        (GramStart("s1", ["f0", "f9"], 2, 1200, start.payload), "does not have"),
        (GramStart("s1", ["f1", "f0"], 2, 1200, start.payload), "order"),
        (GramStart("s1", ["f0", "f1"], 2, 999, start.payload), "training rows"),
        (GramStart("s1", ["f0"], 2, 1200, start.payload), "WoE ciphertexts"),
    ]
    for msg, reason in cases:
        role = PassiveGram("s1", passive.bins, [4, 3], ["f0", "f1"], pub)
        role.start()
        with pytest.raises(RemoteProtocolError, match=reason):
            role.receive(decode(msg.encode()))
    role = PassiveGram("s1", passive.bins, [4, 3], ["f0", "f1"], pub)
    role.start()
    role.receive(decode(start.encode()))
    with pytest.raises(RemoteProtocolError, match="out of order"):
        role.receive(decode(GramColumns("s1", 1, 0, 1200, True, b"").encode()))


def test_bad_local_input_is_one_clear_error(keys):
    y, own, bins, tables = _case(n=100, n_own=1, sizes=(3,))
    with pytest.raises(InputError, match="below 32"):
        ActiveGram("s1", y, own * 0 + 40.0, ["a0"], tables, keys)
    with pytest.raises(InputError, match="rows"):
        ActiveGram("s1", y[:50], own[:50], ["a0"], tables, keys)
    with pytest.raises(LocalProtocolError, match="fit"):
        PassiveGram("s1", bins + 5, [3], ["f0"], PublicHe.from_bytes(keys.public_bytes()))


def test_partial_scores_are_the_passive_part_of_the_logit():
    rng = np.random.default_rng(3)
    bins = np.column_stack([rng.integers(0, 4, 500), rng.integers(0, 3, 500)])
    contrib = [rng.normal(size=4), rng.normal(size=3)]
    rows = rng.random(500) < 0.3
    active = ActiveScoring("s1", ["f0", "f1"], contrib, rows)
    passive = PassiveScoring("s1", bins, [4, 3], ["f0", "f1"])
    _run(active, passive)
    expected = contrib[0][bins[rows, 0]] + contrib[1][bins[rows, 1]]
    np.testing.assert_allclose(active.scores_, expected, rtol=0, atol=1e-15)
    assert passive.features_ == ["f0", "f1"] and np.array_equal(passive.contributions_[1], contrib[1])
    # a request for no rows only hands over the part; an answer of the wrong size is refused
    only = ActiveScoring("s2", ["f1"], [contrib[1]], np.zeros(500, bool))
    _run(only, PassiveScoring("s2", bins, [4, 3], ["f0", "f1"]))
    assert only.done and len(only.scores_) == 0
    active = ActiveScoring("s3", ["f0"], [contrib[0]], rows)
    with pytest.raises(RemoteProtocolError, match="asked for"):
        _run(active, PassiveScoring("s3", bins, [4, 3], ["f0", "f1"]), lambda m: PartialScores(m.session, 3, m.payload))
    role = PassiveScoring("s4", bins, [4, 3], ["f0", "f1"])
    with pytest.raises(RemoteProtocolError, match="contributions"):
        role.receive(decode(ScoreRequest("s4", ["f0"], 500, frame_blobs([b"\0" * 16, b"\0" * 63])).encode()))

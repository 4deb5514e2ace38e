"""Scorecard binning (issue 15, deliverable 1): the federated bins, WoE and IV of a passive party's features
equal optbinning on the pooled rows with the same pre-bins; pre-bins below the minimum count are merged
and never returned alone; the bytes each side receives hold no label and no feature value; a lying or
malformed peer ends the run with one clear error."""

import json
import struct
import warnings

import numpy as np
import pytest
from optbinning import OptimalBinning

from tandem.crypto.he import PublicHe, SecretHe, row_bytes
from tandem.errors import InputError
from tandem.learn.scorecard.active import ActiveBinning
from tandem.learn.scorecard.optimal import bin_own, merge_from_counts, reference_fit
from tandem.learn.scorecard.options import BinningOptions
from tandem.learn.scorecard.passive import PassiveBinning
from tandem.learn.scorecard.prebin import Layout, Prebins
from tandem.learn.scorecard.tables import assign_problem
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.framing import bucket_sums_passes
from tandem.protocols.message import _HEAD, decode
from tandem.protocols.wire import BinMerge, EncryptedLabels, PrebinSums

KEY_BITS = 1024  # small keys keep the suite fast; the protocol does not depend on the size
OPTS = BinningOptions(special_codes=(-999, -998, "unknown")).check()
K = OPTS.min_bin_rows


@pytest.fixture(scope="module")
def keys():
    return SecretHe.generate("ou", KEY_BITS)


def _data(n=2000, seed=0):
    """Three passive columns (numeric with missing and two special codes, one of them rare; categorical
    with rare categories, missing and a special code; numeric without either) and labels."""
    rng = np.random.default_rng(seed)
    num = rng.normal(size=n)
    cat = rng.choice(np.array(["rent", "own", "mortgage", "family", "other"], dtype=object), n).astype(object)
    flat = rng.exponential(size=n)
    z = 0.9 * num + np.where(cat == "rent", 0.8, 0.0) - 0.5 * flat
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    num[rng.random(n) < 0.05] = np.nan
    num[100:130], num[130:133] = -999, -998  # -998: 3 rows, below the minimum
    cat[200:203] = "rare"  # 3 rows
    cat[300:340] = None
    cat[400:425] = "unknown"
    return [num, cat, flat], y


def _passive(columns, opts=OPTS, names=None):
    pre = [Prebins.fit(f"f{j}", c, opts) for j, c in enumerate(columns)]
    ids = np.stack([p.transform(c) for p, c in zip(pre, columns)], axis=1)
    names = names or [p.name for p in pre]
    return pre, PassiveBinning("s1", ids, [p.layout for p in pre], names, opts.min_bin_rows)


def _run(active, passive, to_active=None, to_passive=None):
    """Both roles in memory, every message encoded and decoded; returns (bytes to passive, bytes to active).
    ``to_active`` / ``to_passive``: a function that may replace a message on its way."""
    sent_p, sent_a = [], []
    passive.start()
    inbox = active.start()
    while inbox:
        replies = []
        for m in inbox:
            m = to_passive(m) if to_passive else m
            sent_p.append(m.encode())
            replies += passive.receive(decode(sent_p[-1]))
        inbox = []
        for m in replies:
            m = to_active(m) if to_active else m
            sent_a.append(m.encode())
            inbox += active.receive(decode(sent_a[-1]))
    return sent_p, sent_a


def _header(frame: bytes) -> dict:
    _m, _v, _c, hlen = _HEAD.unpack_from(frame)
    return json.loads(frame[_HEAD.size : _HEAD.size + hlen])


def _optbinning_table(prebins, x, y, opts=OPTS):
    """optbinning's own WoE and IV per bin on the pooled column (the empty "Special" row dropped)."""
    ob = OptimalBinning(
        dtype="numerical" if prebins.kind == "numeric" else "categorical",
        user_splits=prebins.user_splits(),
        special_codes=prebins.special_codes(),
        **opts.optbinning_kwargs(),
    )
    ob.fit(prebins.pooled_input(x), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optbinning's totals row under pandas 3
        t = ob.binning_table.build()
    t = t[t.index != "Totals"]
    if prebins.layout.n_special == 0:
        t = t[t["Bin"] != "Special"]
    return t["WoE"].to_numpy(float), t["IV"].to_numpy(float), float(ob.binning_table.iv)


def test_federated_bins_woe_and_iv_equal_optbinning_on_pooled_rows(keys):
    columns, y = _data()
    pre, passive = _passive(columns)
    active = ActiveBinning("s1", y, keys, OPTS, chunk_rows=700)  # three label chunks
    _run(active, passive)
    assert active.done and passive.done
    for j, (p, x) in enumerate(zip(pre, columns)):
        fed, ref = active.tables_[p.name], reference_fit(x, y, p, OPTS)
        assert np.array_equal(fed.assign, ref.assign) and np.array_equal(passive.assign_[j], fed.assign)
        assert np.array_equal(fed.events, ref.events) and np.array_equal(fed.counts, ref.counts)
        assert np.array_equal(fed.woe, ref.woe) and fed.iv == ref.iv  # bit for bit
        woe, iv_bins, iv = _optbinning_table(p, x, y)
        assert np.allclose(fed.woe, woe, rtol=0, atol=1e-12) and np.allclose(fed.iv_bins, iv_bins, atol=1e-12)
        assert abs(fed.iv - iv) < 1e-9
        assert fed.n_value_bins >= 2 and (fed.counts[fed.counts > 0] >= K).all()
    num, cat = pre[0], pre[1]
    assert num.layout.n_special == 1 and num.code_to["-998.0"] == num.layout.missing  # rare code: with missing
    assert cat.layout.n_special == 1 and ("rare",) not in cat.groups  # 3 rows: never a pre-bin of its own
    assert set(passive_edges := num.final_edges(passive.assign_[0])) <= set(num.edges.tolist())
    assert passive_edges == sorted(passive_edges)


def test_replica_equals_pooled_optbinning_on_random_features():
    """The count replica (what the label holder runs) against optbinning on pooled raw values, for numeric
    features with several trends and pure pre-bins, and for categorical ones."""
    rng = np.random.default_rng(7)
    for i in range(8):
        n = 600
        x = rng.normal(size=n).round(1 if i % 2 else 3)
        slope = [2.0, -2.0, 0.0, 4.0][i % 4]
        y = (rng.random(n) < 1 / (1 + np.exp(-slope * x - (x**2 if i == 2 else 0)))).astype(np.int64)
        if i == 3:
            y[x > 1.2] = 1  # pure pre-bins at the top
        x[rng.random(n) < 0.1] = np.nan
        x[:12] = -999
        trend = ["auto_asc_desc", "descending", "auto", None][i % 4]
        opts = BinningOptions(max_n_prebins=12, monotonic_trend=trend, special_codes=(-999,), max_n_bins=6)
        if i >= 6:
            x = np.array([f"c{int(v * 3) % 7}" if v == v else None for v in x], dtype=object)
        p = Prebins.fit(f"x{i}", x, opts)
        ids = p.transform(x)
        counts = np.bincount(ids, minlength=p.layout.n_prebins)
        events = np.bincount(ids, weights=y, minlength=p.layout.n_prebins).astype(np.int64)
        fed, ref = merge_from_counts(p.name, p.layout, events, counts, opts), reference_fit(x, y, p, opts)
        assert np.array_equal(fed.assign, ref.assign), (i, fed.assign, ref.assign)
        assert np.array_equal(fed.woe, ref.woe) and abs(fed.iv - ref.iv) < 1e-9
        assert assign_problem(fed.assign, p.layout) is None


def test_label_holder_bins_its_own_features_by_the_same_rule():
    columns, y = _data(seed=3)
    for x in columns:
        p, own = bin_own("a", x, y, OPTS)
        ref = reference_fit(x, y, p, OPTS)
        assert np.array_equal(own.assign, ref.assign) and own.iv == ref.iv and own.edges is not None


def test_more_than_127_prebins_use_the_multi_pass_sums(keys):
    """The sums of 200-odd pre-bins (three bucket-sum passes, the missing one only in chunks that hold a
    missing row), added up over label chunks, decrypt to the exact (events, rows) of every pre-bin.
    (The merge itself is left out: optbinning's CP solver takes minutes on 200 pre-bins.)"""
    rng = np.random.default_rng(5)
    x = rng.normal(size=1500)
    y = (rng.random(1500) < 1 / (1 + np.exp(-x))).astype(np.int64)
    x[1200:1260] = np.nan  # missing rows in the last chunks only
    opts = BinningOptions(max_n_prebins=200, min_bin_rows=5)
    pre, passive = _passive([x], opts)
    lay = pre[0].layout
    assert lay.n_prebins > 127
    active = ActiveBinning("s1", y, keys, opts, chunk_rows=400)
    passive.start()
    out = [r for m in active.start() for r in passive.receive(decode(m.encode()))]
    [sums] = [decode(m.encode()) for m in out]
    passes = bucket_sums_passes(sums.payload, sums.n_bins)
    assert len(passes) == 3
    events, counts = keys.decrypt_bucket_sums(passes, 1, sums.n_bins)
    ids = pre[0].transform(x).astype(np.int64)
    ids[ids == lay.missing] = sums.n_bins - 1
    assert np.array_equal(counts[0], np.bincount(ids, minlength=sums.n_bins))
    assert np.array_equal(events[0], np.bincount(ids, weights=y, minlength=sums.n_bins).astype(np.int64))


def test_small_prebins_are_merged_never_returned_alone():
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    x[0], x[1] = 1e6, -1e6  # one row each far outside
    x[2:4] = -999  # a special code of 2 rows
    x[4:6] = np.nan  # 2 missing rows
    p = Prebins.fit("x", x, BinningOptions(max_n_prebins=100, special_codes=(-999,), min_bin_rows=10))
    counts = np.bincount(p.transform(x), minlength=p.layout.n_prebins)
    assert (counts[counts > 0] >= 10).all()
    assert p.layout.n_special == 0 and p.missing_to == 0 and p.code_to["-999.0"] == 0  # 4 rows: into bin 0
    assert p.transform(np.array([1e6]))[0] == p.transform(np.array([np.nanmax(x[6:])]))[0]
    cat = np.array(["a"] * 40 + ["b"] * 30 + ["c", "d", "e"], dtype=object)
    pc = Prebins.fit("c", cat, BinningOptions(min_bin_rows=5))
    assert pc.groups == (("a",), ("b", "c", "d", "e"))  # rare categories (3 rows) join the smallest group
    assert pc.transform(np.array(["never seen"], dtype=object))[0] == pc.cat_to["c"]
    for bad in (np.ones(50), np.full(50, np.nan), np.array(["x"] * 50, dtype=object)):
        with pytest.raises(InputError, match="feature 'bad' cannot be binned"):
            Prebins.fit("bad", bad, BinningOptions())


def test_a_passive_party_refuses_prebins_below_its_minimum(keys):
    """Attack: pre-bin ids that would single out rows (a pre-bin of one row, as a crafted or careless
    pre-binning gives) are refused before any key or label is accepted, so no decrypted sum covers fewer
    than min_bin_rows rows; with its own pre-binning every sum the label holder sees holds 0 or >= k rows."""
    columns, y = _data(n=600)
    lone = np.stack([np.arange(600) % 2, np.r_[0, np.ones(599)]], axis=1).astype(np.uint8)  # row 0 alone
    with pytest.raises(LocalProtocolError, match="below min_bin_rows 5"):
        PassiveBinning("s1", lone, [Layout("numeric", 2, 0)] * 2, ["f0", "f1"], 5)
    _pre, passive = _passive(columns)
    active = ActiveBinning("s1", y, keys, OPTS)
    _sent_p, sent_a = _run(active, passive)
    _events, counts = keys.decrypt_bucket_sums([decode(sent_a[0]).payload], 3, decode(sent_a[0]).n_bins)
    assert ((counts == 0) | (counts >= K)).all() and (counts > 0).sum() > 6


def test_bytes_received_hold_no_label_and_no_feature_value(keys):
    columns, y = _data(n=1200)
    pre, passive = _passive(columns)
    active = ActiveBinning("s1", y, keys, OPTS, chunk_rows=500)
    sent_p, sent_a = _run(active, passive)
    kinds = [decode(b).name for b in sent_p]
    assert kinds == ["ScorecardKey", "EncryptedLabels", "EncryptedLabels", "EncryptedLabels", "BinMerge"]
    label_patterns = [np.packbits(y).tobytes(), y.astype(np.uint8).tobytes(), y.astype(np.int64).tobytes()]
    cts_all = []
    he = PublicHe.from_bytes(decode(sent_p[0]).payload)
    for b in sent_p:
        assert not any(p[:64] in b for p in label_patterns)
        m = decode(b)
        if isinstance(m, EncryptedLabels):
            cts = he.load(m.payload)
            assert cts.rows == m.n_rows and cts.cols == 1  # ciphertexts only, one per row
            cts_all += row_bytes(cts)
            assert set(_header(b)) == {"session", "seq", "first", "n_rows", "last"}
        if isinstance(m, BinMerge):  # bin ids only: no count, no WoE
            assert set(_header(b)) == {"session", "features", "assignments"}
            assert all(int(v) < lay.n_prebins for a, lay in zip(m.assignments, passive.layouts) for v in a.split(","))
    assert len(cts_all) == len(y) and len(set(cts_all)) == len(y)  # randomised: equal labels, distinct bytes
    [sums] = [decode(b) for b in sent_a]
    assert isinstance(sums, PrebinSums)
    assert he.load(sums.payload).rows == 3 * sums.n_bins  # ciphertexts only: one per (feature, pre-bin)
    header = json.dumps(_header(sent_a[0]))
    for p, x in zip(pre, columns):
        values = [v for v in x if isinstance(v, float) and v == v][:200] + list(p.edges)
        assert not any(struct.pack("<d", v) in sent_a[0] or repr(round(v, 6)) in header for v in values)
    assert not any(c in header for c in ("rent", "mortgage", "family"))


def _fails(keys, match, to_active=None, to_passive=None, n=600):
    columns, y = _data(n=n)
    _pre, passive = _passive(columns)
    active = ActiveBinning("s1", y, keys, OPTS, chunk_rows=250)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        _run(active, passive, to_active, to_passive)
    assert "\n" not in str(info.value)
    assert "error" in (active.state.value, passive.state.value)
    return active, passive


def _edit(cls, **changes):
    return lambda m: type(m)(**{**m.__dict__, **changes}) if isinstance(m, cls) else m


def test_a_lying_passive_party_is_refused(keys):
    lay = _passive(_data(n=600)[0])[0][0].layout  # f0's (the widest) layout: n_bins stays right
    _fails(keys, "do not add up", _edit(PrebinSums, n_values=[lay.n_values + lay.n_special, 3, 3], n_special=[0] * 3))
    _fails(keys, "does not fit the layouts", _edit(PrebinSums, n_bins=200))
    _fails(keys, "layout lists do not match", _edit(PrebinSums, kinds=["numeric"]))
    _fails(keys, "not readable ciphertexts", _edit(PrebinSums, payload=b"\x00" * 300))
    _fails(keys, "each once", _edit(PrebinSums, features=["f0", "f0", "f2"]))
    _fails(keys, "kind must be one of", _edit(PrebinSums, kinds=["numeric", "text", "numeric"]))
    frame = PrebinSums("s1", ["../etc"], ["numeric"], [2], [0], 3).encode()
    with pytest.raises(RemoteProtocolError, match="not a valid identifier"):
        decode(frame)  # names the label holder may build paths from are checked on decode


def test_a_lying_label_holder_is_refused(keys):
    def merge(text):
        return lambda m: BinMerge(m.session, m.features, [text] + m.assignments[1:]) if isinstance(m, BinMerge) else m

    lay = _passive(_data(n=600)[0])[0][0].layout
    g = lay.n_values

    def ids(values):
        top = max(values) + 1
        return ",".join(map(str, list(values) + list(range(top, top + lay.n_special + 1))))

    assert assign_problem(np.array(ids([0] * g).split(","), dtype=int), lay) is None  # one value bin: fine
    _fails(keys, "pre-bins instead of", to_passive=merge("0,1"))  # wrong number of bins
    _fails(keys, "not a list of bin ids", to_passive=merge("0,999,x"))
    _fails(keys, "special and missing", to_passive=merge(ids([0] * g).replace(",1,", ",999,", 1)))  # out of range
    _fails(keys, "consecutive pre-bins", to_passive=merge(ids([0] * (g - 1) + [2])))  # a gap
    active, passive = _fails(keys, "consecutive pre-bins", to_passive=merge(ids([0, 1, 0] + [1] * (g - 3))))
    _fails(keys, "does not name", to_passive=_edit(BinMerge, features=["f0", "f1"]))
    _fails(keys, "out of order or range", to_passive=_edit(EncryptedLabels, first=5))
    _fails(keys, "before or after the last", to_passive=_edit(EncryptedLabels, last=True))
    with pytest.raises(LocalProtocolError, match="the run is over"):
        passive.receive(BinMerge("s1", [], []))


def test_a_special_or_missing_bin_merged_into_values_is_refused():
    lay = Layout("numeric", 3, 1)
    assert assign_problem(np.array([0, 1, 1, 2, 3]), lay) is None
    assert "own" in assign_problem(np.array([0, 1, 1, 1, 2]), lay)
    assert "own" in assign_problem(np.array([0, 0, 1, 2, 2]), lay)
    assert "numbered" in assign_problem(np.array([0, 2, 2, 3, 4]), Layout("categorical", 3, 1))  # a gap
    assert assign_problem(np.array([0, 2, 1, 3, 4]), Layout("categorical", 3, 1)) is None


def test_bad_labels_and_options_are_one_clear_line(keys):
    with pytest.raises(InputError, match="0 and 1"):
        ActiveBinning("s1", np.array([0, 2, 1]), keys, OPTS)
    with pytest.raises(InputError, match="both 0 and 1"):
        ActiveBinning("s1", np.zeros(10), keys, OPTS)
    with pytest.raises(InputError, match="monotonic_trend"):
        BinningOptions(monotonic_trend="up").check()
    with pytest.raises(InputError, match="min_bin_rows"):
        BinningOptions(min_bin_rows=0).check()


def test_a_heavy_value_gets_a_prebin_of_its_own_so_a_count_features_tail_is_kept():
    """97% zeros: every quantile falls on 0, yet the 1s and 2s (60 rows) must not be lost in one bin with it."""
    x = np.r_[np.zeros(1940), np.ones(40), np.full(20, 2.0)]
    p = Prebins.fit("prior_defaults", x, BinningOptions().check())
    ids = p.transform(x)
    assert p.layout.n_values >= 2 and len(set(ids[x == 0])) == 1 and not set(ids[x == 0]) & set(ids[x > 0])

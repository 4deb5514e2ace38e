"""Attacks of a dishonest active party on a SecureBoost passive party, performed against its defences
(docs/privacy.md, "Threat model"): reading rows out of small bucket sums, and asking for splits an
honest active party could not have picked. The passive role is driven directly, message by message;
the attacker crafts its own gradients (every hessian 1, so a decrypted hessian sum counts rows)."""

import numpy as np
import pytest

from tandem.crypto.he import SecretHe, quantise
from tandem.learn.buckets import bucket_bins, merge_bins
from tandem.learn.secureboost.passive import PassiveBoost
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.framing import frame_blobs, histogram_parts, pack_mask, unframe_blobs
from tandem.protocols.wire import (
    BoostStart,
    EncryptedGradients,
    EncryptedHistograms,
    PassivePartitions,
    PublicKeyMsg,
    SplitDecisions,
    SplitRequest,
)

BINS, N = 8, 60
MISSING = BINS - 1


@pytest.fixture(scope="module")
def he():
    return SecretHe.generate("ou", 1024)


def _binned():
    """Two features over 60 rows: feature 0 spread over bins 0..5 with ONE row in bin 6 (the tail)
    and two rows missing; feature 1 with a single row in bin 0 and the rest in bins 3 and 4."""
    rng = np.random.default_rng(0)
    f0 = rng.integers(0, 6, N)
    f0[7], f0[[11, 12]] = 6, MISSING
    f1 = np.where(np.arange(N) % 2 == 0, 3, 4)
    f1[5] = 0
    return np.column_stack([f0, f1]).astype(np.uint8)


def _passive(he, binned, k=5, n_trees=2, max_depth=3):
    """A passive party after the root's histograms; returns (role, root histogram message)."""
    role = PassiveBoost("s", binned, min_bin_rows=k)
    role.start()
    start = frame_blobs([pack_mask(np.ones(len(binned), bool)), b""])
    role.receive(BoostStart("s", len(binned), n_trees, max_depth, BINS, 0, start))
    role.receive(PublicKeyMsg("s", 0, he.public_bytes()))
    [hist] = role.receive(_gradients(he, len(binned), tree=0))
    return role, hist


def _gradients(he, n, tree):
    """The attacker's gradients: row i's gradient i + 1 (a row names itself), every hessian 1."""
    g, h = quantise(np.arange(1, n + 1) / 1024), quantise(np.ones(n))
    cts = he.encrypt_gh(g, h)
    return EncryptedGradients("s", tree, frame_blobs([pack_mask(np.ones(n, bool)), he.dump(cts)]))


def _counts(he, msg: EncryptedHistograms, n_features=2):
    """What the attacker decrypts: rows per returned bucket (f, bins) and the bucket structure."""
    buckets, passes = histogram_parts(unframe_blobs(msg.payload, 1)[0], n_features, BINS)
    _g, h = he.decrypt_bucket_sums(passes, n_features, BINS, packed=True)
    return h >> 32, buckets  # h_q of 1.0 is 2**32


def _reported(counts, buckets):
    """The counts of every bucket the message reports (a bucket's sum sits at its last bin)."""
    return [int(counts[j, b]) for j in range(len(counts)) for b in np.unique(bucket_bins(buckets)[j])]


def test_without_the_rule_a_one_row_bin_gives_that_row_away(he):
    binned = _binned()
    _role, hist = _passive(he, binned, k=1)
    counts, _ = _counts(he, hist)
    assert counts[0, 6] == 1 and counts[1, 0] == 1  # the attack works when nothing is merged
    buckets, passes = histogram_parts(unframe_blobs(hist.payload, 1)[0], 2, BINS)
    g, _ = he.decrypt_bucket_sums(passes, 2, BINS, packed=True)
    assert round(g[0, 6] / 2**32 * 1024) - 1 == 7  # the gradient names row 7: its feature-0 bin is 6


def test_no_returned_bucket_sum_covers_fewer_than_min_bin_rows_rows(he):
    binned = _binned()
    role, hist = _passive(he, binned, k=5)
    counts, buckets = _counts(he, hist)
    assert min(_reported(counts, buckets)) >= 5
    assert not buckets[0, MISSING] and counts[0, MISSING] == 0  # two missing rows: merged, not alone
    assert counts.sum(axis=1).tolist() == [N, N]                  # nothing suppressed, only merged
    # one level down: the sent child's buckets, and the sibling derived as root minus child
    left = binned[:, 1] <= 3                                      # an honest split at a bucket boundary
    [child] = role.receive(SplitDecisions("s", 0, [0], ["rows"], frame_blobs([pack_mask(left)])))
    child_counts, child_buckets = _counts(he, child)
    assert not (child_buckets & ~buckets).any()                   # a coarsening of the root's buckets
    to = bucket_bins(child_buckets)
    root_coarse = np.zeros_like(counts)
    for j in range(2):
        np.add.at(root_coarse[j], to[j], counts[j])
    sibling = root_coarse - child_counts
    assert min(_reported(child_counts, child_buckets)) >= 5 and min(_reported(sibling, child_buckets)) >= 5


def test_merge_bins_keeps_every_bucket_above_k_in_both_siblings():
    rng = np.random.default_rng(3)
    for _ in range(200):
        a = rng.poisson(rng.uniform(0, 4), size=(3, BINS))
        b = rng.poisson(rng.uniform(0, 4), size=(3, BINS))
        cuts = merge_bins([a, b], 5)
        assert cuts[:, MISSING - 1].all()
        for c in (a, b):
            sums = np.zeros_like(c)
            for j in range(3):
                np.add.at(sums[j], bucket_bins(cuts)[j], c[j])
            for j in range(3):
                reported = sums[j][np.unique(bucket_bins(cuts)[j])]
                whole = len(np.unique(bucket_bins(cuts)[j])) == 1  # the whole node: known to the attacker
                assert whole or reported.min() >= 5


def _refused(role, msg, match):
    with pytest.raises(RemoteProtocolError, match=match):
        role.receive(msg)


def _valid_slot(he, hist):
    _counts_, buckets = _counts(he, hist)
    b = int(np.flatnonzero(buckets[0, : MISSING - 1])[0])
    return f"0:{b}:0"


@pytest.mark.parametrize("slot,node,match", [
    ("5:0:0", 0, "names no node or slot"),       # feature out of range
    ("0:7:0", 0, "names no node or slot"),       # bin out of range
    ("0:1:0", 3, "names no node or slot"),       # a node never grown
])
def test_a_forged_split_request_is_refused(he, slot, node, match):
    role, _hist = _passive(he, _binned())
    _refused(role, SplitRequest("s", 0, [node], [slot]), match)


def test_a_split_inside_a_merged_bucket_is_refused(he):
    role, hist = _passive(he, _binned())
    _counts_, buckets = _counts(he, hist)
    inside = int(np.flatnonzero(~buckets[1, : MISSING - 1])[0])  # feature 1: its lone bin-0 row is merged
    _refused(role, SplitRequest("s", 0, [0], [f"1:{inside}:0"]), "inside a merged bucket")
    role, hist = _passive(he, _binned())
    _refused(role, SplitRequest("s", 0, [0], [_valid_slot(he, hist)[:-1] + "1"]), "inside a merged bucket")


def test_a_second_request_for_the_same_node_is_refused(he):
    role, hist = _passive(he, _binned())
    slot = _valid_slot(he, hist)
    [answer] = role.receive(SplitRequest("s", 0, [0], [slot]))
    assert isinstance(answer, PassivePartitions)
    _refused(role, SplitRequest("s", 0, [0], ["1:3:0"]), "a second split request")
    role, hist = _passive(he, _binned())
    _refused(role, SplitRequest("s", 0, [0, 0], [slot, slot]), "malformed split request")


def test_a_split_asked_for_and_then_not_used_is_refused(he):
    role, hist = _passive(he, _binned())
    role.receive(SplitRequest("s", 0, [0], [_valid_slot(he, hist)]))
    _refused(role, SplitDecisions("s", 0, [0], ["leaf"], b""), "was not used")


def test_gradients_for_a_repeated_or_extra_tree_are_refused(he):
    role, _hist = _passive(he, _binned(), n_trees=2, max_depth=1)
    assert role.receive(SplitDecisions("s", 0, [0], ["leaf"], b"")) == []  # tree 0 done
    _refused(role, _gradients(he, N, tree=0), "expected a tree after 0, below 2")
    role, _hist = _passive(he, _binned(), n_trees=2, max_depth=1)
    role.receive(SplitDecisions("s", 0, [0], ["leaf"], b""))
    role.receive(_gradients(he, N, tree=1))
    role.receive(SplitDecisions("s", 1, [0], ["leaf"], b""))
    _refused(role, _gradients(he, N, tree=2), "below 2")


def _parts(he, n, tree, sizes, parts=None, mask_in=(0,)):
    """The attacker's gradients of ``n`` rows cut into parts of ``sizes`` rows (``parts`` claimed)."""
    m = sum(sizes)                                                      # ciphertexts sent, n rows in the bitmap
    g, h = quantise(np.arange(1, m + 1) / 1024), quantise(np.ones(m))
    cts, starts = [], np.cumsum([0, *sizes])
    for i, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        blob = he.dump(he.encrypt_gh(g[a:b], h[a:b])) if b > a else b""
        mask = pack_mask(np.ones(n, bool)) if i in mask_in else b""
        cts.append(EncryptedGradients("s", tree, frame_blobs([mask, blob]), i, parts or len(sizes)))
    return cts


@pytest.mark.parametrize("sizes, parts, mask_in, match", [
    ([30, 40], None, (0,), "gradients do not match the rows"),                     # more rows than the sample
    ([30, 20], None, (0,), "gradients do not match the rows"),                     # fewer
    ([30, 30], 3, (0,), "gradients do not match the rows"),                        # the sample ends before the parts
    ([20, 20, 20], None, (0, 1), "expected part 1 of tree 0"),                     # a second bitmap
    ([N] * 1, N + 1, (0,), "gradients do not match the rows"),                     # more parts than rows
])
def test_forged_gradient_parts_are_refused(he, sizes, parts, mask_in, match):
    role = PassiveBoost("s", _binned(), min_bin_rows=5)
    role.start()
    role.receive(BoostStart("s", N, 2, 3, BINS, 0, frame_blobs([pack_mask(np.ones(N, bool)), b""])))
    role.receive(PublicKeyMsg("s", 0, he.public_bytes()))
    msgs = _parts(he, N, 0, sizes, parts, mask_in)
    with pytest.raises(RemoteProtocolError, match=match):
        for msg in msgs:
            role.receive(msg)


def test_gradient_parts_out_of_order_or_of_another_tree_are_refused(he):
    for order, tree_of_second in (([0, 2, 1], 0), ([0, 1, 2], 1)):
        role = PassiveBoost("s", _binned(), min_bin_rows=5)
        role.start()
        role.receive(BoostStart("s", N, 2, 3, BINS, 0, frame_blobs([pack_mask(np.ones(N, bool)), b""])))
        role.receive(PublicKeyMsg("s", 0, he.public_bytes()))
        msgs = _parts(he, N, 0, [20, 20, 20])
        msgs[1] = EncryptedGradients("s", tree_of_second, msgs[1].payload, 1, 3)
        assert role.receive(msgs[order[0]]) == []
        _refused(role, msgs[order[1]], "expected part 1 of tree 0")


def test_min_bin_rows_is_the_passive_nodes_own_setting(tmp_path):
    from tandem.devcluster import node_configs
    from tandem.errors import InputError
    from tandem.learn.buckets import MIN_BIN_ROWS
    from tandem.learn.options import NAMES
    from tandem.node_config import load_node_config

    paths = node_configs(tmp_path, {"market": "market.duckdb"}, {"market": "market"}, 5.0)
    assert load_node_config(paths["market"]).min_bin_rows == MIN_BIN_ROWS == 5
    text = paths["market"].read_text()
    paths["market"].write_text(text + "\n[train]\nmin_bin_rows = 20\n")
    assert load_node_config(paths["market"]).min_bin_rows == 20
    paths["market"].write_text(text + "\n[train]\nmin_bin_rows = 0\n")
    with pytest.raises(InputError, match=r"\[train\] min_bin_rows must be an integer >= 1"):
        load_node_config(paths["market"])
    assert "min_bin_rows" not in NAMES  # not a training option: the active party cannot lower it


def _categorical_passive(he):
    """Features 0 (categorical, one row alone in bin 6), 1 (numeric) and 2 (categorical, 20 rows in
    each of bins 0, 1, 2) after the root's histograms."""
    binned = np.column_stack([_binned(), np.arange(N) % 3]).astype(np.uint8)
    role = PassiveBoost("s", binned, min_bin_rows=5, categorical=np.array([True, False, True]))
    role.start()
    start = frame_blobs([pack_mask(np.ones(N, bool)), b""])
    [ready] = role.receive(BoostStart("s", N, 2, 3, BINS, 0, start))
    assert ready.categorical == [0, 2]
    role.receive(PublicKeyMsg("s", 0, he.public_bytes()))
    role.receive(_gradients(he, N, tree=0))
    return role, binned


@pytest.mark.parametrize("slot,left,match", [
    ("2:-1:0", "0,1,2", "not a category set"),          # every category left: no split
    ("2:-1:0", "2,0", "not a category set"),            # not ascending
    ("2:-1:0", "7", "not a category set"),              # the missing bin is never in a set
    ("2:-1:0", "5", "not a category set"),              # a bin without rows at the node
    ("2:3:0", "0", "not a category set"),               # a categorical split names no bin
    ("2:-1:0", "", "malformed category set"),
    ("0:-1:0", "0", "its categories are merged"),       # bin 6 holds one row: the feature is one bucket
    ("1:3:0", "0", "names no node or slot"),            # a set for a numeric feature
])
def test_a_forged_category_set_is_refused(he, slot, left, match):
    role, _binned_ = _categorical_passive(he)
    _refused(role, SplitRequest("s", 0, [0], [slot], [left]), match)


def test_an_honest_category_set_gives_its_rows_and_keeps_the_set(he):
    role, binned = _categorical_passive(he)
    [answer] = role.receive(SplitRequest("s", 0, [0], ["2:-1:1"], ["0,2"]))
    [split_id] = answer.split_ids
    from tandem.protocols.framing import unframe_blobs, unpack_mask
    left = unpack_mask(unframe_blobs(answer.payload, 1)[0], N)
    assert np.array_equal(left, np.isin(binned[:, 2], [0, 2]))
    assert role.split_bins_[split_id] == (2, -1, True, (0, 2))

"""The plaintext histogram booster: the reference the federated booster will be tested against."""

import numpy as np
import pytest
from helpers import labelled_data

from tandem.crypto.he import dequantise, quantise
from tandem.errors import InputError
from tandem.learn.binning import Binner
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.grower import grow_tree
from tandem.learn.histogram import build_histogram
from tandem.learn.metrics import ks_statistic, roc_auc
from tandem.learn.splitting import SplitParams, best_split
from tandem.learn.tree import predict_binned


def _data(n=600, f=4, seed=0, missing=0.1):
    return labelled_data(n, f, seed, lambda X: 1.5 * X[:, 0] - 1.0 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3], missing)


def test_binner_orders_values_and_sends_missing_to_its_own_bin():
    X = np.array([[1.0], [2.0], [3.0], [np.nan], [2.0]])
    b = Binner(max_bins=8).fit(X)
    binned = b.transform(X)[:, 0]
    assert list(binned) == [0, 1, 2, 7, 1]
    assert b.threshold(0, 0) == 1.5 and b.threshold(0, 2) == float("inf")
    with pytest.raises(InputError, match="bins must be between 3 and 256"):
        Binner(max_bins=300).fit(X)
    with pytest.raises(InputError, match="infinite"):
        Binner().fit(np.array([[np.inf]]))


def test_best_split_equals_an_exhaustive_search():
    X, y = _data(n=300, f=4)
    binner = Binner(max_bins=10).fit(X)
    binned = binner.transform(X)
    p = np.full(len(y), y.mean())
    g_q, h_q = quantise(p - y), quantise(p * (1 - p))
    g, h = dequantise(g_q), dequantise(h_q)
    params = SplitParams(l2=1.0, min_child_weight=0.5)
    split = best_split(build_histogram(binned, g_q, h_q, np.arange(len(y)), 10), 9, params)
    G, H = g.sum(), h.sum()
    best = -np.inf
    for j in range(4):
        for k in range(8):
            for miss_left in (False, True):
                left = np.where(binned[:, j] == 9, miss_left, binned[:, j] <= k)
                gl, hl = g[left].sum(), h[left].sum()
                gr, hr = G - gl, H - hl
                if hl < 0.5 or hr < 0.5:
                    continue
                gain = (gl ** 2 / (hl + 1) + gr ** 2 / (hr + 1) - G ** 2 / (H + 1)) / 2
                best = max(best, gain)
    assert split is not None and split.gain == pytest.approx(best, rel=1e-9)


def test_subtraction_trick_grows_the_same_tree_as_building_every_histogram():
    X, y = _data()
    binner = Binner(16).fit(X)
    binned = binner.transform(X)
    p = np.full(len(y), y.mean())
    g_q, h_q = quantise(p - y), quantise(p * (1 - p))
    g, h = dequantise(g_q), dequantise(h_q)
    built = []

    def counting(rows):
        built.append(len(rows))
        return build_histogram(binned, g_q, h_q, rows, 16)

    kwargs = dict(missing_bin=15, params=SplitParams(), max_depth=4, learning_rate=0.3)
    tree, out = grow_tree(binned, g, h, np.arange(len(y)), build=counting, **kwargs)
    # the same growth with full histograms for every node, by brute force
    from tandem.learn.splitting import best_split as bs
    nodes = [(0, np.arange(len(y)))]
    for node, rows in nodes:
        if tree.left[node] < 0:
            continue
        split = bs(build_histogram(binned, g_q, h_q, rows, 16), 15, SplitParams())
        assert (split.feature, split.bin_, split.missing_left) == (tree.feature[node], tree.bin_[node],
                                                                   tree.missing_left[node])
        col = binned[rows, split.feature]
        left = np.where(col == 15, split.missing_left, col <= split.bin_)
        nodes += [(tree.left[node], rows[left]), (tree.right[node], rows[~left])]
    assert len(built) == 1 + (len(tree.value) - 1) // 2        # one histogram per split, not two
    assert np.allclose(out, predict_binned(tree, binned, 15))


def test_classifier_learns_and_early_stopping_trims():
    X, y = _data(n=3000, seed=1)
    test = np.arange(len(y)) % 4 == 0
    model = HistBoostingClassifier(n_trees=40, max_depth=3, learning_rate=0.2).fit(X[~test], y[~test])
    proba = model.predict_proba(X[test])
    assert proba.shape == (test.sum(), 2) and np.allclose(proba.sum(axis=1), 1)
    assert roc_auc(y[test], proba[:, 1]) > 0.8 and ks_statistic(y[test], proba[:, 1]) > 0.4
    stopped = HistBoostingClassifier(n_trees=300, learning_rate=0.5, early_stopping_rounds=5).fit(X, y)
    assert len(stopped.trees_) < 300
    assert model.get_params()["n_trees"] == 40


def test_metrics_on_known_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert ks_statistic([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


@pytest.mark.parametrize("y,message", [([0, 1, 2], "binary"), ([1, 1, 1], "only one class")])
def test_bad_labels_are_refused(y, message):
    with pytest.raises(InputError, match=message):
        HistBoostingClassifier(n_trees=1).fit(np.zeros((3, 1)), y)


def test_a_categorical_split_is_the_best_prefix_of_the_bins_in_gradient_ratio_order():
    from tandem.learn.splitting import SplitParams, best_split

    hist = np.zeros((1, 8, 2))                      # bins 0..3 hold categories, bin 7 the missing values
    hist[0, :4] = [[-10, 10], [10, 10], [-10, 10], [10, 10]]
    hist[0, 7] = [-3, 2]
    numeric = best_split(hist, 7, SplitParams(l2=1.0))
    split = best_split(hist, 7, SplitParams(l2=1.0), categorical=np.array([True]))
    assert split.left_bins == (0, 2) and split.bin_ == -1 and split.missing_left  # missing has a low ratio too
    assert (split.left_g, split.left_h) == (-23.0, 22.0)
    assert split.gain > numeric.gain                # no threshold separates {0, 2} from {1, 3}
    hist[0, 2] = [0, 0]                             # an empty bin takes no part
    assert 2 not in best_split(hist, 7, SplitParams(l2=1.0), categorical=np.array([True])).left_bins


def test_categories_get_bins_in_sorted_order_and_rare_or_unseen_ones_share_the_other_bin():
    col = np.array(["b"] * 6 + ["a"] * 5 + ["rare"] * 4 + [None] * 2 + [np.nan], dtype=object)
    X = np.column_stack([np.arange(len(col), dtype=float), col]).astype(object)
    binner = Binner(8, categorical=[1]).fit(X)
    assert binner.categories_ == [None, ["a", "b"]] and binner.n_bins_.tolist() == [7, 3]
    new = np.array([[0.0, "a"], [1.0, "b"], [2.0, "rare"], [3.0, "unseen"], [4.0, None]], dtype=object)
    assert binner.transform(new)[:, 1].tolist() == [0, 1, 2, 2, 7]
    few = Binner(4, categorical=[0]).fit(np.array([[c] for c in "aaaaabbbbbbccccccc"], dtype=object))
    assert few.categories_ == [["b", "c"]]           # only max_bins - 2 categories keep a bin: the most frequent
    with pytest.raises(InputError, match="outside the 1 features"):
        Binner(4, categorical=[3]).fit(np.array([["a"]], dtype=object))

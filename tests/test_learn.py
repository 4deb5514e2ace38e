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

"""Population stability (issue 15, deliverable 6): PSI / CSI against hand-computed values, the floor for
empty bins, the traffic lights at their boundaries, decile score bands and the CSI of a model's own feature."""

import math

import numpy as np
import pytest

from tandem.errors import InputError
from tandem.learn.scorecard.labels import bin_labels, interval_labels
from tandem.learn.scorecard.stability import (EMPTY_SHARE, band_edges, counts_table, feature_stability, psi,
                                              score_bands, score_reference, score_stability, stability_table,
                                              traffic_light)


def test_psi_equals_the_hand_computed_sum():
    # shares 0.5/0.5 -> 0.4/0.6: (0.4-0.5)ln(0.8) + (0.6-0.5)ln(1.2)
    assert psi([50, 50], [40, 60]) == pytest.approx(0.1 * math.log(1.25) + 0.1 * math.log(1.2), abs=1e-15)
    # three bins, counts of different totals: shares (0.2, 0.3, 0.5) -> (0.25, 0.25, 0.5)
    hand = 0.05 * math.log(0.25 / 0.2) + (-0.05) * math.log(0.25 / 0.3) + 0.0
    assert psi([20, 30, 50], [50, 50, 100]) == pytest.approx(hand, abs=1e-15)
    assert psi([3, 7, 11], [3, 7, 11]) == 0.0
    assert psi([1, 2], [3, 4]) == pytest.approx(psi([3, 4], [1, 2]), abs=1e-15)  # symmetric


def test_an_empty_bin_is_floored_at_one_hundredth_of_a_percent():
    assert EMPTY_SHARE == 1e-4
    # expected (1.0, 0 -> 0.0001), actual (0.9, 0.1)
    hand = (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert psi([100, 0], [90, 10]) == pytest.approx(hand, abs=1e-12)
    assert psi([100, 0, 0], [100, 0, 0]) == 0.0                     # empty on both sides adds nothing
    assert math.isfinite(psi([0, 10], [10, 0]))


@pytest.mark.parametrize("value,light", [(0.0, "green"), (0.0999, "green"), (0.1, "amber"), (0.2, "amber"),
                                         (0.25, "amber"), (0.2501, "red"), (3.0, "red")])
def test_traffic_lights_at_their_boundaries(value, light):
    assert traffic_light(value) == light


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf"), "0.1"])
def test_a_bad_index_has_no_light(bad):
    with pytest.raises(InputError):
        traffic_light(bad)


@pytest.mark.parametrize("expected,actual", [([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([1, -1], [1, 1]), ([], [])])
def test_bad_counts_fail_with_one_line(expected, actual):
    with pytest.raises(InputError):
        psi(expected, actual)


def test_score_bands_are_deciles_of_the_development_score():
    dev = np.arange(1000, dtype=float)
    edges = band_edges(dev)
    assert len(edges) == 9
    assert np.array_equal(np.bincount(score_bands(dev, edges)), np.full(10, 100))
    assert score_bands([-5.0, 1e9], edges).tolist() == [0, 9]
    ref = score_reference(dev)
    assert ref["counts"] == [100] * 10
    same = score_stability(ref, dev)
    assert same["psi"] == 0.0 and same["light"] == "green" and len(same["rows"]) == 10
    # every later score below the first edge: one band holds all rows, nine are empty
    moved = score_stability(ref, np.zeros(500))
    hand = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert moved["psi"] == pytest.approx(hand, abs=1e-12) and moved["light"] == "red"


def test_tied_scores_give_fewer_bands():
    dev = np.repeat([500.0, 520.0, 540.0], [600, 300, 100])
    edges = band_edges(dev)
    assert edges.tolist() == [520.0, 540.0]
    assert np.bincount(score_bands(dev, edges)).tolist() == [600, 300, 100]


def test_stability_table_rows_and_total():
    dev = np.repeat([0, 1, 2], [50, 30, 20])
    new = np.repeat([0, 1, 2], [20, 30, 50])
    t = stability_table(dev, new, 3, ["low", "mid", "high"])
    hand = (0.2 - 0.5) * math.log(0.2 / 0.5) + 0 + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert t["psi"] == pytest.approx(hand, abs=1e-12) and t["light"] == "red"
    assert [r["label"] for r in t["rows"]] == ["low", "mid", "high"]
    assert [(r["expected"], r["actual"]) for r in t["rows"]] == [(50, 20), (30, 30), (20, 50)]
    assert t["rows"][1]["psi"] == 0.0 and sum(r["psi"] for r in t["rows"]) == pytest.approx(t["psi"])
    with pytest.raises(InputError):
        stability_table(dev, np.array([3]), 3, ["low", "mid", "high"])
    with pytest.raises(InputError):
        counts_table([1, 2], [1, 2], ["only one"])


def _entry():
    """An own numeric feature of a model part: pre-bins < 10, [10, 20), >= 20, the special code -999 and
    missing; the first two value pre-bins stay apart and the last two merge: final bins < 10, >= 10,
    special -999, missing."""
    prebins = {"name": "income", "layout": ["numeric", 3, 1], "edges": [10.0, 20.0], "groups": [],
               "specials": [[-999.0]], "code_to": {"-999.0": 3}, "cat_to": {}, "missing_to": 4, "other": 4,
               "low": 0.0}
    return {"name": "income", "owner": "bank", "coef": -0.5, "woe": [0.3, -0.2, 0.1, 0.0], "iv": 0.1,
            "events": [5, 30, 2, 0], "counts": [100, 200, 10, 0], "prebins": prebins, "assign": [0, 1, 1, 2, 3],
            "edges": [10.0]}


def test_own_feature_labels_and_its_csi_against_the_model_counts():
    entry = _entry()
    assert bin_labels(entry, own=True) == ["< 10", ">= 10", "special -999", "missing"]
    assert bin_labels(entry, own=False) == ["bin 0", "bin 1", "bin 2", "bin 3"]
    assert interval_labels([1.5, 2000.0]) == ["< 1.5", "[1.5, 2000)", ">= 2000"]
    new = np.r_[np.full(50, 5.0), np.full(30, 15.0), np.full(20, 25.0), np.full(10, np.nan)]
    t = feature_stability(entry, new)
    assert [r["actual"] for r in t["rows"]] == [50, 50, 0, 10]
    assert [r["expected"] for r in t["rows"]] == [100, 200, 10, 0]
    e = [100 / 310, 200 / 310, 10 / 310, 1e-4]
    a = [50 / 110, 50 / 110, 1e-4, 10 / 110]
    hand = sum((ak - ek) * math.log(ak / ek) for ek, ak in zip(e, a))
    assert t["psi"] == pytest.approx(hand, abs=1e-12) and t["light"] == traffic_light(hand) == "red"
    # against development rows given as raw values, the same rows give 0
    assert feature_stability(entry, new, dev_x=new)["psi"] == 0.0


def test_a_passive_feature_has_no_csi_at_the_label_holder():
    entry = {k: v for k, v in _entry().items() if k not in ("prebins", "assign", "edges")}
    with pytest.raises(InputError, match="its owner computes its CSI"):
        feature_stability(entry, np.zeros(3))


def test_a_passive_partys_own_part_needs_its_development_rows():
    # the marketplace's model part keeps its pre-binning and merge but no training counts
    entry = {k: v for k, v in _entry().items() if k in ("name", "prebins", "assign")}
    dev = np.r_[np.full(60, 5.0), np.full(40, 25.0)]
    new = np.r_[np.full(40, 5.0), np.full(60, 25.0)]
    t = feature_stability(entry, new, dev_x=dev)
    assert [r["label"] for r in t["rows"]] == ["< 10", ">= 10", "special -999", "missing"]
    hand = (0.4 - 0.6) * math.log(0.4 / 0.6) + (0.6 - 0.4) * math.log(0.6 / 0.4)
    assert t["psi"] == pytest.approx(hand, abs=1e-12) and t["light"] == "amber"
    with pytest.raises(InputError, match="give the development rows"):
        feature_stability(entry, new)

"""The decision policy and the one-row scorers, without services."""

import numpy as np
import pytest

from tandem.decide import policy as rules
from tandem.decide.scoring import ScoringError, decode_bits, encode_bits
from tandem.errors import InputError

POLICY = rules.load_policy()


def test_installments_follow_the_documented_cutoffs_and_limit():
    p = POLICY["installments"]
    low = rules.installments(0.02, 10_000, income=80_000, debt_service=5_000, contributions={}, policy=POLICY,
                             passive=[])
    expected = 80_000 * p["income_months"] * (1 - 0.02 / p["pd_decline"]) - p["debt_months"] * 5_000
    assert low.decision == "approve" and low.limit == pytest.approx(expected)
    assert [t["months"] for t in low.terms] == [3, 6, 12] and low.terms[0]["total_cost"] == 10_000
    assert low.terms[2]["monthly_payment"] == pytest.approx(rules.annuity(10_000, 12, p["terms"]["12"]), abs=0.01)
    assert rules.installments(0.12, 10_000, 80_000, 0, {}, POLICY, []).decision == "refer"
    assert rules.installments(p["pd_decline"], 10_000, 80_000, 0, {}, POLICY, []).decision == "decline"
    assert rules.installments(0.02, low.limit * 1.2, 80_000, 5_000, {}, POLICY, []).decision == "refer"
    assert rules.installments(0.02, low.limit * 2, 80_000, 5_000, {}, POLICY, []).decision == "decline"
    assert rules.installments(0.02, 10_000, None, None, {}, POLICY, []).decision == "decline"   # no known income


def test_reason_codes_rank_what_raised_the_pd_and_group_the_marketplace():
    out = rules.reasons({"income_median": -0.3, "debt_to_income": 0.2, "market": 0.5, "prior_max_dpd": 0.1},
                        passive=["market"], top=2)
    assert [r["code"] for r in out] == ["R-MARKET", "R-DEBT_TO_INCOME"]
    assert out[0]["description"] == "marketplace behaviour" and out[0]["party"] == "market"


def test_policy_overrides_are_checked(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[installments]\npd_approve = 0.05\n")
    assert rules.load_policy(f)["installments"]["pd_approve"] == 0.05
    f.write_text("[installments]\npd_aprove = 0.05\n")
    with pytest.raises(InputError, match="unknown policy key \\[installments\\] pd_aprove"):
        rules.load_policy(f)


def test_bits_travel_exactly_and_malformed_bits_are_refused():
    bits = np.random.default_rng(0).random(37) < 0.5
    assert np.array_equal(decode_bits(encode_bits(bits), 37), bits)
    with pytest.raises(ScoringError, match="must hold 48 bits"):
        decode_bits(encode_bits(bits), 48)
    with pytest.raises(ScoringError, match="must hold 33 bits"):
        decode_bits(encode_bits(bits), 33)                     # a set bit beyond the 33rd
    with pytest.raises(ScoringError, match="not base64"):
        decode_bits("!!", 37)


def test_each_api_key_is_held_to_its_rate_limit():
    from tandem.decide.state import ApiClients, key_hash

    clients = ApiClients({key_hash("a"), key_hash("b")}, rate_limit=10)
    assert clients.admit("") == "unknown" and clients.admit("c") == "unknown"
    assert [clients.admit("a", now=100.0) for _ in range(10)] == [None] * 10       # a second's worth at once
    wait = clients.admit("a", now=100.0)
    assert wait == pytest.approx(0.1)                                               # then one every 1 / rate
    assert clients.admit("b", now=100.0) is None                                    # keys are held apart
    assert clients.admit("a", now=100.15) is None and clients.admit("a", now=100.15) is not None
    assert [clients.admit("a", now=200.0) for _ in range(11)].count(None) == 10    # refilled, never above burst
    assert ApiClients({key_hash("a")}).admit("a") is None                          # 0: no limit

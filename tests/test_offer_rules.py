"""Offer: the catalog's checks and the decision's gates, without services (fast)."""

import numpy as np
import pytest
from helpers import run_cli

from tandem.decide.policy import load_policy
from tandem.errors import InputError
from tandem.offers.catalog import DEFAULT, load_catalog
from tandem.offers.decision import REASONS, Clients, decide

POLICY = load_policy()


def _clients(n: int, **over) -> Clients:
    base = dict(pd=np.full(n, 0.02), age=np.full(n, 35.0), income=np.full(n, 80_000.0), debt_service=np.zeros(n),
                marketing_consent=np.ones(n, dtype=bool), do_not_disturb=np.zeros(n, dtype=bool),
                contacts_in_period=np.zeros(n, dtype=np.int64), days_since_contact=np.full((n, 5), np.nan))
    return Clients(**{**base, **over})


def test_each_gate_withholds_with_its_reason_and_credit_never_passes_the_pd_cutoff():
    catalog = load_catalog()
    products = catalog.customer_products
    keys = [p.key for p in products]
    cut = POLICY["installments"]["pd_approve"]
    n = 8
    days = np.full((n, 5), np.nan)
    days[6, keys.index("deposit")] = 30                       # contacted about the deposit a month ago
    clients = _clients(n, pd=np.array([0.02, cut, 0.02, 0.02, 0.02, 0.02, 0.02, cut - 1e-9]),
                       marketing_consent=np.array([1, 1, 0, 1, 1, 1, 1, 1], dtype=bool),
                       do_not_disturb=np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=bool),
                       contacts_in_period=np.array([0, 0, 0, 0, 2, 1, 0, 0]),
                       income=np.array([80e3, 80e3, 80e3, 80e3, 80e3, 80e3, 80e3, 16e3]),
                       debt_service=np.array([0, 0, 0, 0, 0, 0, 0, 20e3]),
                       age=np.array([35, 35, 35, 35, 35, 19, 35, 35.0]), days_since_contact=days)
    propensity = np.tile([0.30, 0.20, 0.10, 0.05, 0.01], (n, 1))
    d = decide(propensity, clients, catalog, products, POLICY)
    reason = lambda i, key: REASONS[d.reason[i, keys.index(key)]]  # noqa: E731
    assert d.offered(0) == [keys.index("installment_plan"), keys.index("cashback_card")]   # 750 > 500 RUB
    assert d.limit[0, 0] > 0 and np.isnan(d.limit[0, keys.index("deposit")])
    assert reason(1, "installment_plan") == reason(1, "cashback_card") == "pd_above_cutoff"  # PD at the cutoff
    assert d.offered(1) == [keys.index("deposit"), keys.index("cross_border_insurance")]
    assert {reason(2, k) for k in keys} == {"no_marketing_consent"}
    assert {reason(3, k) for k in keys} == {"do_not_disturb"}
    assert {reason(4, k) for k in keys} == {"contact_limit"}                        # two contacts this period
    assert len(d.offered(5)) == 1                                                    # one slot left
    assert reason(5, "cashback_card") == "not_eligible"                             # 19 years old, minimum 21
    assert reason(6, "deposit") == "cooldown" and reason(6, "cross_border_insurance") == "ranked_below"
    assert reason(6, "marketplace_promo") == "below_contact_cost"                  # 1% x 1,000 RUB < 20 RUB
    assert reason(7, "installment_plan") == "limit_below_minimum"   # PD just under the cutoff, no room for debt
    assert reason(7, "cashback_card") == "not_eligible"             # income under the card's minimum
    offered_credit = (d.rank > 0) & np.array([p.credit for p in products])[None, :]
    assert (clients.pd[offered_credit.any(axis=1)] < cut).all()


def test_offers_below_the_contact_cost_are_not_made_and_ranks_follow_expected_value():
    catalog = load_catalog()
    products = catalog.customer_products
    rng = np.random.default_rng(3)
    propensity = rng.random((200, 5)) * 0.2
    propensity[:20] = 0.001                                    # worth less than a contact for every product
    d = decide(propensity, _clients(200), catalog, products, POLICY)
    assert (d.rank[:20] == 0).all() and (d.reason[:20] == REASONS.index("below_contact_cost")).all()
    for i in range(20, 200):
        chosen = d.offered(i)
        assert 1 <= len(chosen) <= catalog.max_offers
        values = d.expected_value[i, chosen]
        assert (np.diff(values) <= 0).all()                   # best first
        rest = [j for j in range(5) if j not in chosen and d.reason[i, j] == REASONS.index("ranked_below")]
        assert all(d.expected_value[i, j] <= values.min() for j in rest)
    without_history = decide(propensity, _clients(200, contacts_in_period=np.full(200, 5)), catalog, products,
                             POLICY, history=False)
    assert (without_history.rank[20:] == 1).any(axis=1).all()   # the replay ignores past contacts


@pytest.mark.parametrize("edit, message", [
    (("value_rub = 2500.0", 'value_rub = "a lot"'), "[products.installment_plan] value_rub must be a number, got 'a lot'"),
    (("cooldown_days = 90", "cooldown_days = 90\ncolour = \"red\""),
     "unknown key 'colour' in [products.marketplace_promo]"),
    (("credit = true\nsolvency = \"installments\"\nvalue_rub = 2500.0",
      "credit = true\nvalue_rub = 2500.0"), "[products.installment_plan] a credit product needs solvency"),
    (("personalise = \"top_categories\"", "personalise = \"everything\""),
     "[products.cashback_card] personalise must be one of none, top_categories, got 'everything'"),
    (("max_offers = 2", "max_offers = 2.5"), "[contacts] max_offers must be a whole number, got 2.5"),
    (("[products.deposit]", "[products.Deposit]"), "[products.Deposit] a product key is lower-case"),
    (("[contacts]", "[contact]"), "unknown section [contact]"),
    (("credit = false\nvalue_rub = 1500.0\nmin_age = 18\ncooldown_days = 180\npersonalise = \"none\"\n\n"
      "[products.cross", "credit = \"no\"\nvalue_rub = 1500.0\nmin_age = 18\ncooldown_days = 180\n"
      "personalise = \"none\"\n\n[products.cross"), "[products.deposit] credit must be true or false, got 'no'"),
])
def test_a_bad_catalog_is_one_error_naming_the_file_and_key(tmp_path, edit, message):
    text = DEFAULT.read_text()
    assert edit[0] in text, edit[0]
    path = tmp_path / "catalog.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(InputError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)


def test_the_cli_turns_a_bad_catalog_into_one_error_line(tmp_path):
    bad = tmp_path / "catalog.toml"
    bad.write_text(DEFAULT.read_text().replace("value_rub = 1000.0", "value_rub = -1.0"))
    proc = run_cli("propensity", "--world", str(tmp_path), "--catalog", str(bad))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0].replace("\n", "")
    assert "[products.marketplace_promo] value_rub must be positive" in proc.stderr

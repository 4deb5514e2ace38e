"""The next-best-offer decision: rank products by propensity x value, gated by solvency, consent,
do-not-disturb, eligibility and contact limits. Pure arrays in, arrays out: the batch (``tandem
offers``), the online endpoint and the evaluation all decide with this one function.

For ``n`` clients and ``k`` products, every (client, product) gets a reason: ``offered`` with a
rank 1..slots, or the first gate that withheld it, checked in the order of ``REASONS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.decide import policy as rules
from tandem.offers.catalog import Catalog, Product

REASONS = (
    "offered",
    "no_marketing_consent",
    "do_not_disturb",
    "contact_limit",
    "not_eligible",
    "pd_above_cutoff",
    "limit_below_minimum",
    "cooldown",
    "below_contact_cost",
    "ranked_below",
)
OFFERED = 0


@dataclass(frozen=True)
class Clients:
    """What the bank knows of ``n`` clients at decision time (all arrays have ``n`` rows)."""

    pd: np.ndarray  # (n,) probability of default, the decision policy's default model
    age: np.ndarray  # (n,) years; NaN unknown
    income: np.ndarray  # (n,) median monthly salary credit, RUB; NaN unknown
    debt_service: np.ndarray  # (n,) monthly payments of open loans, RUB; NaN unknown
    marketing_consent: np.ndarray  # (n,) bool
    do_not_disturb: np.ndarray  # (n,) bool: asked for no contacts until after the decision date
    contacts_in_period: np.ndarray  # (n,) int: the bank's contacts in the catalog's period before today
    days_since_contact: np.ndarray  # (n, k) days since the last contact about each product; NaN never


@dataclass(frozen=True)
class Decisions:
    """``reason`` (n, k) index into ``REASONS``; ``rank`` (n, k) 1.. for offered, else 0;
    ``expected_value`` (n, k) RUB; ``limit`` (n, k) pre-approved limit of credit products, NaN otherwise;
    ``gated`` (n, k) withheld by a rule (consent, do-not-disturb, contacts, eligibility, solvency),
    whatever the propensity."""

    reason: np.ndarray
    rank: np.ndarray
    expected_value: np.ndarray
    limit: np.ndarray
    gated: np.ndarray

    def offered(self, i: int) -> list[int]:
        """Product positions offered to client ``i``, best first."""
        mine = np.flatnonzero(self.rank[i] > 0)
        return mine[np.argsort(self.rank[i, mine])].tolist()


def credit_limits(
    clients: Clients, products: tuple[Product, ...], policy: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pd_ok, limit_ok, limit)`` (n, k) of each credit product now: the PD is under the approve
    cutoff (``pd_approve``) of the product's policy section, and the limit the online installment
    policy gives (from income, PD and debt service, as `tandem score` pre-approves) reaches its
    ``min_limit`` — together exactly when that policy would approve an order. Seller credit is
    decided on the seller path, never here."""
    n, k = len(clients.pd), len(products)
    pd_ok, limit_ok, limit = np.ones((n, k), dtype=bool), np.ones((n, k), dtype=bool), np.full((n, k), np.nan)
    retail = [j for j, p in enumerate(products) if p.credit and p.solvency == "installments"]
    for j, p in enumerate(products):
        if p.credit and p.solvency != "installments":
            pd_ok[:, j] = False
    if retail:
        section = policy["installments"]
        known = lambda v: None if np.isnan(v) else float(v)  # noqa: E731
        for i in range(n):
            pd = float(clients.pd[i])
            outcome = rules.installments(
                pd, 1.0, known(clients.income[i]), known(clients.debt_service[i]), {}, policy, []
            )
            pd_ok[i, retail] = rules.pd_band(pd, section) == "approve"
            limit_ok[i, retail] = outcome.decision == "approve"
            limit[i, retail] = outcome.limit
    return pd_ok, limit_ok, limit


def eligible(clients: Clients, products: tuple[Product, ...]) -> np.ndarray:
    """(n, k) the catalog's age and income rules (an unknown age or income fails a rule that needs it)."""
    out = np.ones((len(clients.pd), len(products)), dtype=bool)
    with np.errstate(invalid="ignore"):
        for j, p in enumerate(products):
            if p.min_age is not None:
                out[:, j] &= clients.age >= p.min_age
            if p.max_age is not None:
                out[:, j] &= clients.age <= p.max_age
            if p.min_income_rub is not None:
                out[:, j] &= clients.income >= p.min_income_rub
    return out


def decide(
    propensity: np.ndarray,
    clients: Clients,
    catalog: Catalog,
    products: tuple[Product, ...],
    policy: dict,
    history: bool = True,
) -> Decisions:
    """Rank ``products`` for each client; ``propensity`` (n, k) in [0, 1].

    ``history=False`` leaves out the gates that look at past contacts (contact limit and cooldown):
    the evaluation replays a past wave, whose own contacts must not block its products.
    """
    n, k = propensity.shape
    value = np.array([p.value_rub for p in products])
    ev = propensity * value[None, :]
    pd_ok, limit_ok, limit = credit_limits(clients, products, policy)
    slots = (
        np.maximum(0, catalog.max_offers - clients.contacts_in_period)
        if history
        else np.full(n, max(1, catalog.max_offers))
    )
    cooldown = np.array([p.cooldown_days for p in products], dtype=float)
    with np.errstate(invalid="ignore"):
        cooling = (clients.days_since_contact < cooldown[None, :]) if history else np.zeros((n, k), dtype=bool)
    gates = [  # (reason, withheld (n, k)) in REASONS order
        ("no_marketing_consent", np.repeat(~clients.marketing_consent[:, None], k, axis=1)),
        ("do_not_disturb", np.repeat(clients.do_not_disturb[:, None], k, axis=1)),
        ("contact_limit", np.repeat((slots == 0)[:, None], k, axis=1)),
        ("not_eligible", ~eligible(clients, products)),
        ("pd_above_cutoff", ~pd_ok),
        ("limit_below_minimum", ~limit_ok),
        ("cooldown", cooling),
        ("below_contact_cost", ev < catalog.min_expected_value_rub),
    ]
    reason = np.full((n, k), -1, dtype=np.int64)
    for name, withheld in gates:
        reason[(reason < 0) & withheld] = REASONS.index(name)
    gated = (reason >= 0) & (reason != REASONS.index("below_contact_cost"))
    candidate = reason < 0
    order = np.argsort(-np.where(candidate, ev, -np.inf), axis=1, kind="stable")
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(k)[None, :].repeat(n, axis=0), axis=1)
    chosen = candidate & (position < slots[:, None])
    reason[candidate & ~chosen] = REASONS.index("ranked_below")
    reason[chosen] = OFFERED
    rank = np.where(chosen, position + 1, 0)
    return Decisions(reason, rank, ev, np.where(pd_ok & limit_ok, limit, np.nan), gated)

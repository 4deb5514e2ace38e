"""The documented decision policy: PD cutoffs, limits, terms and prices, reason codes.

Installments at checkout: decline at PD >= ``pd_decline``; otherwise a limit from income,
PD and existing monthly debt service; approve when PD < ``pd_approve`` and the order fits
the limit, refer to a person in between (or for an order up to ``refer_over_limit`` x the
limit), decline above. Seller credit lines: the same shape, the limit from the forecast
monthly GMV and existing business debt. Defaults: ``policy.toml`` beside this file.

What the marketplace may hear is coarse (docs/privacy.md, "Online decisions"): the limit is
decided and answered on a grid (``limit_step``, rounded down), the PD as a named band
(``[pd_bands]``), the reasons by name. ``Outcome.limit`` and the PD stay in the bank's ledger.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tandem.errors import InputError

DEFAULTS = Path(__file__).with_name("policy.toml")
PARTY_FACTORS = {"market": "marketplace behaviour"}


@dataclass(frozen=True)
class Outcome:
    decision: str  # approve | decline | refer
    limit: float  # the exact limit, RUB (the bank's ledger only)
    terms: list[dict]  # months, monthly_payment, total_cost, annual_rate
    reasons: list[dict]  # code, description, party (no numeric impact)
    offered: float = 0.0  # the limit on the policy's grid, RUB: what the decision used and may disclose
    zone: str = "decline"  # the PD's policy zone (``pd_band``): approve | refer | decline


def load_policy(path: str | Path | None = None) -> dict:
    """The defaults, overridden key by key by ``path``; unknown keys are refused."""
    policy = tomllib.loads(DEFAULTS.read_text())
    if path is None:
        return policy
    try:
        override = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read the decision policy ({exc})") from None
    for section, values in override.items():
        if section not in policy or not isinstance(values, dict):
            raise InputError(f"{path}: unknown policy section [{section}]")
        for key, value in values.items():
            if key not in policy[section]:
                raise InputError(f"{path}: unknown policy key [{section}] {key}")
            policy[section][key] = value
    _check(policy, path)
    return policy


def _check(policy: dict, path) -> None:
    edges = list(policy["pd_bands"].values())
    if not edges or any(not isinstance(e, (int, float)) for e in edges) or edges != sorted(edges):
        raise InputError(f"{path}: [pd_bands] must map band names to increasing PD upper edges")
    for section in ("installments", "sellers"):
        step = policy[section]["limit_step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise InputError(f"{path}: [{section}] limit_step must be an amount > 0")


def pd_grade(pd: float, policy: dict) -> str:
    """The named band of a PD (``[pd_bands]``: the first whose upper edge is above it, else the last):
    what the marketplace hears instead of the PD."""
    name = ""
    for name, edge in policy["pd_bands"].items():
        if pd < edge:
            return name
    return name


def on_grid(limit: float, p: dict) -> float:
    """A limit rounded down to the section's grid ``min_limit + k x limit_step`` (k = 0, 1, ...): every
    cell is ``limit_step`` wide, and ``limit >= min_limit`` holds on the grid exactly when it holds
    exactly; 0 below ``min_limit`` (declined anyway)."""
    if limit < p["min_limit"]:
        return 0.0
    return float(p["min_limit"] + math.floor((limit - p["min_limit"]) / p["limit_step"]) * p["limit_step"])


def annuity(amount: float, months: int, annual_rate: float) -> float:
    r = annual_rate / 12
    return amount / months if r == 0 else amount * r / (1 - (1 + r) ** -months)


def pd_band(pd: float, p: dict) -> str:
    """The band of a PD alone under a policy section: approve, refer or decline."""
    return "decline" if pd >= p["pd_decline"] else "approve" if pd < p["pd_approve"] else "refer"


def _band(zone: str, amount: float, offered: float, p: dict) -> str:
    """The decision from the PD's zone and the grid limit alone (what a window answer recomputes from)."""
    if zone == "decline" or offered < p["min_limit"]:
        return "decline"
    if zone == "approve" and amount <= offered:
        return "approve"
    return "refer" if amount <= offered * p.get("refer_over_limit", 1.0) or zone == "refer" else "decline"


def installments(
    pd: float,
    amount: float,
    income: float | None,
    debt_service: float | None,
    contributions: dict[str, float],
    policy: dict,
    passive: list[str],
) -> Outcome:
    """``income`` and ``debt_service`` in RUB per month (unknown: None)."""
    p = policy["installments"]
    capacity = max(income or 0.0, 0.0) * p["income_months"] * max(0.0, 1 - pd / p["pd_decline"])
    limit = min(p["max_limit"], max(0.0, capacity - p["debt_months"] * max(debt_service or 0.0, 0.0)))
    return installments_again(
        Outcome("", round(limit, 2), [], reasons(contributions, passive), on_grid(limit, p), pd_band(pd, p)),
        amount,
        policy,
    )


def installments_again(recorded: Outcome, amount: float, policy: dict) -> Outcome:
    """The decision for ``amount`` from a recorded evaluation's zone and grid limit only (no PD, no
    exact limit): a new order for a link id inside the window."""
    p = policy["installments"]
    decision = _band(recorded.zone, amount, recorded.offered, p)
    terms = (
        []
        if decision == "decline"
        else [
            {
                "months": int(m),
                "annual_rate": float(rate),
                "monthly_payment": round(annuity(amount, int(m), rate), 2),
                "total_cost": round(annuity(amount, int(m), rate) * int(m), 2),
            }
            for m, rate in sorted(p["terms"].items(), key=lambda t: int(t[0]))
        ]
    )
    return Outcome(decision, recorded.limit, terms, recorded.reasons, recorded.offered, recorded.zone)


def seller_credit_line(
    pd: float,
    forecast_gmv: float,
    business_debt: float | None,
    requested: float | None,
    contributions: dict[str, float],
    policy: dict,
    passive: list[str],
) -> Outcome:
    """``forecast_gmv`` in RUB per month (the marketplace's forecast, shared with the seller's request)."""
    p = policy["sellers"]
    capacity = max(forecast_gmv, 0.0) * p["gmv_months"] * max(0.0, 1 - pd / p["pd_decline"])
    limit = min(p["max_limit"], max(0.0, capacity - max(business_debt or 0.0, 0.0) / 4))
    return seller_credit_line_again(
        Outcome("", round(limit, 2), [], reasons(contributions, passive), on_grid(limit, p), pd_band(pd, p)),
        requested,
        policy,
    )


def seller_credit_line_again(recorded: Outcome, requested: float | None, policy: dict) -> Outcome:
    """The decision for ``requested`` (None: the grid limit) from a recorded evaluation's zone and grid
    limit only. Terms price what is approved; a referral prices the requested amount only (pricing
    the limit would disclose it)."""
    p = policy["sellers"]
    amount = recorded.offered if requested is None else requested
    decision = _band(recorded.zone, amount, recorded.offered, p)
    priced = min(amount, recorded.offered) if decision == "approve" else requested
    terms = (
        []
        if decision == "decline" or priced is None
        else [
            {
                "months": p["term_months"],
                "annual_rate": p["annual_rate"],
                "monthly_payment": round(annuity(priced, p["term_months"], p["annual_rate"]), 2),
                "total_cost": round(annuity(priced, p["term_months"], p["annual_rate"]) * p["term_months"], 2),
            }
        ]
    )
    return Outcome(decision, recorded.limit, terms, recorded.reasons, recorded.offered, recorded.zone)


def reasons(contributions: dict[str, float], passive: list[str], top: int = 3) -> list[dict]:
    """The factors that raised the PD most (largest positive contributions), as reason codes, by name
    only: a numeric impact would be one more equation in the bank's features.

    ``contributions`` maps the label holder's features and each passive party's name (all
    of its splits: it shares no feature names) to their share of the raw score.
    """
    ranked = sorted(((k, v) for k, v in contributions.items() if v > 0), key=lambda kv: -kv[1])[:top]
    return [
        {
            "code": f"R-{k.upper()}",
            "party": k if k in passive else "bank",
            "description": PARTY_FACTORS.get(k, f"{k} behaviour") if k in passive else k.replace("_", " "),
        }
        for k, v in ranked
    ]

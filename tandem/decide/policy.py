"""The documented decision policy: PD cutoffs, limits, terms and prices, reason codes.

Installments at checkout: decline at PD >= ``pd_decline``; otherwise a limit from income,
PD and existing monthly debt service; approve when PD < ``pd_approve`` and the order fits
the limit, refer to a person in between (or for an order up to ``refer_over_limit`` x the
limit), decline above. Seller credit lines: the same shape, the limit from the forecast
monthly GMV and existing business debt. Defaults: ``policy.toml`` beside this file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from tandem.errors import InputError

DEFAULTS = Path(__file__).with_name("policy.toml")
PARTY_FACTORS = {"market": "marketplace behaviour"}


@dataclass(frozen=True)
class Outcome:
    decision: str  # approve | decline | refer
    limit: float
    terms: list[dict]  # months, monthly_payment, total_cost, annual_rate
    reasons: list[dict]  # code, description, party, impact (raw-score contribution)


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
    return policy


def annuity(amount: float, months: int, annual_rate: float) -> float:
    r = annual_rate / 12
    return amount / months if r == 0 else amount * r / (1 - (1 + r) ** -months)


def pd_band(pd: float, p: dict) -> str:
    """The band of a PD alone under a policy section: approve, refer or decline."""
    return "decline" if pd >= p["pd_decline"] else "approve" if pd < p["pd_approve"] else "refer"


def _band(pd: float, amount: float, limit: float, p: dict) -> str:
    if pd_band(pd, p) == "decline" or limit < p["min_limit"]:
        return "decline"
    if pd < p["pd_approve"] and amount <= limit:
        return "approve"
    return "refer" if amount <= limit * p.get("refer_over_limit", 1.0) or pd >= p["pd_approve"] else "decline"


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
    decision = _band(pd, amount, limit, p)
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
    return Outcome(decision, round(limit, 2), terms, reasons(contributions, passive))


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
    amount = limit if requested is None else requested
    decision = _band(pd, amount, limit, p)
    terms = (
        []
        if decision == "decline"
        else [
            {
                "months": p["term_months"],
                "annual_rate": p["annual_rate"],
                "monthly_payment": round(annuity(min(amount, limit), p["term_months"], p["annual_rate"]), 2),
                "total_cost": round(
                    annuity(min(amount, limit), p["term_months"], p["annual_rate"]) * p["term_months"], 2
                ),
            }
        ]
    )
    return Outcome(decision, round(limit, 2), terms, reasons(contributions, passive))


def reasons(contributions: dict[str, float], passive: list[str], top: int = 3) -> list[dict]:
    """The factors that raised the PD most (largest positive contributions), as reason codes.

    ``contributions`` maps the label holder's features and each passive party's name (all
    of its splits: it shares no feature names) to their share of the raw score.
    """
    ranked = sorted(((k, v) for k, v in contributions.items() if v > 0), key=lambda kv: -kv[1])[:top]
    return [
        {
            "code": f"R-{k.upper()}",
            "party": k if k in passive else "bank",
            "description": PARTY_FACTORS.get(k, f"{k} behaviour") if k in passive else k.replace("_", " "),
            "impact": round(v, 6),
        }
        for k, v in ranked
    ]

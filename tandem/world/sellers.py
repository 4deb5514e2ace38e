"""Sellers on the marketplace and, for those that bank with the bank, their business accounts and loans."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tandem.ids.inn import complete_inn
from tandem.world.catalog import CATEGORY_BASE, CATEGORY_NAMES, CATEGORY_PRICE, CATEGORY_RETURN
from tandem.world.persons import mix_ids
from tandem.world.risk import business_logit, sigmoid
from tandem.world.timeline import add_months, dates_to_arrow

_WORDS = np.array(
    [
        "Alfa",
        "Vektor",
        "Sever",
        "Orion",
        "Titan",
        "Luch",
        "Zvezda",
        "Kvant",
        "Start",
        "Prima",
        "Ural",
        "Volga",
        "Baikal",
        "Neva",
        "Kedr",
        "Sokol",
    ]
)


def draw_seller_traits(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """quality (N(0,1)), size (median monthly GMV, RUB), trend (monthly log-growth), leverage (debt / GMV)."""
    quality = rng.standard_normal(n)
    return {
        "quality": quality,
        "size": np.exp(np.log(150_000) + 1.5 * rng.standard_normal(n)),
        "trend": 0.05 * rng.standard_normal(n) + 0.015 * quality,
        "leverage": rng.gamma(1.5, 1.0, n) * np.exp(-0.3 * quality),
    }


def generate_sellers(rng: np.random.Generator, n: int, cfg: dict, business_intercept: float) -> dict:
    """All sellers (a small table even for large worlds, so it is not chunked).

    Returns ``{"market": {table: pa.Table}, "bank": {...}, "truth": pa.Table, "category": ndarray}``.
    """
    snapshot = cfg["time"]["snapshot_date"]
    sc = cfg["sellers"]
    pop = cfg["population"]
    t = draw_seller_traits(rng, n)
    idx = np.arange(n, dtype=np.int64)
    seller_id = mix_ids(idx, 1_103_515_245, 12_345)
    weights = np.exp(CATEGORY_BASE)
    category = rng.choice(len(CATEGORY_NAMES), n, p=weights / weights.sum())
    category[: len(CATEGORY_NAMES)] = np.arange(min(n, len(CATEGORY_NAMES)))  # every category has a seller
    company = rng.random(n) < 0.7
    inn = np.empty(n, dtype=object)
    region_digits = rng.integers(10, 99, n)
    for is_company, width in ((True, 9), (False, 10)):
        mask = company == is_company
        body = rng.integers(0, 10, (mask.sum(), width))
        body[:, 0], body[:, 1] = region_digits[mask] // 10, region_digits[mask] % 10
        body[:, 2:4] = (idx[mask, None] // np.array([10, 1])) % 10  # keeps INNs distinct in practice
        inn[mask] = complete_inn(body) if mask.any() else []
    names = np.where(company, np.char.add("OOO ", rng.choice(_WORDS, n)), np.char.add("IP ", rng.choice(_WORDS, n)))
    names = np.char.add(np.char.add(names.astype(str), " "), (idx % 1000).astype(str))
    rating = np.round(np.clip(4.3 + 0.35 * t["quality"] + 0.15 * rng.standard_normal(n), 1, 5), 2)
    registered = np.array([snapshot], dtype="datetime64[D]") - rng.integers(60, 2500, n)
    consent_market = rng.random(n) < pop["seller_consent_market"]

    market_inn = inn.copy()
    spaced = rng.random(n) < 0.05
    market_inn[spaced] = [f"{s[:2]} {s[2:4]} {s[4:]}" for s in inn[spaced]]
    typo = rng.random(n) < 0.02
    market_inn[typo] = [s[:-1] + str((int(s[-1]) + 1) % 10) for s in inn[typo]]

    months = 12
    m = np.arange(months)
    gmv = (
        t["size"][:, None]
        * np.exp(t["trend"][:, None] * (m - months + 1))
        * np.exp(0.15 * rng.standard_normal((n, months)))
    )
    orders = np.maximum(1, np.round(gmv / CATEGORY_PRICE[category][:, None])).astype(np.int32)
    ret_p = np.clip(CATEGORY_RETURN[category] * np.exp(-0.35 * t["quality"]), 0, 0.9)[:, None]
    late_p = np.clip(0.05 * np.exp(-0.8 * t["quality"]), 0, 0.9)[:, None]
    returns = rng.binomial(orders, np.broadcast_to(ret_p, orders.shape)).astype(np.int32)
    late = rng.binomial(orders, np.broadcast_to(late_p, orders.shape)).astype(np.int32)
    month_starts = [add_months(snapshot, k - months) for k in range(months)]

    at_bank = rng.random(n) < pop["seller_bank_share"]
    b = np.flatnonzero(at_bank)
    business_id = mix_ids(idx[b], 2_246_822_519, 374_761_393)
    consent_bank = rng.random(len(b)) < pop["seller_consent_bank"]
    share = rng.uniform(0.6, 1.0, len(b))[:, None]
    credit = np.round(gmv[b] * share * np.exp(0.08 * rng.standard_normal((len(b), months))), 2)
    debit = np.round(credit * rng.uniform(0.85, 1.0, (len(b), months)), 2)
    debt = np.round(t["size"][b] * t["leverage"][b], -2)
    has_loan = rng.random(len(b)) < sc["business_loan_share"]
    lb = np.flatnonzero(has_loan)
    p_default = sigmoid(
        business_intercept + business_logit(rng, t["quality"][b][lb], t["trend"][b][lb], t["leverage"][b][lb])
    )
    loan_default = rng.random(len(lb)) < p_default

    market = {
        "sellers": pa.table(
            {
                "seller_id": seller_id,
                "inn": pa.array(market_inn, pa.string()),
                "name": names,
                "category": CATEGORY_NAMES[category],
                "rating": rating,
                "registered_on": dates_to_arrow(registered),
                "consent_partner": consent_market,
            }
        ),
        "seller_monthly": pa.table(
            {
                "seller_id": np.repeat(seller_id, months),
                "month": pa.array(np.tile(np.array(month_starts, dtype="datetime64[D]"), n)),
                "gmv": np.round(gmv.ravel(), 2),
                "orders": orders.ravel(),
                "returns": returns.ravel(),
                "late_shipments": late.ravel(),
            }
        ),
    }
    bank = {
        "business_clients": pa.table(
            {
                "business_id": business_id,
                "inn": pa.array(inn[b], pa.string()),
                "name": names[b],
                "region": rng.choice(np.array(cfg["regions"]["names"]), len(b)),
                "opened_on": dates_to_arrow(registered[b] - rng.integers(0, 400, len(b))),
                "consent_partner": consent_bank,
            }
        ),
        "business_turnover": pa.table(
            {
                "business_id": np.repeat(business_id, months),
                "month": pa.array(np.tile(np.array(month_starts, dtype="datetime64[D]"), len(b))),
                "credit_turnover": credit.ravel(),
                "debit_turnover": debit.ravel(),
                "debt": np.repeat(debt, months),
            }
        ),
        "business_loans": pa.table(
            {
                "loan_id": mix_ids(idx[b][lb], 3_266_489_917, 668_265_263),
                "business_id": business_id[lb],
                "issued_on": dates_to_arrow(np.array([snapshot], dtype="datetime64[D]") + rng.integers(0, 60, len(lb))),
                "amount": np.round(t["size"][b][lb] * rng.uniform(1, 4, len(lb)), -3),
                "term_months": rng.choice(np.array([12, 24], dtype=np.int32), len(lb)),
                "default_90_12m": loan_default,
            }
        ),
    }
    bank_of = np.full(n, -1, dtype=np.int64)
    bank_of[b] = business_id
    consent_b = np.zeros(n, dtype=bool)
    consent_b[b] = consent_bank
    from tandem.ids import normalise_inns

    market_norm, _ = normalise_inns(market_inn)
    truth = pa.table(
        {
            "seller_id": seller_id,
            "business_id": pa.array(np.where(at_bank, bank_of, 0), mask=~at_bank),
            "inn": pa.array(inn, pa.string()),
            "both_consented": at_bank & consent_b & consent_market,
            "matchable": at_bank & consent_b & consent_market & (market_norm == inn),
            "quality": t["quality"],
            "size": t["size"],
            "trend": t["trend"],
            "leverage": t["leverage"],
        }
    )
    return {"market": market, "bank": bank, "truth": truth, "category": category, "seller_id": seller_id}

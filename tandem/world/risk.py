"""How latent traits turn into credit outcomes. The intercepts are calibrated once
per config by Monte Carlo, so the default rate does not depend on the world size."""

from __future__ import annotations

import numpy as np
import pandas as pd

PRODUCTS = np.array(["consumer", "card", "installment", "mortgage"])
_PRODUCT_RISK = np.array([0.0, 0.25, 0.1, -0.9])
CALIBRATION_DRAWS = 200_000


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def application_terms(
    rng: np.random.Generator, traits: pd.DataFrame, cfg: dict, mortgage_share: float | None = None
) -> dict[str, np.ndarray]:
    """Product, amount (RUB), term (months), annual rate and monthly payment of a new loan per person."""
    n = len(traits)
    income = traits["income"].to_numpy()
    m = cfg["loans"]["mortgage_share"] if mortgage_share is None else mortgage_share
    product = rng.choice(4, n, p=[0.48 - m / 2, 0.27 - m / 4, 0.25 - m / 4, m])
    amount = np.select(
        [product == 0, product == 1, product == 2],
        [income * rng.uniform(2, 10, n), income * rng.uniform(0.5, 3, n), rng.uniform(8_000, 150_000, n)],
        income * rng.uniform(40, 120, n),
    )
    term = np.select(
        [product == 0, product == 1, product == 2],
        [rng.choice([12, 24, 36, 60], n), np.full(n, 12), rng.choice([3, 6, 12], n)],
        rng.choice([120, 180, 240], n),
    ).astype(np.int32)
    rate = np.select(
        [product == 0, product == 1, product == 2],
        [rng.uniform(0.11, 0.24, n), np.full(n, 0.26), rng.uniform(0.0, 0.12, n)],
        rng.uniform(0.08, 0.11, n),
    )
    r = rate / 12
    payment = np.where(r > 0, amount * r / (1 - (1 + r) ** -term.astype(float)), amount / term)
    return {
        "product": product,
        "amount": np.round(amount, -2),
        "term": term,
        "rate": np.round(rate, 4),
        "payment": np.round(payment, 2),
    }


def application_logit(rng: np.random.Generator, traits: pd.DataFrame, terms: dict, cfg: dict) -> np.ndarray:
    """Log-odds (without intercept) that a new loan reaches 90+ DPD within 12 months."""
    t = traits
    income = t["income"].to_numpy()
    burden = np.log1p(terms["payment"] / income)
    return (
        -0.85 * t["discipline"].to_numpy()
        + 0.9 * t["impulsivity"].to_numpy()
        + 0.85 * t["stress"].to_numpy()
        + cfg["loans"]["early_strain_weight"] * t["early_strain"].to_numpy()
        + 1.6 * burden
        - 0.3 * np.log(income / cfg["income"]["median_monthly_rub"])
        + 0.1 * (t["household"].to_numpy() - 2)
        + _PRODUCT_RISK[terms["product"]]
        + 0.5 * rng.standard_normal(len(t))
    )


def prior_logit(rng: np.random.Generator, traits: pd.DataFrame) -> np.ndarray:
    """Log-odds (without intercept) that an earlier loan defaulted: mostly discipline."""
    return (
        -1.2 * traits["discipline"].to_numpy()
        + 0.35 * traits["impulsivity"].to_numpy()
        + 0.4 * rng.standard_normal(len(traits))
    )


def business_logit(
    rng: np.random.Generator, quality: np.ndarray, trend: np.ndarray, leverage: np.ndarray
) -> np.ndarray:
    """Log-odds (without intercept) that a seller's business loan defaults."""
    return -0.9 * quality - 12.0 * trend + 0.6 * np.log1p(leverage) + 0.4 * rng.standard_normal(len(quality))


def intercept_for(logits: np.ndarray, rate: float) -> float:
    """The intercept ``b`` with ``mean(sigmoid(logits + b)) == rate`` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if sigmoid(logits + mid).mean() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def calibrate(cfg: dict, seed: int) -> dict[str, float]:
    """Intercepts for application, prior and business defaults from a fixed Monte Carlo sample."""
    from tandem.world.persons import draw_traits
    from tandem.world.sellers import draw_seller_traits

    rng = np.random.default_rng([seed, 0xCA11B])
    traits = draw_traits(rng, CALIBRATION_DRAWS, cfg)
    terms = application_terms(rng, traits, cfg)
    app = intercept_for(application_logit(rng, traits, terms, cfg), cfg["loans"]["default_rate"])
    prior = intercept_for(prior_logit(rng, traits), cfg["loans"]["default_rate"] * 0.8)
    s = draw_seller_traits(rng, CALIBRATION_DRAWS // 10)
    business = intercept_for(
        business_logit(rng, s["quality"], s["trend"], s["leverage"]), cfg["sellers"]["business_default_rate"]
    )
    return {"application": app, "prior": prior, "business": business}


def dpd_history(rng: np.random.Generator, default: np.ndarray, minor_delay_p: np.ndarray) -> np.ndarray:
    """Days past due at the end of months 1..12 (shape ``(n, 12)``, int32).

    A defaulting loan misses its first payment in month 1..10 and never cures, so it
    reaches 90+ DPD by month 12 at the latest; others may have one cured short delay.
    """
    n = len(default)
    months = np.arange(1, 13)
    first_miss = rng.integers(1, 11, n)
    late = np.maximum(0, months[None, :] - first_miss[:, None] + 1) * 30
    dpd = np.where(default[:, None], late, 0)
    minor = (~default) & (rng.random(n) < minor_delay_p)
    minor_month = rng.integers(0, 12, n)
    dpd[minor, minor_month[minor]] = rng.integers(1, 60, minor.sum())
    return dpd.astype(np.int32)

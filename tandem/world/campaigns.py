"""The bank's marketing: campaigns, who was contacted, who responded, and contact preferences.

Each product had one historic campaign that contacted a random share of the clients who
accept marketing; the latest wave (``TEST_WAVE``) offered each client it contacted one
product drawn at random, so it can be held out to measure how well a targeting policy
would have done. Whether a client accepts depends on what both sides see — at the
marketplace: installments at checkout, cross-border orders, the average check against
income, spend and traffic; at the bank: income, discipline and online habits — plus
per-contact noise, so neither side alone predicts it as well as both together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from tandem.world.catalog import CAMPAIGNS, TEST_WAVE
from tandem.world.risk import intercept_for, sigmoid
from tandem.world.timeline import add_months, dates_to_arrow

PRODUCTS = tuple(c[2] for c in CAMPAIGNS)


def _z(x: np.ndarray) -> np.ndarray:
    """Standardised over the chunk's clients (0 where undefined)."""
    x = np.where(np.isfinite(x), x, np.nan)
    sd = np.nanstd(x)
    return np.nan_to_num((x - np.nanmean(x)) / sd if sd > 0 else x * 0.0)


def response_logits(tr: pd.DataFrame, market: pd.DataFrame, median_income: float) -> dict[str, np.ndarray]:
    """Log-odds (without intercept or noise) that each client accepts an offer of each product, shape (n,).

    ``market`` holds each client's marketplace behaviour (``market._behaviour``; zeros for
    clients who do not use the marketplace), row for row with ``tr``.
    """
    income = tr["income"].to_numpy()
    rel_income = _z(np.log(income / median_income))
    orders = market["orders"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        share = lambda col: _z(market[col].to_numpy() / np.maximum(orders, 1))  # noqa: E731
        check_vs_income = _z(np.log(market["avg_check"].to_numpy()) - np.log(income))
    log_z = lambda col: _z(np.log1p(market[col].to_numpy()))  # noqa: E731
    disc, imp, stress, dig = (tr[k].to_numpy() for k in ("discipline", "impulsivity", "stress", "digital"))
    return {
        # pays in installments at checkout, buys dear for the income
        "installment_plan": 1.5 * share("installment_orders") + 1.0 * check_vs_income + 0.3 * stress,
        # spends a lot at the marketplace (the cashback is worth it)
        "cashback_card": 2.6 * log_z("spend_per_month") + 0.3 * rel_income + 0.2 * dig,
        # saves, earns well, buys on impulse rarely
        "deposit": 1.8 * disc + 0.9 * rel_income - 0.4 * imp,
        # orders across the border often
        "cross_border_insurance": 2.5 * share("cross_border_orders") + 0.4 * rel_income,
        # browses a lot and buys on impulse: a discount tips them
        "marketplace_promo": 2.2 * log_z("sessions") + 1.2 * imp,
    }


def campaign_tables(
    rng: np.random.Generator, cfg: dict, client_id: np.ndarray, tr: pd.DataFrame, market: pd.DataFrame, snap_day: int
) -> dict[str, pa.Table]:
    """``campaign_contacts`` and ``contact_preferences`` of one chunk's clients."""
    cc = cfg["campaigns"]
    n = len(client_id)
    consent = rng.random(n) < cc["marketing_consent"]
    dnd = rng.random(n) < cc["do_not_disturb"]
    dnd_until = np.where(dnd, snap_day + rng.integers(1, 181, n), 0)
    preferences = pa.table(
        {
            "client_id": client_id,
            "marketing_consent": consent,
            "do_not_disturb_until": pa.array(dnd_until.astype("datetime64[D]"), pa.date32(), mask=~dnd),
        }
    )

    logits = response_logits(tr, market, cfg["income"]["median_monthly_rub"])
    noisy = {p: v + cc["noise"] * rng.standard_normal(n) for p, v in logits.items()}
    accept = {p: sigmoid(intercept_for(v, cc[f"rate_{p}"]) + v) for p, v in noisy.items()}
    who, campaign = [], []
    for cid, _name, _product, _channel, _month in CAMPAIGNS:
        contacted = np.flatnonzero(consent & (rng.random(n) < cc["contacts_share"]))
        who.append(contacted)
        campaign.append(np.full(len(contacted), cid, dtype=np.int32))
    in_wave = np.flatnonzero(consent & (rng.random(n) < cc["test_wave_share"]))
    offered = rng.integers(0, len(TEST_WAVE), len(in_wave))
    who.append(in_wave)
    campaign.append(np.array([c[0] for c in TEST_WAVE], dtype=np.int32)[offered])
    who_rows, campaign_ids = np.concatenate(who), np.concatenate(campaign)
    product_of = {c[0]: c[2] for c in CAMPAIGNS + TEST_WAVE}
    p = np.empty(len(who_rows))
    for cid, product in product_of.items():
        mask = campaign_ids == cid
        p[mask] = accept[product][who_rows[mask]]
    contacts = pa.table(
        {"campaign_id": campaign_ids, "client_id": client_id[who_rows], "responded": rng.random(len(who_rows)) < p}
    )
    return {"campaign_contacts": contacts, "contact_preferences": preferences}


def campaigns_table(cfg: dict) -> pa.Table:
    snapshot = cfg["time"]["snapshot_date"]
    rows = CAMPAIGNS + TEST_WAVE
    return pa.table(
        {
            "campaign_id": pa.array([c[0] for c in rows], pa.int32()),
            "name": [c[1] for c in rows],
            "product": [c[2] for c in rows],
            "channel": [c[3] for c in rows],
            "sent_on": dates_to_arrow(np.array([add_months(snapshot, -c[4]) for c in rows], dtype="datetime64[D]")),
        }
    )

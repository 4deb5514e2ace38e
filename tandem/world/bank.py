"""The bank's retail tables for one chunk of persons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from tandem.world.campaigns import campaign_tables
from tandem.world.catalog import (
    MARKETPLACE_MCC,
    MCC,
    MCC_AMOUNT,
    MCC_BASE,
    MCC_CODES,
    MERCHANT_COUNT,
    MERCHANT_FIRST,
    MERCHANTS,
)
from tandem.world.persons import DOMAINS, Persons, email_locals, format_phones, mix_ids, phone_number, primary_domain
from tandem.world.risk import PRODUCTS, application_logit, application_terms, dpd_history, prior_logit, sigmoid
from tandem.world.timeline import US_PER_DAY, add_months, dates_to_arrow, day_number, timestamps_to_arrow

BANK_ID = 25_214_903_917 | 1, 11
SALARY_MONTHS = 6
_MERCHANT_DICT = pa.array(MERCHANTS, pa.string())


def bank_client_ids(person_id: np.ndarray) -> np.ndarray:
    return mix_ids(person_id, *BANK_ID)


def generate_bank(
    rng: np.random.Generator,
    p: Persons,
    chunk: int,
    cfg: dict,
    intercepts: dict,
    card_orders: pd.DataFrame,
    market_behaviour: pd.DataFrame,
) -> dict:
    """Return ``{"tables": {name: pa.Table}, "clients": DataFrame, "application": DataFrame}``.

    ``card_orders`` and ``market_behaviour`` come from the marketplace's chunk (card payments
    the bank sees; what each user did there, which drives campaign responses).
    ``clients`` holds person_id, client_id and the raw identifiers (for the truth);
    ``application`` the true PD and outcome of each new loan (for the truth).
    """
    ic, tc = cfg["identifiers"], cfg["time"]
    snapshot = tc["snapshot_date"]
    snap_day = day_number(snapshot)
    idx = np.flatnonzero(p.is_bank)
    n = len(idx)
    tr = p.traits.iloc[idx].reset_index(drop=True)
    pid = p.person_id[idx]
    client_id = bank_client_ids(pid)
    disc, imp, stress, dig = (tr[k].to_numpy() for k in ("discipline", "impulsivity", "stress", "digital"))
    income = tr["income"].to_numpy()

    phone = format_phones(rng, phone_number(pid), ["8digits", "+7digits"], [0.7, 0.3])
    email = np.char.add(np.char.add(email_locals(pid, 0), "@"), DOMAINS[primary_domain(pid)]).astype(object)
    email[rng.random(n) < ic["email_missing_rate_bank"]] = None
    birth = snap_day - (tr["age"].to_numpy() * 365.25 + rng.integers(0, 365, n)).astype(np.int64)
    segment = np.select([income >= 150_000, income >= 60_000], ["premium", "affluent"], "mass")
    tenure = rng.integers(30, 3650, n)
    clients = pa.table(
        {
            "client_id": client_id,
            "phone": pa.array(phone, pa.string()),
            "email": pa.array(email, pa.string()),
            "birth_date": dates_to_arrow(birth),
            "region": tr["region"].to_numpy(),
            "segment": segment,
            "consent_partner": p.consent_bank[idx],
            "opened_on": dates_to_arrow(snap_day - tenure),
        }
    )

    # accounts: a current account each, most have a card, disciplined clients save
    has_card = rng.random(n) < 0.9
    has_savings = rng.random(n) < np.clip(0.3 * (1 + 0.5 * disc), 0.02, 0.9)
    kinds = np.concatenate(
        [np.full(n, "current"), np.full(has_card.sum(), "card"), np.full(has_savings.sum(), "savings")]
    )
    owner = np.concatenate([np.arange(n), np.flatnonzero(has_card), np.flatnonzero(has_savings)])
    bal = np.where(
        kinds == "savings",
        3 * income[owner] * np.exp(0.8 * disc[owner] + 0.5 * rng.standard_normal(len(owner))),
        income[owner] * np.exp(0.4 * disc[owner] - 0.3 * stress[owner] + 0.8 * rng.standard_normal(len(owner))),
    )
    accounts = pa.table(
        {
            "account_id": chunk * 10_000_000_000 + np.arange(len(owner), dtype=np.int64),
            "client_id": client_id[owner],
            "kind": kinds,
            "opened_on": dates_to_arrow(snap_day - (tenure[owner] * rng.uniform(0.3, 1, len(owner))).astype(np.int64)),
            "balance": np.round(bal, 2),
        }
    )

    # salary: payroll clients get monthly credits; strained, undisciplined ones skip months and vary
    payroll = rng.random(n) < np.clip(0.7 + 0.1 * disc, 0.3, 0.95)
    irregular = sigmoid(0.9 * stress - 0.8 * disc - 1.0)
    months = np.arange(SALARY_MONTHS)
    paid = payroll[:, None] & (rng.random((n, SALARY_MONTHS)) >= 0.3 * irregular[:, None])
    amount = income[:, None] * (1 + (0.03 + 0.25 * irregular[:, None]) * rng.standard_normal((n, SALARY_MONTHS)))
    first_days = np.array([day_number(add_months(snapshot, int(k) - SALARY_MONTHS)) for k in months])
    pay_day = first_days[None, :] + rng.integers(4, 12, (n, 1))
    ci, mi = np.nonzero(paid)
    salary = pa.table(
        {
            "client_id": client_id[ci],
            "paid_on": dates_to_arrow(pay_day[ci, mi]),
            "amount": np.round(np.maximum(amount[ci, mi], 1000.0), 2),
        }
    )

    cards = _card_transactions(rng, cfg, chunk, client_id, tr, has_card, snap_day, pid, card_orders)
    loans, payments, application = _loans(rng, cfg, chunk, client_id, tr, intercepts, snap_day)
    behaviour = market_behaviour.set_index("person_id").reindex(pid, fill_value=0).reset_index(drop=True)
    campaigns = campaign_tables(rng, cfg, client_id, tr, behaviour, snap_day)
    application.insert(0, "person_id", pid[application.pop("client_index").to_numpy()])
    ids = pd.DataFrame({"person_id": pid, "client_id": client_id, "phone": phone, "email": email})
    return {
        "tables": {
            "clients": clients,
            "accounts": accounts,
            "salary_inflows": salary,
            "card_transactions": cards,
            "loans": loans,
            "loan_payments": payments,
            **campaigns,
        },
        "clients": ids,
        "application": application,
    }


def _card_transactions(rng, cfg, chunk, client_id, tr, has_card, snap_day, pid, card_orders) -> pa.Table:
    n = len(client_id)
    h_days = cfg["time"]["history_months"] * 30
    disc, imp, stress, dig = (tr[k].to_numpy() for k in ("discipline", "impulsivity", "stress", "digital"))
    rel_income = np.log(tr["income"].to_numpy() / cfg["income"]["median_monthly_rub"])
    active = has_card & (rng.random(n) < 0.92)
    rate = cfg["cards"]["txns_per_month"] * cfg["time"]["history_months"] * np.exp(0.3 * dig + 0.3 * rel_income - 0.1)
    count = np.where(active, rng.poisson(rate), 0)
    owner = np.repeat(np.arange(n), count)
    k = len(owner)
    pref = np.tile(MCC_BASE, (n, 1))
    pref[:, MCC["betting"]] += 1.3 * imp - 0.4 * disc
    pref[:, MCC["cash"]] += 0.7 * stress - 0.5 * dig
    pref[:, MCC["restaurants"]] += 0.5 * rel_income
    pref[:, MCC["fast_food"]] += 0.3 * imp
    pref[:, MCC["transport"]] += 0.4 * (tr["region"].to_numpy() == "Moscow")
    cum = np.cumsum(np.exp(pref), axis=1)
    cum /= cum[:, -1:]
    u = rng.random(k)
    mcc = np.zeros(k, dtype=np.int64)
    for j in range(len(MCC_CODES) - 1):  # inverse CDF, one column at a time (low memory)
        mcc += u > cum[owner, j]
    amount = MCC_AMOUNT[mcc] * np.exp(0.5 * rel_income[owner] + 0.6 * rng.standard_normal(k))
    merchant = MERCHANT_FIRST[mcc] + (rng.random(k) * MERCHANT_COUNT[mcc]).astype(np.int64)
    online = rng.random(k) < np.clip(0.08 * np.exp(0.6 * dig[owner]), 0, 0.8)
    night = rng.random(k) < 0.03
    hour = np.where(night, rng.integers(0, 6, k), rng.integers(7, 23, k))
    ts = (
        (snap_day - rng.integers(1, h_days + 1, k)) * US_PER_DAY
        + hour * 3_600_000_000
        + rng.integers(0, 3_600_000_000, k)
    )

    # card payments to the marketplace (from that person's own orders)
    row_of = pd.Series(np.arange(n), index=pid)
    seen = card_orders[card_orders["person_id"].isin(row_of.index)]
    seen = seen[rng.random(len(seen)) < cfg["cards"]["marketplace_card_share"]]
    seen = seen[active[row_of.loc[seen["person_id"]].to_numpy()]]
    m_owner = row_of.loc[seen["person_id"]].to_numpy()
    owner_all = np.concatenate([owner, m_owner])
    table = pa.table(
        {
            "txn_id": chunk * 10_000_000_000 + np.arange(len(owner_all), dtype=np.int64),
            "client_id": client_id[owner_all],
            "ts": timestamps_to_arrow(np.concatenate([ts, seen["ts_us"].to_numpy()])),
            "amount": np.round(np.concatenate([amount, seen["total"].to_numpy()]), 2),
            "mcc": np.concatenate([MCC_CODES[mcc], np.full(len(seen), MARKETPLACE_MCC, dtype=np.int32)]),
            "merchant": pa.DictionaryArray.from_arrays(
                pa.array(np.concatenate([merchant, np.zeros(len(seen), dtype=np.int64)]).astype(np.int32)),
                _MERCHANT_DICT,
            ).cast(pa.string()),
            "channel": np.where(np.concatenate([online, np.ones(len(seen), dtype=bool)]), "online", "offline"),
        }
    )
    return table.sort_by([("client_id", "ascending"), ("ts", "ascending")])


def _loans(rng, cfg, chunk, client_id, tr, intercepts, snap_day):
    """Application loans (issued at the snapshot, the modelling target) and earlier loans (history)."""
    lc = cfg["loans"]
    n = len(client_id)
    disc, stress = tr["discipline"].to_numpy(), tr["stress"].to_numpy()
    takes = rng.random(n) < np.clip(lc["application_share"] * np.exp(0.2 * stress), 0, 0.95)
    a = np.flatnonzero(takes)
    atr = tr.iloc[a].reset_index(drop=True)
    terms = application_terms(rng, atr, cfg)
    pd_true = sigmoid(intercepts["application"] + application_logit(rng, atr, terms, cfg))
    a_default = rng.random(len(a)) < pd_true
    a_issued = snap_day + rng.integers(0, 60, len(a))

    n_prior = rng.poisson(lc["prior_loan_rate"] * np.exp(0.3 * stress))
    b = np.repeat(np.arange(n), n_prior)
    btr = tr.iloc[b].reset_index(drop=True)
    b_terms = application_terms(rng, btr, cfg, mortgage_share=0.0)  # earlier loans: no mortgages
    b_default = rng.random(len(b)) < sigmoid(intercepts["prior"] + prior_logit(rng, btr))
    b_issued = snap_day - rng.integers(13 * 30, 48 * 30, len(b))

    owner = np.concatenate([a, b])
    product = np.concatenate([terms["product"], b_terms["product"]])
    default = np.concatenate([a_default, b_default])
    issued = np.concatenate([a_issued, b_issued])
    payment = np.concatenate([terms["payment"], b_terms["payment"]])
    loan_id = chunk * 10_000_000_000 + np.arange(len(owner), dtype=np.int64)
    minor_p = np.clip(0.12 * np.exp(-0.9 * disc[owner] + 0.4 * stress[owner]), 0, 0.8)
    dpd = dpd_history(rng, default, minor_p)
    loans = pa.table(
        {
            "loan_id": loan_id,
            "client_id": client_id[owner],
            "product": PRODUCTS[product],
            "issued_on": dates_to_arrow(issued),
            "amount": np.concatenate([terms["amount"], b_terms["amount"]]),
            "term_months": np.concatenate([terms["term"], b_terms["term"]]),
            "rate": np.concatenate([terms["rate"], b_terms["rate"]]),
            "monthly_payment": payment,
            "default_90_12m": dpd.max(axis=1) >= 90,
        }
    )
    months = np.arange(1, 13)
    due = issued[:, None] + 30 * months[None, :]
    paid = np.where(dpd == 0, payment[:, None], np.where(dpd < 30, payment[:, None] * 0.5, 0.0))
    payments = pa.table(
        {
            "loan_id": np.repeat(loan_id, 12),
            "month": np.tile(months.astype(np.int32), len(owner)),
            "due_on": dates_to_arrow(due.ravel()),
            "paid": np.round(paid.ravel(), 2),
            "dpd": dpd.ravel(),
        }
    )
    application = pd.DataFrame(
        {
            "client_index": a,
            "loan_id": loan_id[: len(a)],
            "true_pd": pd_true,
            "default": dpd[: len(a)].max(axis=1) >= 90,
        }
    )
    return loans, payments, application

"""The marketplace's tables for one chunk of persons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from tandem.world.catalog import CAT, CATEGORY_BASE, CATEGORY_NAMES, CATEGORY_PRICE, CATEGORY_RETURN
from tandem.world.persons import (
    DOMAIN_TYPOS,
    DOMAINS,
    OLD_PHONE_OFFSET,
    Persons,
    email_locals,
    format_phones,
    mix_ids,
    phone_number,
    primary_domain,
)
from tandem.world.timeline import US_PER_DAY, dates_to_arrow, day_number, timestamps_to_arrow

MARKET_ID = (6_364_136_223_846_793_005 % (1 << 40)) | 1, 1_442_695_040_888_963_407 % (1 << 40)
MARKET_PHONE_STYLES = ["+7 (ddd) ddd-dd-dd", "8 ddd ddd dd dd", "8(ddd)ddddddd", "+7digits", "ddd-ddd-dd-dd"]
MARKET_PHONE_WEIGHTS = [0.45, 0.2, 0.1, 0.15, 0.1]
PAYMENT_METHODS = np.array(["card", "wallet", "cod", "installments"])
STATUSES = np.array(["delivered", "returned", "cancelled"])


def market_user_ids(person_id: np.ndarray) -> np.ndarray:
    return mix_ids(person_id, *MARKET_ID)


def _gumbel_choice(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``logits`` (shape ``(n, k)``)."""
    return np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=1)


def _mixed_case(rng: np.random.Generator, local: np.ndarray, domain: np.ndarray) -> np.ndarray:
    style = rng.integers(0, 3, len(local))
    cap_local = np.char.capitalize(local.astype(str))
    out = np.where(style == 0, local, cap_local)
    dom = np.where(style == 2, np.char.upper(domain.astype(str)), np.char.capitalize(domain.astype(str)))
    dom = np.where(style == 0, domain, dom)
    return np.char.add(np.char.add(out, "@"), dom)


def generate_market(rng: np.random.Generator, p: Persons, chunk: int, cfg: dict, sellers: dict) -> dict:
    """Return ``{"tables": {name: pa.Table}, "users": DataFrame, "card_orders": DataFrame}``.

    ``users`` has person_id, user_id, raw phone and e-mail (for the truth); ``card_orders``
    holds card-paid orders of the last ``history_months`` (person_id, ts_us, total) that
    the bank may see as card payments to the marketplace.
    """
    ic, mc, tc = cfg["identifiers"], cfg["market"], cfg["time"]
    snap_day = day_number(tc["snapshot_date"])
    idx = np.flatnonzero(p.is_market)
    n = len(idx)
    tr = p.traits.iloc[idx].reset_index(drop=True)
    pid = p.person_id[idx]
    user_id = market_user_ids(pid)
    dig, imp, stress = tr["digital"].to_numpy(), tr["impulsivity"].to_numpy(), tr["stress"].to_numpy()
    early = tr["early_strain"].to_numpy()
    disc, income = tr["discipline"].to_numpy(), tr["income"].to_numpy()
    rel_income = np.log(income / cfg["income"]["median_monthly_rub"])

    # identifiers: a share have an old number, a typo or an unusable phone; other or mistyped mailboxes
    u = rng.random(n)
    phone_index = np.where(u < ic["old_phone_rate"], OLD_PHONE_OFFSET + pid, pid)
    national = phone_number(phone_index)
    typo = (u >= ic["old_phone_rate"]) & (u < ic["old_phone_rate"] + ic["phone_typo_rate"])
    pos = rng.integers(1, 10, n)
    digit = (national // 10 ** (9 - pos)) % 10
    national = np.where(typo, national + ((digit + rng.integers(1, 10, n)) % 10 - digit) * 10 ** (9 - pos), national)
    phone = format_phones(rng, national, MARKET_PHONE_STYLES, MARKET_PHONE_WEIGHTS)
    bad = rng.random(n) < ic["phone_invalid_rate"]
    phone[bad] = np.char.add("8", (national[bad] // 10).astype(str))  # a digit short
    other = rng.random(n) < ic["other_email_rate"]
    local = np.where(other, email_locals(pid, 1), email_locals(pid, 0))
    dom_i = rng.integers(0, len(DOMAINS), n)
    dom_i = np.where(other, (dom_i + 1) % len(DOMAINS), primary_domain(pid))
    typo_mail = rng.random(n) < ic["email_typo_rate"]
    domain = np.where(typo_mail, DOMAIN_TYPOS[dom_i], DOMAINS[dom_i])
    email = _mixed_case(rng, local, domain).astype(object)
    email[rng.random(n) < ic["email_missing_rate_market"]] = None

    tenure = np.clip(rng.gamma(2.0, 300 * np.exp(0.3 * dig)), 1, 3000).astype(np.int64)
    users = pa.table(
        {
            "user_id": user_id,
            "phone": pa.array(phone, pa.string()),
            "email": pa.array(email, pa.string()),
            "registered_on": dates_to_arrow(snap_day - tenure),
            "region": tr["region"].to_numpy(),
            "consent_partner": p.consent_market[idx],
        }
    )

    # sessions over the last history_months
    h_days = tc["history_months"] * 30
    s_count = rng.poisson(mc["sessions_per_month"] * tc["history_months"] * np.exp(0.5 * dig + 0.2 * imp - 0.3))
    s_user = np.repeat(np.arange(n), s_count)
    ns = len(s_user)
    night = rng.random(ns) < np.clip(0.05 * np.exp(0.8 * imp[s_user]), 0, 0.7)
    hour = np.where(night, rng.integers(0, 6, ns), rng.integers(7, 24, ns))
    s_ts = (
        (snap_day - rng.integers(1, h_days + 1, ns)) * US_PER_DAY
        + hour * 3_600_000_000
        + rng.integers(0, 3_600_000_000, ns)
    )
    device = _gumbel_choice(rng, np.column_stack([0.6 * dig[s_user], 0.3 + 0 * dig[s_user], -0.5 * dig[s_user]]))
    sessions = pa.table(
        {
            "user_id": user_id[s_user],
            "started_at": timestamps_to_arrow(s_ts),
            "duration_s": np.clip(rng.lognormal(5.5 + 0.2 * imp[s_user], 0.8), 5, 14_400).astype(np.int32),
            "pages": (1 + rng.poisson(np.exp(1.6 + 0.2 * dig[s_user]))).astype(np.int32),
            "device": np.array(["app", "mobile_web", "desktop"])[device],
        }
    )

    # orders over the last order_months; "t" runs 0 -> 1 towards the snapshot (stress shows late)
    o_days = tc["order_months"] * 30
    o_count = rng.poisson(
        mc["orders_per_year"] * tc["order_months"] / 12 * np.exp(0.45 * dig + 0.3 * imp + 0.25 * rel_income - 0.25)
    )
    o_user = np.repeat(np.arange(n), o_count)
    no = len(o_user)
    age_days = rng.integers(1, o_days + 1, no)
    t = 1 - age_days / o_days
    # strain shows in what users do at the marketplace: the strain the bank sees too, and the early strain
    # that shows here (cash on delivery, installments, returns, night orders) before it reaches the accounts
    strain = (stress + early) / np.sqrt(2)
    night = rng.random(no) < np.clip(0.04 * np.exp(0.9 * imp[o_user] + 0.3 * strain[o_user]), 0, 0.7)
    hour = np.where(night, rng.integers(0, 6, no), rng.integers(8, 24, no))
    o_ts = (snap_day - age_days) * US_PER_DAY + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, no)
    ou_strain, ou_dig, ou_imp = strain[o_user], dig[o_user], imp[o_user]
    pay = _gumbel_choice(
        rng,
        np.column_stack(
            [
                np.zeros(no),
                0.5 * ou_dig - 1.0,
                -0.9 + 1.0 * ou_strain * (0.4 + t) - 0.6 * ou_dig - 0.3 * disc[o_user],
                -2.3 + 1.0 * ou_strain * (0.4 + t) + 0.5 * ou_imp,
            ]
        ),
    )
    cross_border = rng.random(no) < np.clip(mc["cross_border_share"] * (1 + 0.3 * ou_dig), 0, 0.95)

    # items: category preferences per user, price relative to income and impulsivity
    i_count = 1 + rng.poisson(0.6, no)
    i_order = np.repeat(np.arange(no), i_count)
    ni = len(i_order)
    iu = o_user[i_order]
    pref = np.tile(CATEGORY_BASE, (ni, 1))
    pref[:, CAT["kids"]] += 0.6 * (tr["household"].to_numpy()[iu] - 1)
    pref[:, CAT["grocery"]] += 0.3 * tr["household"].to_numpy()[iu]
    pref[:, CAT["luxury"]] += 0.9 * imp[iu] + 0.5 * rel_income[iu]
    pref[:, CAT["gaming"]] += 1.0 * imp[iu] - 0.01 * (tr["age"].to_numpy()[iu] - 40)
    pref[:, CAT["fashion"]] += 0.3 * imp[iu]
    cat = _gumbel_choice(rng, pref)
    price = np.round(
        CATEGORY_PRICE[cat] * np.exp(0.3 * rel_income[iu] + 0.35 * imp[iu] + 0.7 * rng.standard_normal(ni)), 0
    )
    qty = rng.geometric(0.8, ni).astype(np.int32)
    by_cat = sellers["by_category"]
    pick = rng.random(ni)
    seller = np.empty(ni, dtype=np.int64)
    for c in range(len(CATEGORY_NAMES)):
        m = cat == c
        if m.any():
            pool = by_cat[c]
            seller[m] = pool[(pick[m] * len(pool)).astype(np.int64)]
    total = np.bincount(i_order, weights=price * qty, minlength=no)
    first_item = np.concatenate([[0], np.cumsum(i_count)[:-1]])
    ret_p = np.clip(CATEGORY_RETURN[cat[first_item]] * np.exp(0.6 * ou_imp + 0.5 * ou_strain * t), 0, 0.9)
    cancel_p = 0.03 + 0.07 * (pay == 2)
    u = rng.random(no)
    status = np.where(u < cancel_p, 2, np.where(u < cancel_p + ret_p, 1, 0))
    order_id = chunk * 10_000_000_000 + np.arange(no, dtype=np.int64)
    orders = pa.table(
        {
            "order_id": order_id,
            "user_id": user_id[o_user],
            "ordered_at": timestamps_to_arrow(o_ts),
            "total": np.round(total, 2),
            "payment_method": PAYMENT_METHODS[pay],
            "status": STATUSES[status],
            "cross_border": cross_border,
        }
    )
    items = pa.table(
        {
            "order_id": order_id[i_order],
            "seller_id": seller,
            "category": CATEGORY_NAMES[cat],
            "price": price,
            "quantity": qty,
        }
    )
    recent_card = (pay == 0) & (status != 2) & (age_days <= h_days)
    card_orders = pd.DataFrame(
        {"person_id": pid[o_user[recent_card]], "ts_us": o_ts[recent_card], "total": np.round(total[recent_card], 2)}
    )
    ids = pd.DataFrame({"person_id": pid, "user_id": user_id, "phone": phone, "email": email})
    return {
        "tables": {"users": users, "sessions": sessions, "orders": orders, "order_items": items},
        "users": ids,
        "card_orders": card_orders,
        "behaviour": _behaviour(pid, o_user, status != 2, total, pay == 3, cross_border, s_count, tc),
    }


def _behaviour(pid, o_user, kept, total, installments, cross_border, sessions, tc) -> pd.DataFrame:
    """What each user did at the marketplace (one row per user, for the bank's campaign responses):
    kept (not cancelled) orders, those paid in installments and cross-border, monthly spend, sessions."""
    n = len(pid)
    count = lambda mask: np.bincount(o_user[kept & mask], minlength=n)  # noqa: E731
    spend = np.bincount(o_user[kept], weights=total[kept], minlength=n)
    orders = count(np.ones(len(o_user), dtype=bool))
    return pd.DataFrame(
        {
            "person_id": pid,
            "orders": orders,
            "installment_orders": count(installments),
            "cross_border_orders": count(cross_border),
            "spend_per_month": spend / tc["order_months"],
            "avg_check": np.where(orders > 0, spend / np.maximum(orders, 1), np.nan),
            "sessions": sessions,
        }
    )

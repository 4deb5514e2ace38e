"""Persons: latent traits, membership of each side, consent and identifiers.

Traits (standard normal unless said otherwise) drive behaviour on both sides:
``discipline`` (pays on time, saves), ``impulsivity`` (night orders, returns,
betting), ``digital`` (online affinity), ``stress`` (recent financial strain:
cash withdrawals, cash on delivery, installments), ``early_strain`` (strain so recent that it
shows at the marketplace — cash on delivery, installments, returns, night orders — before it
reaches the bank's accounts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MOBILE_CODES = np.array([c for c in range(900, 1000) if c != 930], dtype=np.int64)  # 930 is partly unassigned
_PER_CODE = 909_090  # numbers per code that are divisible by 11
PHONE_SPACE = len(MOBILE_CODES) * _PER_CODE
_CODE_OFFSET = (-MOBILE_CODES * 10_000_000) % 11
OLD_PHONE_OFFSET = 40_000_000  # index of a person's old number: offset + person_id
_PHONE_A, _PHONE_C = 48_271_207, 7_919_113  # affine bijection on PHONE_SPACE (gcd(a, space) = 1)
ID_SPACE = 1 << 40

FIRST = np.array(
    [
        "ivan",
        "anna",
        "sergey",
        "olga",
        "dmitry",
        "elena",
        "alexey",
        "maria",
        "andrey",
        "natalia",
        "pavel",
        "irina",
        "mikhail",
        "tatiana",
        "nikolay",
        "svetlana",
        "artem",
        "yulia",
        "oleg",
        "ekaterina",
    ]
)
LAST = np.array(
    [
        "ivanov",
        "smirnov",
        "kuznetsov",
        "popov",
        "vasiliev",
        "petrov",
        "sokolov",
        "mikhailov",
        "novikov",
        "fedorov",
        "morozov",
        "volkov",
        "alekseev",
        "lebedev",
        "semenov",
        "egorov",
    ]
)
DOMAINS = np.array(["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "rambler.ru", "list.ru"])
DOMAIN_TYPOS = np.array(["mial.ru", "yandex.ry", "gmial.com", "bk.ri", "inbx.ru", "rambler.tu", "lsit.ru"])


def mix_ids(x: np.ndarray, a: int, c: int, space: int = ID_SPACE) -> np.ndarray:
    """A bijection of ``[0, space)``: ids that look random and never collide."""
    return ((x.astype(object) * a + c) % space).astype(np.int64)


def phone_number(index: np.ndarray) -> np.ndarray:
    """National 10-digit mobile numbers (int64) for phone indices; distinct indices give distinct numbers.

    Every number is divisible by 11, so a one-digit typo (a change of d * 10^k) never
    lands on another person's real number.
    """
    y = mix_ids(index, _PHONE_A, _PHONE_C, PHONE_SPACE)
    code = y // _PER_CODE
    return MOBILE_CODES[code] * 10_000_000 + _CODE_OFFSET[code] + 11 * (y % _PER_CODE)


@dataclass
class Persons:
    """One chunk of persons; every array has shape ``(n,)``."""

    person_id: np.ndarray
    traits: pd.DataFrame  # age, region, household, income, discipline, impulsivity, digital, stress
    is_bank: np.ndarray
    is_market: np.ndarray
    consent_bank: np.ndarray
    consent_market: np.ndarray

    def __len__(self) -> int:
        return len(self.person_id)


def draw_traits(rng: np.random.Generator, n: int, cfg: dict) -> pd.DataFrame:
    """Latent traits of ``n`` persons; ``income`` is monthly, RUB."""
    regions = cfg["regions"]
    age = np.clip(rng.normal(41, 13, n), 18, 80).astype(np.int32)
    region = rng.choice(len(regions["names"]), n, p=np.array(regions["weights"]) / sum(regions["weights"]))
    household = np.clip(1 + rng.poisson(1.2, n), 1, 6).astype(np.int32)
    discipline = rng.standard_normal(n)
    impulsivity = rng.standard_normal(n)
    digital = rng.standard_normal(n) - 0.03 * (age - 41)
    stress = rng.standard_normal(n)
    age_curve = -0.35 * ((age - 45) / 22.0) ** 2
    log_income = (
        np.log(cfg["income"]["median_monthly_rub"])
        + np.log(np.array(regions["income_multiplier"])[region])
        + cfg["income"]["sigma"] * rng.standard_normal(n)
        + 0.12 * discipline
        + age_curve
    )
    early_strain = rng.standard_normal(n)
    return pd.DataFrame(
        {
            "age": age,
            "region": np.array(regions["names"])[region],
            "household": household,
            "income": np.round(np.exp(log_income), -2),
            "discipline": discipline,
            "impulsivity": impulsivity,
            "digital": digital,
            "stress": stress,
            "early_strain": early_strain,
        }
    )


def draw_persons(rng: np.random.Generator, first_id: int, n: int, cfg: dict) -> Persons:
    pop = cfg["population"]
    traits = draw_traits(rng, n, cfg)
    is_bank = rng.random(n) < pop["bank_share"]
    lift = np.clip(1 + 0.35 * traits["digital"].to_numpy(), 0.1, 1.9)
    p_market = np.where(is_bank, pop["market_share_of_bank"], pop["market_share_of_others"]) * lift
    is_market = rng.random(n) < np.clip(p_market, 0.0, 0.98)
    return Persons(
        person_id=np.arange(first_id, first_id + n, dtype=np.int64),
        traits=traits,
        is_bank=is_bank,
        is_market=is_market,
        consent_bank=is_bank & (rng.random(n) < pop["consent_bank"]),
        consent_market=is_market & (rng.random(n) < pop["consent_market"]),
    )


def email_locals(person_id: np.ndarray, salt: int) -> np.ndarray:
    """Distinct mailbox names per person (``ivan.petrov4821973``); ``salt`` picks another mailbox.

    Derived from the person alone, so both sides write the same mailbox the same way.
    """
    h = mix_ids(person_id * 4 + salt, 2_654_435_761, 97 + salt, 1 << 34)
    first, last = FIRST[h % len(FIRST)], LAST[(h // 7) % len(LAST)]
    sep = np.array([".", "_", ""])[(h // 131) % 3]
    return np.char.add(np.char.add(np.char.add(first, sep), last), h.astype(str))


def primary_domain(person_id: np.ndarray) -> np.ndarray:
    """Index into ``DOMAINS`` of each person's main mailbox (the same on both sides)."""
    return (person_id * 5 + 3) % len(DOMAINS)


def format_phones(
    rng: np.random.Generator, national: np.ndarray, styles: list[str], weights: list[float]
) -> np.ndarray:
    """Write 10-digit national numbers in the given styles (shape ``(n,)`` of str)."""
    s = national.astype(str)
    code = (national // 10_000_000).astype(str)
    p1 = np.char.zfill(((national // 10_000) % 1000).astype(str), 3)
    p2 = np.char.zfill(((national // 100) % 100).astype(str), 2)
    p3 = np.char.zfill((national % 100).astype(str), 2)
    forms = {
        "8digits": np.char.add("8", s),
        "+7digits": np.char.add("+7", s),
        "+7 (ddd) ddd-dd-dd": _join("+7 (", code, ") ", p1, "-", p2, "-", p3),
        "8 ddd ddd dd dd": _join("8 ", code, " ", p1, " ", p2, " ", p3),
        "8(ddd)ddddddd": _join("8(", code, ")", p1, p2, p3),
        "ddd-ddd-dd-dd": _join(code, "-", p1, "-", p2, "-", p3),
    }
    choice = rng.choice(len(styles), len(s), p=np.array(weights) / sum(weights))
    out = np.empty(len(s), dtype=object)
    for i, style in enumerate(styles):
        mask = choice == i
        out[mask] = forms[style][mask]
    return out


def _join(*parts) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = np.char.add(out, p)
    return out

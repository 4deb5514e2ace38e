"""The offer catalog: products, their eligibility, value and contact limits, from TOML.

Defaults: ``catalog.toml`` beside this file (every key is explained there). A catalog file
replaces the defaults whole; every error names the file and the key at fault.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tandem.errors import InputError
from tandem.parties import ENTITIES

DEFAULT = Path(__file__).with_name("catalog.toml")
AUDIENCES = ENTITIES  # who a product is offered to
SOLVENCY = ("installments", "sellers")  # sections of the decision policy (tandem/decide/policy.toml)
PERSONALISE = ("none", "top_categories")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    audience: str
    credit: bool
    solvency: str | None  # policy section of a credit product's PD cutoff and limit
    value_rub: float  # expected margin of one accepted offer
    min_age: int | None = None
    max_age: int | None = None
    min_income_rub: float | None = None
    cooldown_days: int = 0
    personalise: str = "none"
    top_categories: int = 0


@dataclass(frozen=True)
class Catalog:
    path: Path
    products: tuple[Product, ...]
    max_offers: int  # per client per period, campaign contacts in it included
    period_days: int
    min_expected_value_rub: float
    categories: tuple[str, ...]  # the public list personalised offers draw from

    @property
    def customer_products(self) -> tuple[Product, ...]:
        """The products ``tandem offers`` ranks for retail clients (sellers go the seller path)."""
        return tuple(p for p in self.products if p.audience == "customers")

    def product(self, key: str) -> Product | None:
        return next((p for p in self.products if p.key == key), None)


# key -> (type, required); int is accepted where a float is expected, bool never counts as a number
_PRODUCT_KEYS = {
    "name": (str, True),
    "audience": (str, True),
    "credit": (bool, True),
    "solvency": (str, False),
    "value_rub": (float, True),
    "min_age": (int, False),
    "max_age": (int, False),
    "min_income_rub": (float, False),
    "cooldown_days": (int, False),
    "personalise": (str, False),
    "top_categories": (int, False),
}
_CONTACT_KEYS = {"max_offers": (int, True), "period_days": (int, True), "min_expected_value_rub": (float, False)}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number", float: "a number", list: "a list"}


def _typed(path: Path, where: str, key: str, value, kind: type):
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise InputError(f"{path}: [{where}] {key} must be {_TYPE_NAMES[kind]}, got {value!r}")
    return value


def _section(path: Path, where: str, raw, keys: dict) -> dict:
    if not isinstance(raw, dict):
        raise InputError(f"{path}: [{where}] must be a table")
    for key in raw:
        if key not in keys:
            raise InputError(f"{path}: unknown key '{key}' in [{where}] (known: {', '.join(keys)})")
    out = {}
    for key, (kind, required) in keys.items():
        if key not in raw:
            if required:
                raise InputError(f"{path}: [{where}] {key} is missing")
            continue
        out[key] = _typed(path, where, key, raw[key], kind)
    return out


def _one_of(path: Path, where: str, key: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{path}: [{where}] {key} must be one of {', '.join(allowed)}, got {value!r}")


def _product(path: Path, key: str, raw) -> Product:
    where = f"products.{key}"
    if not _KEY.match(key):
        raise InputError(f"{path}: [{where}] a product key is lower-case letters, digits and _")
    d = _section(path, where, raw, _PRODUCT_KEYS)
    _one_of(path, where, "audience", d["audience"], AUDIENCES)
    personalise = d.get("personalise", "none")
    _one_of(path, where, "personalise", personalise, PERSONALISE)
    if d["credit"]:
        if "solvency" not in d:
            raise InputError(f'{path}: [{where}] a credit product needs solvency = "installments" or "sellers"')
        _one_of(path, where, "solvency", d["solvency"], SOLVENCY)
    elif "solvency" in d:
        raise InputError(f"{path}: [{where}] solvency applies to credit products only (credit = false)")
    if d["value_rub"] <= 0:
        raise InputError(f"{path}: [{where}] value_rub must be positive, got {d['value_rub']}")
    for k in ("min_age", "max_age", "min_income_rub", "cooldown_days"):
        if d.get(k, 0) < 0:
            raise InputError(f"{path}: [{where}] {k} must not be negative, got {d[k]}")
    if d.get("min_age", 0) > d.get("max_age", 200):
        raise InputError(f"{path}: [{where}] min_age is above max_age")
    if personalise == "top_categories" and d.get("top_categories", 0) < 1:
        raise InputError(f'{path}: [{where}] personalise = "top_categories" needs top_categories >= 1')
    if personalise == "none" and "top_categories" in d:
        raise InputError(f'{path}: [{where}] top_categories needs personalise = "top_categories"')
    return Product(key=key, solvency=d.pop("solvency", None), **d)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The catalog at ``path`` (default: the one shipped beside this module), checked key by key."""
    path = Path(path) if path is not None else DEFAULT
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read the offer catalog ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    for section in raw:
        if section not in ("contacts", "personalisation", "products"):
            raise InputError(f"{path}: unknown section [{section}] (known: contacts, personalisation, products)")
    contacts = _section(path, "contacts", raw.get("contacts", {}), _CONTACT_KEYS)
    if contacts["max_offers"] < 0 or contacts["period_days"] < 1:
        raise InputError(f"{path}: [contacts] max_offers must be >= 0 and period_days >= 1")
    if contacts.get("min_expected_value_rub", 0.0) < 0:
        raise InputError(f"{path}: [contacts] min_expected_value_rub must not be negative")
    pers = _section(path, "personalisation", raw.get("personalisation", {}), {"categories": (list, False)})
    categories = pers.get("categories", [])
    if not all(isinstance(c, str) and c for c in categories) or len(set(categories)) != len(categories):
        raise InputError(f"{path}: [personalisation] categories must be distinct non-empty strings")
    products = raw.get("products")
    if not isinstance(products, dict) or not products:
        raise InputError(f"{path}: no [products.KEY] tables")
    items = tuple(_product(path, key, value) for key, value in products.items())
    for p in items:
        if p.personalise == "top_categories" and p.top_categories > len(categories):
            raise InputError(
                f"{path}: [products.{p.key}] top_categories is more than the "
                f"{len(categories)} [personalisation] categories"
            )
    return Catalog(
        path,
        items,
        contacts["max_offers"],
        contacts["period_days"],
        contacts.get("min_expected_value_rub", 0.0),
        tuple(categories),
    )

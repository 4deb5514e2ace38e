"""The named fields an insight query may use: each party's group keys, measures and filters.

Every field is computed per linked customer by one SQL query over that party's own store
(``BANK_SQL``, ``MARKET_SQL``, with ``$as_of`` bound), never over the other party's. A group
key has a public, ordered set of labels: sums travel in that order and no label ever
crosses the wire. A number has a public clamping range that bounds one customer's
contribution, which is what the differential-privacy noise is calibrated to (docs/privacy.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from tandem.store.party_schema import CATEGORIES, REGIONS


@dataclass(frozen=True)
class Field:
    """One field: ``kind`` is "group" (``labels``), "number" (``bounds``, in ``unit``) or "flag" (0 or 1)."""

    party: str
    name: str
    kind: str
    doc: str
    unit: str = ""
    labels: tuple[str, ...] = ()
    bounds: tuple[float, float] = (0.0, 1.0)

    @property
    def qualified(self) -> str:
        return f"{self.party}.{self.name}"


INCOME_BANDS = ("under 20k", "20k-40k", "40k-70k", "70k-120k", "120k+", "no salary")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")

_FIELDS = (
    Field(
        "bank", "income_band", "group", "median monthly salary over the 6 months before as_of, RUB", labels=INCOME_BANDS
    ),
    Field("bank", "segment", "group", "the bank's client segment", labels=("mass", "affluent", "premium")),
    Field("bank", "region", "group", "the client's region at the bank", labels=REGIONS),
    Field("bank", "age_band", "group", "age at as_of", labels=AGE_BANDS),
    Field(
        "bank",
        "income",
        "number",
        "median monthly salary over the 6 months before as_of (none: no salary)",
        "RUB/month",
        bounds=(0, 250_000),
    ),
    Field(
        "bank",
        "card_spend",
        "number",
        "card spending per month over the 3 months before as_of",
        "RUB/month",
        bounds=(0, 150_000),
    ),
    Field(
        "bank",
        "card_spend_marketplace",
        "number",
        "of which card payments to the marketplace",
        "RUB/month",
        bounds=(0, 30_000),
    ),
    Field(
        "bank", "debt_service", "number", "monthly payments of loans open at as_of", "RUB/month", bounds=(0, 200_000)
    ),
    Field("market", "region", "group", "the user's region at the marketplace", labels=REGIONS),
    Field(
        "market",
        "top_category",
        "group",
        "the category the user spent most on in the 12 months before as_of",
        labels=CATEGORIES + ("none",),
    ),
    Field(
        "market",
        "main_payment",
        "group",
        "the payment method of most of the user's orders",
        labels=("card", "wallet", "cod", "installments", "none"),
    ),
    Field(
        "market",
        "avg_check",
        "number",
        "average order total, cancelled orders excluded (none: no orders)",
        "RUB",
        bounds=(0, 20_000),
    ),
    Field(
        "market",
        "orders",
        "number",
        "orders in the 12 months before as_of, cancelled excluded",
        "orders",
        bounds=(0, 60),
    ),
    Field(
        "market", "spend", "number", "delivered order totals in the 12 months before as_of", "RUB", bounds=(0, 500_000)
    ),
    Field(
        "market",
        "cross_border_orders",
        "number",
        "cross-border orders (parcels), cancelled excluded",
        "orders",
        bounds=(0, 30),
    ),
    Field("market", "cross_border_value", "number", "total of those cross-border orders", "RUB", bounds=(0, 300_000)),
    Field(
        "market",
        "cross_border_over_threshold",
        "number",
        "cross-border orders above the duty-free threshold (parameter duty_free_eur, per parcel)",
        "orders",
        bounds=(0, 5),
    ),
    Field(
        "market",
        "cross_border_newly_dutiable",
        "number",
        "cross-border orders above new_duty_free_eur but not above duty_free_eur: what the lower threshold adds",
        "orders",
        bounds=(0, 5),
    ),
    Field("market", "cross_border_buyer", "flag", "1 if the user placed a cross-border order"),
    Field("market", "installment_user", "flag", "1 if the user paid an order in installments"),
)
FIELDS: dict[str, Field] = {f.qualified: f for f in _FIELDS}

# parameters of the SQL (both sides see them in the query); defaults: the 2019 rule and rate
PARAMS: dict[str, tuple[float, str]] = {
    "duty_free_eur": (500.0, "duty-free threshold per parcel, EUR"),
    "new_duty_free_eur": (200.0, "a lower threshold to compare with, EUR"),
    "eur_rub": (73.0, "RUB per EUR"),
}

TABLES = {
    "bank": ["clients", "salary_inflows", "card_transactions", "loans", "link_customers"],
    "market": ["users", "orders", "order_items", "link_customers"],
}

BANK_SQL = """
WITH
salary AS (
    SELECT client_id, median(amount) AS income FROM salary_inflows
    WHERE paid_on < $as_of AND paid_on >= $as_of - INTERVAL 6 MONTH GROUP BY client_id),
cards AS (
    SELECT client_id, sum(amount) / 3.0 AS card_spend,
           coalesce(sum(amount) FILTER (merchant = 'Marketplace'), 0) / 3.0 AS card_spend_marketplace
    FROM card_transactions WHERE ts < $as_of AND ts >= $as_of - INTERVAL 3 MONTH GROUP BY client_id),
debt AS (
    SELECT client_id, sum(monthly_payment) AS debt_service FROM loans
    WHERE issued_on < $as_of AND issued_on + to_months(term_months) > $as_of GROUP BY client_id),
base AS (
    SELECT l.link_id, c.segment, c.region, date_diff('year', c.birth_date, $as_of) AS age, s.income,
           coalesce(k.card_spend, 0) AS card_spend, coalesce(k.card_spend_marketplace, 0) AS card_spend_marketplace,
           coalesce(d.debt_service, 0) AS debt_service
    FROM link_customers l JOIN clients c ON c.client_id = l.local_id
    LEFT JOIN salary s ON s.client_id = c.client_id LEFT JOIN cards k ON k.client_id = c.client_id
    LEFT JOIN debt d ON d.client_id = c.client_id)
SELECT link_id,
       CASE WHEN income IS NULL THEN 'no salary' WHEN income < 20000 THEN 'under 20k'
            WHEN income < 40000 THEN '20k-40k' WHEN income < 70000 THEN '40k-70k'
            WHEN income < 120000 THEN '70k-120k' ELSE '120k+' END AS income_band,
       segment, region,
       CASE WHEN age < 18 THEN NULL WHEN age < 25 THEN '18-24' WHEN age < 35 THEN '25-34'
            WHEN age < 45 THEN '35-44' WHEN age < 55 THEN '45-54' WHEN age < 65 THEN '55-64'
            WHEN age IS NOT NULL THEN '65+' END AS age_band,
       income, card_spend, card_spend_marketplace, debt_service
FROM base ORDER BY link_id
"""

MARKET_SQL = """
WITH
o AS (
    SELECT * FROM orders
    WHERE ordered_at < $as_of AND ordered_at >= $as_of - INTERVAL 12 MONTH AND status <> 'cancelled'),
ord AS (
    SELECT user_id, avg(total) AS avg_check, count(*) AS orders,
           coalesce(sum(total) FILTER (status = 'delivered'), 0) AS spend,
           count(*) FILTER (cross_border) AS cross_border_orders,
           coalesce(sum(total) FILTER (cross_border), 0) AS cross_border_value,
           count(*) FILTER (cross_border AND total > $duty_free_rub) AS cross_border_over_threshold,
           count(*) FILTER (cross_border AND total > $new_duty_free_rub AND total <= $duty_free_rub)
             AS cross_border_newly_dutiable,
           count(*) FILTER (payment_method = 'installments') AS installment_orders
    FROM o GROUP BY user_id),
pay AS (
    SELECT user_id, payment_method AS main_payment FROM (
        SELECT user_id, payment_method,
               row_number() OVER (PARTITION BY user_id ORDER BY count(*) DESC, payment_method) AS r
        FROM o GROUP BY user_id, payment_method) WHERE r = 1),
cat AS (
    SELECT user_id, category AS top_category FROM (
        SELECT o.user_id, i.category,
               row_number() OVER (PARTITION BY o.user_id ORDER BY sum(i.price * i.quantity) DESC, i.category) AS r
        FROM o JOIN order_items i USING (order_id) GROUP BY o.user_id, i.category) WHERE r = 1)
SELECT l.link_id, u.region, coalesce(cat.top_category, 'none') AS top_category,
       coalesce(pay.main_payment, 'none') AS main_payment,
       ord.avg_check, coalesce(ord.orders, 0) AS orders, coalesce(ord.spend, 0) AS spend,
       coalesce(ord.cross_border_orders, 0) AS cross_border_orders,
       coalesce(ord.cross_border_value, 0) AS cross_border_value,
       coalesce(ord.cross_border_over_threshold, 0) AS cross_border_over_threshold,
       coalesce(ord.cross_border_newly_dutiable, 0) AS cross_border_newly_dutiable,
       CASE WHEN coalesce(ord.cross_border_orders, 0) > 0 THEN 1 ELSE 0 END AS cross_border_buyer,
       CASE WHEN coalesce(ord.installment_orders, 0) > 0 THEN 1 ELSE 0 END AS installment_user
FROM link_customers l JOIN users u ON u.user_id = l.local_id
LEFT JOIN ord ON ord.user_id = u.user_id LEFT JOIN pay ON pay.user_id = u.user_id
LEFT JOIN cat ON cat.user_id = u.user_id
ORDER BY l.link_id
"""

SQL = {"bank": BANK_SQL, "market": MARKET_SQL}


def sql_params(party: str, params: dict[str, float]) -> dict[str, float]:
    """The named parameters a party's SQL binds besides ``$as_of``."""
    if party == "bank":
        return {}
    return {
        "duty_free_rub": params["duty_free_eur"] * params["eur_rub"],
        "new_duty_free_rub": params["new_duty_free_eur"] * params["eur_rub"],
    }


def resolve(name: str) -> Field:
    """A field by ``party.name``, or by ``name`` alone where only one party has it; ``KeyError`` names the choices."""
    if name in FIELDS:
        return FIELDS[name]
    matches = [f for f in FIELDS.values() if f.name == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise KeyError(f"'{name}' is ambiguous: say {' or '.join(f.qualified for f in matches)}")
    raise KeyError(f"unknown field '{name}' (see `tandem insight fields`)")

"""What each party's store must hold: the tables a real bank's or marketplace's store provides
(the synthetic world writes the same ones). ``TABLES[preset]``: the specs checked by ``tandem store
check``, the feature SQL and the offers' history and content queries."""

from __future__ import annotations

from tandem.store.schema import Column as C
from tandem.store.schema import TableSpec as T

# the values both parties' ``region`` and ``category`` columns take: a public vocabulary (insight groups by it)
REGIONS: tuple[str, ...] = (
    "Moscow",
    "Saint Petersburg",
    "Novosibirsk",
    "Yekaterinburg",
    "Kazan",
    "Nizhny Novgorod",
    "Krasnodar",
    "Samara",
    "Rostov-on-Don",
    "Other",
)
CATEGORIES: tuple[str, ...] = (
    "electronics",
    "fashion",
    "shoes",
    "home",
    "kids",
    "beauty",
    "sports",
    "auto",
    "books",
    "grocery",
    "luxury",
    "gaming",
)

BANK_TABLES: tuple[T, ...] = (
    T(
        "clients",
        (
            C("client_id", "BIGINT", False),
            C("phone", "VARCHAR"),
            C("email", "VARCHAR"),
            C("birth_date", "DATE"),
            C("region", "VARCHAR"),
            C("segment", "VARCHAR", doc="mass | affluent | premium"),
            C("consent_partner", "BOOLEAN", False, "consented to sharing data with the marketplace"),
            C("opened_on", "DATE"),
        ),
        key=("client_id",),
        doc="retail clients",
    ),
    T(
        "accounts",
        (
            C("account_id", "BIGINT", False),
            C("client_id", "BIGINT", False),
            C("kind", "VARCHAR", doc="current | card | savings"),
            C("opened_on", "DATE"),
            C("balance", "DOUBLE"),
        ),
        key=("account_id",),
    ),
    T(
        "salary_inflows",
        (
            C("client_id", "BIGINT", False),
            C("paid_on", "DATE", False),
            C("amount", "DOUBLE", False),
        ),
        doc="monthly salary credits, RUB",
    ),
    T(
        "card_transactions",
        (
            C("txn_id", "BIGINT", False),
            C("client_id", "BIGINT", False),
            C("ts", "TIMESTAMP", False),
            C("amount", "DOUBLE", False),
            C("mcc", "INTEGER", False),
            C("merchant", "VARCHAR"),
            C("channel", "VARCHAR", doc="online | offline"),
        ),
        key=("txn_id",),
        doc="card spending, RUB; MCC per ISO 18245",
    ),
    T(
        "loans",
        (
            C("loan_id", "BIGINT", False),
            C("client_id", "BIGINT", False),
            C("product", "VARCHAR", False, "consumer | card | installment | mortgage"),
            C("issued_on", "DATE", False),
            C("amount", "DOUBLE", False),
            C("term_months", "INTEGER", False),
            C("rate", "DOUBLE", doc="annual interest rate, fraction"),
            C("monthly_payment", "DOUBLE"),
            C("default_90_12m", "BOOLEAN", doc="reached 90+ days past due within 12 months of issue"),
        ),
        key=("loan_id",),
    ),
    T(
        "loan_payments",
        (
            C("loan_id", "BIGINT", False),
            C("month", "INTEGER", False, "1..12 after issue"),
            C("due_on", "DATE", False),
            C("paid", "DOUBLE"),
            C("dpd", "INTEGER", False, "days past due at month end"),
        ),
    ),
    T(
        "campaigns",
        (
            C("campaign_id", "INTEGER", False),
            C("name", "VARCHAR"),
            C("product", "VARCHAR"),
            C("channel", "VARCHAR"),
            C("sent_on", "DATE"),
        ),
        key=("campaign_id",),
    ),
    T(
        "campaign_contacts",
        (
            C("campaign_id", "INTEGER", False),
            C("client_id", "BIGINT", False),
            C("responded", "BOOLEAN", False),
        ),
    ),
    T(
        "contact_preferences",
        (
            C("client_id", "BIGINT", False),
            C("marketing_consent", "BOOLEAN", False, "agreed to receive offers"),
            C("do_not_disturb_until", "DATE", doc="no contacts before this day (NULL: none asked for)"),
        ),
        key=("client_id",),
        doc="what each client allows the bank's marketing",
    ),
    T(
        "business_clients",
        (
            C("business_id", "BIGINT", False),
            C("inn", "VARCHAR", False),
            C("name", "VARCHAR"),
            C("region", "VARCHAR"),
            C("opened_on", "DATE"),
            C("consent_partner", "BOOLEAN", False),
        ),
        key=("business_id",),
        doc="sellers that bank with the bank",
    ),
    T(
        "business_turnover",
        (
            C("business_id", "BIGINT", False),
            C("month", "DATE", False),
            C("credit_turnover", "DOUBLE"),
            C("debit_turnover", "DOUBLE"),
            C("debt", "DOUBLE"),
        ),
    ),
    T(
        "business_loans",
        (
            C("loan_id", "BIGINT", False),
            C("business_id", "BIGINT", False),
            C("issued_on", "DATE", False),
            C("amount", "DOUBLE", False),
            C("term_months", "INTEGER", False),
            C("default_90_12m", "BOOLEAN"),
        ),
        key=("loan_id",),
    ),
)

MARKET_TABLES: tuple[T, ...] = (
    T(
        "users",
        (
            C("user_id", "BIGINT", False),
            C("phone", "VARCHAR"),
            C("email", "VARCHAR"),
            C("registered_on", "DATE"),
            C("region", "VARCHAR"),
            C("consent_partner", "BOOLEAN", False),
        ),
        key=("user_id",),
    ),
    T(
        "sessions",
        (
            C("user_id", "BIGINT", False),
            C("started_at", "TIMESTAMP", False),
            C("duration_s", "INTEGER"),
            C("pages", "INTEGER"),
            C("device", "VARCHAR", doc="app | mobile_web | desktop"),
        ),
    ),
    T(
        "orders",
        (
            C("order_id", "BIGINT", False),
            C("user_id", "BIGINT", False),
            C("ordered_at", "TIMESTAMP", False),
            C("total", "DOUBLE", False),
            C("payment_method", "VARCHAR", False, "card | wallet | cod | installments"),
            C("status", "VARCHAR", False, "delivered | returned | cancelled"),
            C("cross_border", "BOOLEAN", False),
        ),
        key=("order_id",),
        doc="totals in RUB",
    ),
    T(
        "order_items",
        (
            C("order_id", "BIGINT", False),
            C("seller_id", "BIGINT", False),
            C("category", "VARCHAR", False),
            C("price", "DOUBLE", False),
            C("quantity", "INTEGER", False),
        ),
    ),
    T(
        "sellers",
        (
            C("seller_id", "BIGINT", False),
            C("inn", "VARCHAR"),
            C("name", "VARCHAR"),
            C("category", "VARCHAR"),
            C("rating", "DOUBLE"),
            C("registered_on", "DATE"),
            C("consent_partner", "BOOLEAN", False),
        ),
        key=("seller_id",),
    ),
    T(
        "seller_monthly",
        (
            C("seller_id", "BIGINT", False),
            C("month", "DATE", False),
            C("gmv", "DOUBLE"),
            C("orders", "INTEGER"),
            C("returns", "INTEGER"),
            C("late_shipments", "INTEGER"),
        ),
    ),
)

TABLES: dict[str, tuple[T, ...]] = {"bank": BANK_TABLES, "market": MARKET_TABLES}


def spec(party: str, table: str) -> T:
    """The spec of ``party``'s ``table``; ``KeyError`` when it has none."""
    for t in TABLES[party]:
        if t.name == table:
            return t
    raise KeyError(f"{party} has no table {table}")

"""Seller features on each side (marketplace by ``seller_id``, bank by ``business_id``) and loan outcomes."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from tandem.features.run import run_sql

MARKET_SELLER_SQL = """
WITH m AS (
    SELECT seller_id, month, gmv, orders, returns, late_shipments,
           date_diff('month', month, $as_of) AS age_m
    FROM seller_monthly WHERE month < $as_of AND month >= $as_of - INTERVAL 12 MONTH)
SELECT s.seller_id, s.rating, date_diff('day', s.registered_on, $as_of) AS seller_tenure_days,
       avg(m.gmv) AS gmv_month_avg,
       avg(m.gmv) FILTER (m.age_m <= 3) AS gmv_recent_3m,
       regr_slope(ln(greatest(m.gmv, 1)), -m.age_m) AS gmv_trend,
       sum(m.returns) / greatest(sum(m.orders), 1) AS seller_return_rate,
       sum(m.late_shipments) / greatest(sum(m.orders), 1) AS late_shipment_rate,
       avg(m.orders) AS orders_month_avg
FROM sellers s LEFT JOIN m USING (seller_id)
GROUP BY s.seller_id, s.rating, s.registered_on ORDER BY s.seller_id
"""

BANK_SELLER_SQL = """
WITH t AS (
    SELECT business_id, month, credit_turnover, debit_turnover, debt, date_diff('month', month, $as_of) AS age_m
    FROM business_turnover WHERE month < $as_of AND month >= $as_of - INTERVAL 12 MONTH)
SELECT b.business_id, date_diff('day', b.opened_on, $as_of) AS account_tenure_days,
       avg(t.credit_turnover) AS turnover_month_avg,
       regr_slope(ln(greatest(t.credit_turnover, 1)), -t.age_m) AS turnover_trend,
       arg_max(t.debt, t.month) AS business_debt,
       arg_max(t.debt, t.month) / greatest(avg(t.credit_turnover), 1) AS debt_to_turnover,
       avg(t.debit_turnover / greatest(t.credit_turnover, 1)) AS outflow_ratio
FROM business_clients b LEFT JOIN t USING (business_id)
GROUP BY b.business_id, b.opened_on ORDER BY b.business_id
"""

SELLER_LABELS_SQL = """
SELECT business_id, arg_min(loan_id, issued_on) AS loan_id, arg_min(default_90_12m, issued_on) AS default_90_12m
FROM business_loans WHERE issued_on >= $as_of AND default_90_12m IS NOT NULL
GROUP BY business_id ORDER BY business_id
"""


def market_seller_features(store, as_of: date) -> pa.Table:
    """Per seller: rating, GMV level (RUB/month) and trend (monthly log-growth), return and late-shipment rates."""
    return run_sql(store, ["sellers", "seller_monthly"], MARKET_SELLER_SQL, as_of)


def bank_seller_features(store, as_of: date) -> pa.Table:
    """Per business client: account turnover (RUB/month) and its trend, existing debt, outflow ratio."""
    return run_sql(store, ["business_clients", "business_turnover"], BANK_SELLER_SQL, as_of)


def seller_labels(store, as_of: date) -> pa.Table:
    """``(business_id, loan_id, default_90_12m)`` of each business's first loan on or after ``as_of``."""
    return run_sql(store, ["business_loans"], SELLER_LABELS_SQL, as_of)

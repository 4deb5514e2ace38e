"""The bank's features per retail client (one row per ``client_id``)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from tandem.features.run import run_sql

TABLES = ["clients", "accounts", "salary_inflows", "card_transactions", "loans", "loan_payments", "campaign_contacts"]

BANK_FEATURES_SQL = """
WITH
salary AS (
    SELECT client_id, median(amount) AS income_median, stddev_pop(amount) / avg(amount) AS income_cv,
           count(DISTINCT date_trunc('month', paid_on)) AS salary_months
    FROM salary_inflows WHERE paid_on < $as_of AND paid_on >= $as_of - INTERVAL 6 MONTH
    GROUP BY client_id),
cards AS (
    SELECT client_id,
           count(*) / 3.0 AS card_txn_per_month,
           sum(amount) / 3.0 AS card_spend_per_month,
           sum(amount) FILTER (mcc = 5411) / sum(amount) AS share_groceries,
           sum(amount) FILTER (mcc IN (5812, 5814)) / sum(amount) AS share_eating_out,
           sum(amount) FILTER (mcc = 6011) / sum(amount) AS share_cash,
           sum(amount) FILTER (mcc = 7995) / sum(amount) AS share_betting,
           count(*) FILTER (mcc = 7995) AS betting_txns,
           sum(amount) FILTER (merchant = 'Marketplace') / sum(amount) AS share_marketplace,
           avg(CASE WHEN channel = 'online' THEN 1.0 ELSE 0.0 END) AS online_share
    FROM card_transactions WHERE ts < $as_of AND ts >= $as_of - INTERVAL 3 MONTH
    GROUP BY client_id),
history AS (
    SELECT l.client_id,
           count(DISTINCT l.loan_id) AS prior_loans,
           max(p.dpd) AS prior_max_dpd,
           count(DISTINCT l.loan_id) FILTER (p.dpd >= 30) AS prior_loans_30dpd,
           count(DISTINCT l.loan_id) FILTER (p.dpd >= 90) AS prior_defaults,
           count(*) FILTER (p.dpd > 0) AS prior_late_months
    FROM loans l JOIN loan_payments p USING (loan_id)
    WHERE l.issued_on < $as_of AND p.due_on < $as_of
    GROUP BY l.client_id),
open_debt AS (
    SELECT client_id, sum(monthly_payment) AS debt_service
    FROM loans
    WHERE issued_on < $as_of AND issued_on + to_months(term_months) > $as_of AND NOT coalesce(default_90_12m, false)
    GROUP BY client_id),
balances AS (
    SELECT client_id,
           sum(balance) FILTER (kind IN ('current', 'card')) AS balance_current,
           coalesce(sum(balance) FILTER (kind = 'savings'), 0) AS balance_savings
    FROM accounts GROUP BY client_id),
application AS (
    SELECT client_id, arg_min(amount, issued_on) AS app_amount, arg_min(term_months, issued_on) AS app_term,
           arg_min(monthly_payment, issued_on) AS app_payment,
           arg_min(CASE product WHEN 'consumer' THEN 0 WHEN 'card' THEN 1 WHEN 'installment' THEN 2 ELSE 3 END,
                   issued_on) AS app_product
    FROM loans WHERE issued_on >= $as_of GROUP BY client_id),
campaigns AS (
    SELECT client_id, avg(CASE WHEN responded THEN 1.0 ELSE 0.0 END) AS campaign_response_rate
    FROM campaign_contacts GROUP BY client_id)
SELECT
    c.client_id,
    date_diff('year', c.birth_date, $as_of) AS age,
    date_diff('month', c.opened_on, $as_of) AS tenure_months,
    CASE c.region WHEN 'Moscow' THEN 1 WHEN 'Saint Petersburg' THEN 1 ELSE 0 END AS is_capital,
    CASE c.segment WHEN 'premium' THEN 2 WHEN 'affluent' THEN 1 ELSE 0 END AS segment_rank,
    s.income_median, s.income_cv, coalesce(s.salary_months, 0) AS salary_months,
    k.card_txn_per_month, k.card_spend_per_month, k.share_groceries, k.share_eating_out, k.share_cash,
    k.share_betting, coalesce(k.betting_txns, 0) AS betting_txns, k.share_marketplace, k.online_share,
    k.card_spend_per_month / s.income_median AS spend_to_income,
    coalesce(h.prior_loans, 0) AS prior_loans, coalesce(h.prior_max_dpd, 0) AS prior_max_dpd,
    coalesce(h.prior_loans_30dpd, 0) AS prior_loans_30dpd, coalesce(h.prior_defaults, 0) AS prior_defaults,
    coalesce(h.prior_late_months, 0) AS prior_late_months,
    coalesce(d.debt_service, 0) AS debt_service,
    (coalesce(d.debt_service, 0) + coalesce(a.app_payment, 0)) / s.income_median AS debt_to_income,
    b.balance_current, b.balance_savings, b.balance_savings / s.income_median AS savings_to_income,
    a.app_amount, a.app_term, a.app_product, a.app_payment / s.income_median AS app_payment_to_income,
    a.app_payment,
    m.campaign_response_rate
FROM clients c
LEFT JOIN salary s USING (client_id)
LEFT JOIN cards k USING (client_id)
LEFT JOIN history h USING (client_id)
LEFT JOIN open_debt d USING (client_id)
LEFT JOIN balances b USING (client_id)
LEFT JOIN application a USING (client_id)
LEFT JOIN campaigns m USING (client_id)
ORDER BY c.client_id
"""

LABELS_SQL = """
SELECT client_id, arg_min(loan_id, issued_on) AS loan_id, arg_min(default_90_12m, issued_on) AS default_90_12m
FROM loans WHERE issued_on >= $as_of AND default_90_12m IS NOT NULL
GROUP BY client_id ORDER BY client_id
"""


def bank_features(store, as_of: date) -> pa.Table:
    """Features of every retail client; money in RUB, shares in [0, 1], ``NULL`` where unknown.

    ``app_*`` describe the loan applied for on or after ``as_of`` (the one being scored).
    """
    return run_sql(store, TABLES, BANK_FEATURES_SQL, as_of)


def application_labels(store, as_of: date) -> pa.Table:
    """``(client_id, loan_id, default_90_12m)`` of each client's first loan issued on or after ``as_of``."""
    return run_sql(store, ["loans"], LABELS_SQL, as_of)

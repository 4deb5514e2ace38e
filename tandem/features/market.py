"""The marketplace's features per user (one row per ``user_id``)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from tandem.features.run import run_sql

TABLES = ["users", "sessions", "orders", "order_items"]

MARKET_FEATURES_SQL = """
WITH
o AS (
    SELECT *, ordered_at >= $as_of - INTERVAL 3 MONTH AS recent, hour(ordered_at) < 6 AS night
    FROM orders WHERE ordered_at < $as_of AND ordered_at >= $as_of - INTERVAL 12 MONTH),
ord AS (
    SELECT user_id,
           count(*) / 12.0 AS orders_per_month,
           avg(total) FILTER (status <> 'cancelled') AS avg_check,
           sum(total) FILTER (status = 'delivered') / 12.0 AS spend_per_month,
           max(total) AS max_check,
           count(*) FILTER (status = 'returned') / greatest(count(*) FILTER (status <> 'cancelled'), 1) AS return_rate,
           avg(CASE WHEN status = 'cancelled' THEN 1.0 ELSE 0.0 END) AS cancel_rate,
           avg(CASE WHEN payment_method = 'cod' THEN 1.0 ELSE 0.0 END) AS cod_share,
           avg(CASE WHEN payment_method = 'installments' THEN 1.0 ELSE 0.0 END) AS installment_share,
           avg(CASE WHEN payment_method = 'wallet' THEN 1.0 ELSE 0.0 END) AS wallet_share,
           avg(CASE WHEN night THEN 1.0 ELSE 0.0 END) AS night_order_share,
           avg(CASE WHEN cross_border THEN 1.0 ELSE 0.0 END) AS cross_border_share,
           avg(CASE WHEN payment_method IN ('cod', 'installments') THEN 1.0 ELSE 0.0 END) FILTER (recent)
             - avg(CASE WHEN payment_method IN ('cod', 'installments') THEN 1.0 ELSE 0.0 END) FILTER (NOT recent)
             AS deferred_payment_trend,
           avg(CASE WHEN status = 'returned' THEN 1.0 ELSE 0.0 END) FILTER (recent)
             - avg(CASE WHEN status = 'returned' THEN 1.0 ELSE 0.0 END) FILTER (NOT recent) AS return_trend
    FROM o GROUP BY user_id),
items AS (
    SELECT o.user_id,
           count(*) / count(DISTINCT o.order_id) AS items_per_order,
           sum(i.price * i.quantity) FILTER (i.category = 'luxury') / sum(i.price * i.quantity) AS share_luxury,
           sum(i.price * i.quantity) FILTER (i.category = 'gaming') / sum(i.price * i.quantity) AS share_gaming,
           sum(i.price * i.quantity) FILTER (i.category = 'kids') / sum(i.price * i.quantity) AS share_kids,
           sum(i.price * i.quantity) FILTER (i.category IN ('fashion', 'shoes')) / sum(i.price * i.quantity)
             AS share_fashion,
           sum(i.price * i.quantity) FILTER (i.category = 'electronics') / sum(i.price * i.quantity)
             AS share_electronics,
           count(DISTINCT i.category) AS categories_bought
    FROM o JOIN order_items i USING (order_id) GROUP BY o.user_id),
sess AS (
    SELECT user_id, count(*) / 3.0 AS sessions_per_month, avg(duration_s) AS avg_session_s,
           avg(CASE WHEN hour(started_at) < 6 THEN 1.0 ELSE 0.0 END) AS night_session_share,
           avg(CASE WHEN device = 'app' THEN 1.0 ELSE 0.0 END) AS app_share, avg(pages) AS pages_per_session
    FROM sessions WHERE started_at < $as_of AND started_at >= $as_of - INTERVAL 3 MONTH GROUP BY user_id)
SELECT u.user_id,
       date_diff('day', u.registered_on, $as_of) AS tenure_days,
       coalesce(ord.orders_per_month, 0) AS orders_per_month,
       ord.avg_check, coalesce(ord.spend_per_month, 0) AS spend_per_month, ord.max_check,
       ord.return_rate, ord.cancel_rate, ord.cod_share, ord.installment_share, ord.wallet_share,
       ord.night_order_share, ord.cross_border_share, ord.deferred_payment_trend, ord.return_trend,
       items.items_per_order, items.share_luxury, items.share_gaming, items.share_kids, items.share_fashion,
       items.share_electronics, items.categories_bought,
       coalesce(sess.sessions_per_month, 0) AS sessions_per_month, sess.avg_session_s, sess.night_session_share,
       sess.app_share, sess.pages_per_session
FROM users u
LEFT JOIN ord USING (user_id) LEFT JOIN items USING (user_id) LEFT JOIN sess USING (user_id)
ORDER BY u.user_id
"""


def market_features(store, as_of: date) -> pa.Table:
    """Features of every marketplace user over the 12 months (orders) / 3 months (sessions) before ``as_of``.

    Money in RUB, shares in [0, 1], trends are recent-3-month minus earlier shares; ``NULL`` where unknown.
    """
    return run_sql(store, TABLES, MARKET_FEATURES_SQL, as_of)

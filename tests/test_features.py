from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from tandem.errors import SchemaError
from tandem.features import (
    application_labels,
    bank_features,
    bank_seller_features,
    market_features,
    market_seller_features,
    seller_labels,
)
from tandem.store import open_store

AS_OF = date(2019, 1, 1)


@pytest.fixture(scope="module")
def stores(small_world):
    bank = open_store(small_world / "bank.duckdb", read_only=True)
    market = open_store(small_world / "market.duckdb", read_only=True)
    yield bank, market
    bank.close()
    market.close()


def test_market_features_equal_a_pandas_recomputation(stores):
    _, market = stores
    feats = market_features(market, AS_OF).to_pandas().set_index("user_id")
    orders = market.read_table("orders").to_pandas()
    orders = orders[(orders["ordered_at"] < pd.Timestamp(AS_OF))
                    & (orders["ordered_at"] >= pd.Timestamp(AS_OF) - pd.DateOffset(months=12))]
    g = orders.groupby("user_id")
    expected = pd.DataFrame({
        "orders_per_month": g.size() / 12,
        "cod_share": g["payment_method"].apply(lambda s: (s == "cod").mean()),
        "return_rate": g["status"].apply(lambda s: (s == "returned").sum() / max((s != "cancelled").sum(), 1)),
        "night_order_share": g["ordered_at"].apply(lambda s: (s.dt.hour < 6).mean()),
    })
    got = feats.loc[expected.index, expected.columns]
    np.testing.assert_allclose(got.to_numpy(dtype=float), expected.to_numpy(dtype=float), rtol=1e-9)
    users = market.read_table("users").num_rows
    assert len(feats) == users and feats.index.is_unique
    assert (feats.loc[~feats.index.isin(expected.index), "orders_per_month"] == 0).all()
    for share in ("cod_share", "installment_share", "return_rate", "night_order_share", "share_luxury"):
        assert feats[share].dropna().between(0, 1).all()


def test_bank_features_equal_a_pandas_recomputation(stores):
    bank, _ = stores
    feats = bank_features(bank, AS_OF).to_pandas().set_index("client_id")
    salary = bank.read_table("salary_inflows").to_pandas()
    salary = salary[pd.to_datetime(salary["paid_on"]) < pd.Timestamp(AS_OF)]
    income = salary.groupby("client_id")["amount"].median()
    np.testing.assert_allclose(feats.loc[income.index, "income_median"], income, rtol=1e-9)
    loans = bank.read_table("loans").to_pandas()
    pays = bank.read_table("loan_payments").to_pandas()
    prior = loans[pd.to_datetime(loans["issued_on"]) < pd.Timestamp(AS_OF)].merge(pays, on="loan_id")
    prior = prior[pd.to_datetime(prior["due_on"]) < pd.Timestamp(AS_OF)]
    defaults = prior[prior["dpd"] >= 90].groupby("client_id")["loan_id"].nunique()
    assert (feats.loc[defaults.index, "prior_defaults"] == defaults).all()
    assert feats["prior_defaults"].sum() == defaults.sum()
    cards = bank.read_table("card_transactions").to_pandas()
    bet = cards[cards["mcc"] == 7995].groupby("client_id").size()
    assert (feats.loc[bet.index, "betting_txns"] == bet).all()


def test_features_use_only_data_before_as_of(small_world, tmp_path):
    import shutil

    copy = tmp_path / "market.duckdb"
    shutil.copy(small_world / "market.duckdb", copy)
    store = open_store(copy)
    before = market_features(store, AS_OF).to_pandas()
    store.con.execute("UPDATE orders SET status = 'returned', payment_method = 'cod' WHERE ordered_at >= ?",
                      [AS_OF])
    store.con.execute("INSERT INTO orders SELECT order_id + 1, user_id, TIMESTAMP '2019-02-01 03:00:00', total, "
                      "'installments', 'returned', cross_border FROM orders LIMIT 100")
    after = market_features(store, AS_OF).to_pandas()
    pd.testing.assert_frame_equal(before, after)
    store.close()


def test_labels_and_seller_features(stores):
    bank, market = stores
    labels = application_labels(bank, AS_OF).to_pandas()
    assert labels["client_id"].is_unique and 0.02 < labels["default_90_12m"].mean() < 0.2
    assert len(market_seller_features(market, AS_OF)) == market.read_table("sellers").num_rows
    bs = bank_seller_features(bank, AS_OF).to_pandas()
    assert len(bs) == bank.read_table("business_clients").num_rows and (bs["turnover_month_avg"] > 0).all()
    assert seller_labels(bank, AS_OF).num_rows == bank.read_table("business_loans").num_rows


def test_features_refuse_a_store_with_the_wrong_schema(tmp_path, small_world):
    import shutil

    shutil.copy(small_world / "market.duckdb", tmp_path / "m.duckdb")
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    con.execute("ALTER TABLE orders DROP COLUMN payment_method")
    con.close()
    store = open_store(tmp_path / "m.duckdb", read_only=True)
    with pytest.raises(SchemaError, match=r"m.duckdb: table 'orders' has no column 'payment_method'"):
        market_features(store, AS_OF)
    store.close()


def test_postgres_store_gives_the_same_features(small_world, postgres_url):
    from helpers import run_cli

    run_cli("store", "copy", str(small_world / "bank.duckdb"), postgres_url, "--party", "bank", check=True)
    run_cli("store", "check", postgres_url, "--party", "bank", check=True)
    pg = open_store(postgres_url)
    duck = open_store(small_world / "bank.duckdb", read_only=True)
    try:
        a = bank_features(pg, AS_OF).to_pandas()
        b = bank_features(duck, AS_OF).to_pandas()
    finally:
        pg.close()
        duck.close()
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-9)

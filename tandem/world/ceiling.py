"""The plaintext ceiling: LightGBM on bank-only vs bank + marketplace features, joined by the truth.

No protocol may do this (it reads both stores and the truth); it tells how much
joining the two sides can help, which the federated path must later reach.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tandem.features import application_labels, bank_features, market_features
from tandem.learn.metrics import roc_auc
from tandem.store import open_store
from tandem.world.config import load_config

TEST_FRACTION = 0.3
LGB_ROUNDS = 400
LGB_PARAMS = dict(
    objective="binary",
    learning_rate=0.03,
    num_leaves=15,
    min_data_in_leaf=50,
    bagging_fraction=0.8,
    bagging_freq=1,
    feature_fraction=0.8,
    lambda_l2=1.0,
    num_threads=2,
    verbose=-1,
)


def joined_frame(world: str | Path, as_of=None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Application loans of persons who are on both sides: bank features, marketplace features, label.

    Returns ``(frame, bank_columns, market_columns)``; ``frame`` has ``person_id`` and ``default``.
    """
    world = Path(world)
    as_of = as_of or load_config()["time"]["snapshot_date"]
    bank = open_store(world / "bank.duckdb", read_only=True)
    market = open_store(world / "market.duckdb", read_only=True)
    try:
        bf = bank_features(bank, as_of).to_pandas()
        labels = application_labels(bank, as_of).to_pandas()
        mf = market_features(market, as_of).to_pandas()
    finally:
        bank.close()
        market.close()
    truth = pq.read_table(
        world / "truth.parquet", columns=["person_id", "bank_client_id", "market_user_id"]
    ).to_pandas()
    truth = truth.dropna()
    frame = (
        labels.merge(truth, left_on="client_id", right_on="bank_client_id")
        .merge(bf, on="client_id")
        .merge(mf, left_on="market_user_id", right_on="user_id")
    )
    frame["default"] = frame["default_90_12m"].astype(int)
    bank_cols = [c for c in bf.columns if c != "client_id"]
    market_cols = [c for c in mf.columns if c != "user_id"]
    return frame.sort_values("person_id").reset_index(drop=True), bank_cols, market_cols


def ceiling_aucs(world: str | Path, seed: int = 0) -> dict:
    """Test AUC of LightGBM on bank-only and on joint features, same rows, same split."""
    frame, bank_cols, market_cols = joined_frame(world)
    y = frame["default"].to_numpy()
    if len(frame) < 200 or y.sum() < 20 or y.sum() > len(y) - 20:
        return {
            "auc_bank_only": None,
            "auc_joint": None,
            "ceiling_rows": len(frame),
            "ceiling_note": "too few shared borrowers to estimate an AUC",
        }
    test = np.random.default_rng([seed, 0x7E57]).random(len(frame)) < TEST_FRACTION
    out: dict[str, int | float] = {
        "ceiling_rows": int(len(frame)),
        "ceiling_test_rows": int(test.sum()),
        "ceiling_test_defaults": int(y[test].sum()),
    }
    for name, cols in (("auc_bank_only", bank_cols), ("auc_joint", bank_cols + market_cols)):
        train = lgb.Dataset(frame.loc[~test, cols].astype(float), y[~test])
        model = lgb.train({**LGB_PARAMS, "seed": seed}, train, num_boost_round=LGB_ROUNDS)
        out[name] = round(roc_auc(y[test], model.predict(frame.loc[test, cols].astype(float))), 4)
    out["auc_gain"] = round(out["auc_joint"] - out["auc_bank_only"], 4)
    return out

"""The main job on a world: link the two sides, export each side's features keyed by link id,
train the federated model, and compare it with what the bank can do alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tandem.features import application_labels, bank_features, market_features
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.federated import read_party_file
from tandem.learn.metrics import roc_auc
from tandem.store import open_store
from tandem.world.config import load_config

TRAIN_ARGS = {"test_fraction": 0.3, "seed": 42, "trees": 40, "max_depth": 4, "learning_rate": 0.15, "bins": 32}


def export_training_files(world: Path) -> dict[str, Path]:
    """Each party, from its own store only: features of its linked customers, keyed by link id.

    The bank keeps the customers with a new loan and adds the label ``default``.
    """
    as_of = load_config()["time"]["snapshot_date"]
    folder = world / "train"
    folder.mkdir(exist_ok=True)
    bank = open_store(world / "bank.duckdb", read_only=True)
    try:
        con = bank.analytics(["link_customers"])
        con.register("_features", bank_features(bank, as_of))
        con.register("_labels", application_labels(bank, as_of))
        table = con.sql("""SELECT l.link_id, f.* EXCLUDE (client_id), CAST(b.default_90_12m AS INTEGER) AS "default"
                           FROM link_customers l JOIN _features f ON f.client_id = l.local_id
                           JOIN _labels b ON b.client_id = l.local_id ORDER BY l.link_id""").to_arrow_table()
    finally:
        bank.close()
    pq.write_table(table, folder / "bank.parquet")
    market = open_store(world / "market.duckdb", read_only=True)
    try:
        con = market.analytics(["link_customers"])
        con.register("_features", market_features(market, as_of))
        table = con.sql("""SELECT l.link_id, f.* EXCLUDE (user_id) FROM link_customers l
                           JOIN _features f ON f.user_id = l.local_id ORDER BY l.link_id""").to_arrow_table()
    finally:
        market.close()
    pq.write_table(table, folder / "market.parquet")
    return {"bank": folder / "bank.parquet", "market": folder / "market.parquet"}


def bank_alone_auc(bank_file: Path, test_ids: list[str], args: dict) -> float:
    """The same algorithm on the bank's own features only, same rows, same split."""
    data = read_party_file(bank_file, "link_id", "default")
    test = np.isin(np.array(data.ids), np.array(test_ids))
    model = HistBoostingClassifier(n_trees=args["trees"], max_depth=args["max_depth"],
                                   learning_rate=args["learning_rate"], bins=args["bins"], seed=args["seed"])
    model.fit(data.X[~test], data.y[~test])
    return roc_auc(data.y[test], model.predict_proba(data.X[test])[:, 1])

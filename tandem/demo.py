"""The main job on a world: link the two sides, export each side's features keyed by link id,
train the federated model, and compare it with what the bank can do alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tandem.features.rows import rows
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.federated import read_party_file
from tandem.learn.metrics import roc_auc
from tandem.store import open_store
from tandem.world.config import load_config

# the Insight step: questions the partnership asks of both databases (docs/privacy.md, insight/1)
INSIGHT_QUERIES = """
[[query]]
name = "Average check at the marketplace by the bank's income band"
group_by = "bank.income_band"
measures = ["mean(market.avg_check)"]

[[query]]
name = "Category popularity among the bank's affluent and premium clients"
group_by = "market.top_category"
measures = ["count"]
where = ["bank.segment in ['affluent', 'premium']"]

[[query]]
name = "Share of card spend going to the marketplace, by delivery region"
group_by = "market.region"
measures = ["share(bank.card_spend_marketplace, bank.card_spend)"]

[[query]]
name = "Cross-border parcels a 200 EUR duty-free threshold would add (now 500 EUR), by income band"
group_by = "bank.income_band"
measures = ["sum(market.cross_border_newly_dutiable)", "sum(market.cross_border_over_threshold)"]
params = {duty_free_eur = 500, new_duty_free_eur = 200}
"""

TRAIN_ARGS = {"test_fraction": 0.3, "seed": 42, "trees": 40, "max_depth": 4, "learning_rate": 0.15, "bins": 32}


def export_training_files(world: Path, entity: str = "customers") -> dict[str, Path]:
    """Each party, from its own store only: features of its linked customers (or sellers), keyed by
    link id. The bank keeps those with a new loan and adds the label ``default``."""
    as_of = load_config()["time"]["snapshot_date"]
    folder = world / "train" / entity if entity != "customers" else world / "train"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for party in ("bank", "market"):
        store = open_store(world / f"{party}.duckdb", read_only=True)
        try:
            table = rows(store, party, entity, as_of, labels=party == "bank")
        finally:
            store.close()
        out[party] = folder / f"{party}.parquet"
        pq.write_table(table.drop(["local_id"]), out[party])
    return out


def bank_alone_auc(bank_file: Path, test_ids: list[str], args: dict) -> float:
    """The same algorithm on the bank's own features only, same rows, same split."""
    data = read_party_file(bank_file, "link_id", "default")
    test = np.isin(np.array(data.ids), np.array(test_ids))
    model = HistBoostingClassifier(n_trees=args["trees"], max_depth=args["max_depth"],
                                   learning_rate=args["learning_rate"], bins=args["bins"], seed=args["seed"])
    model.fit(data.X[~test], data.y[~test])
    return roc_auc(data.y[test], model.predict_proba(data.X[test])[:, 1])

"""The main job on a world: link the two sides, export each side's features keyed by link id,
train the federated model, compare it with what the bank can do alone, then decide, offer and
ask joint questions (``run_demo``, the ``tandem demo`` command)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tandem.atomic import write_atomically
from tandem.console import console, node_progress, progress_bar, progress_bars, table, tree_progress
from tandem.errors import InputError
from tandem.features.rows import rows
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.metrics import roc_auc
from tandem.learn.options import TrainingOptions
from tandem.learn.party_file import read_party_file
from tandem.parties import ENTITIES, PARTIES
from tandem.printers import (
    print_decide_burst,
    print_insight,
    print_link_results,
    print_offers,
    print_propensity,
    print_scorecard_points,
    print_world_summary,
)
from tandem.report.training_report import write_training_report
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
    for party in PARTIES:
        store = open_store(world / f"{party}.duckdb", read_only=True)
        try:
            table = rows(store, party, entity, as_of, labels=party == "bank")
        finally:
            store.close()
        out[party] = folder / f"{party}.parquet"
        pq.write_table(table.drop(["local_id"]), out[party])
    return out


def bank_alone_auc(bank_file: Path, test_ids: list[str], args: dict) -> float:
    """The same algorithm on the bank's own features only, same rows, same split (``args``: training
    options by name, the others at their defaults)."""
    data = read_party_file(bank_file, "link_id", "default")
    test = np.isin(np.array(data.ids), np.array(test_ids))
    o = TrainingOptions.from_args(args)
    model = HistBoostingClassifier(
        n_trees=o.trees, max_depth=o.max_depth, learning_rate=o.learning_rate, bins=o.bins, seed=o.seed
    )
    y = data.y
    if y is None:
        raise InputError(f"{bank_file}: no label column 'default'")
    model.fit(data.X[~test], y[~test])
    return roc_auc(y[test], model.predict_proba(data.X[test])[:, 1])


def run_demo(persons: int, seed: int, out: Path) -> None:
    """``tandem demo``: make a world, show its summary and what joining the two sides is worth:
    link, train, decide, offer, insight, each between two node processes."""
    from tandem.learn.local import train_local
    from tandem.link.local import link_world
    from tandem.world.generate import generate_world

    console.rule("[bold]Tandem demo")
    with progress_bar("world") as update:
        summary = generate_world(persons, seed, out, progress=update)
    print_world_summary(summary, out)
    console.rule("[bold]Link: bank and marketplace nodes, private set intersection over mutual TLS")
    with progress_bars(list(PARTIES)) as update:
        links = link_world(out, entities=list(ENTITIES), count_only=False, on_event=node_progress(update))
    print_link_results({"bank": links["bank"]})
    console.rule("[bold]Learn: federated gradient boosting (SecureBoost, Okamoto-Uchiyama 2048)")
    files = export_training_files(out)
    with progress_bar("train") as update:
        update("linking rows and training", 0.05)
        trained = train_local(
            files,
            "link_id",
            "bank",
            "default",
            TrainingOptions.from_args(TRAIN_ARGS),
            out / "train",
            on_event=tree_progress(update, 0.05, 0.95),
        )
        result = trained["bank"]
    alone = bank_alone_auc(files["bank"], result.test_ids, TRAIN_ARGS)
    report = write_training_report(out / "train" / "report.html", result, {"AUC, bank alone": alone})
    fed = result.metrics["auc"]
    console.print(
        table(
            f"Default model on {result.n_test:,} held-out shared borrowers (test AUC)",
            ["model", "AUC"],
            [
                ["bank alone", alone],
                ["bank + marketplace, federated", fed],
                ["gain", fed - alone],
                [
                    "plaintext ceiling: bank alone / joint (world truth)",
                    f"{summary['auc_bank_only']} / {summary['auc_joint']}",
                ],
            ],
        )
    )
    console.print(
        f"\nThe marketplace's behaviour lifts the bank's default model from [bold]{alone:.3f}[/] to "
        f"[bold]{fed:.3f}[/] AUC without either side seeing the other's rows "
        f"({result.seconds_per_tree} s per tree).\nModel report: [bold]{report}[/]"
    )
    _demo_scorecard(out, files, fed)
    console.rule("[bold]Decide: installments at checkout and seller credit lines, online")
    configs = _demo_decide(out, {**result.to_json(), "market": trained["market"].to_json()})
    console.rule("[bold]Offer: the next best offer for each shared client, gated by solvency")
    _demo_offers(out, configs)
    console.rule("[bold]Insight: joint figures with minimum group sizes and differential privacy")
    _demo_insight(out)


def _demo_scorecard(world: Path, files: dict[str, Path], boosted_auc: float) -> None:
    """The scorecard a credit committee signs, fitted on the same rows beside the boosted model."""
    from tandem.learn.scorecard.job import STEPS, options_json
    from tandem.learn.scorecard.local import scorecard_local
    from tandem.learn.scorecard.options import BinningOptions, ScorecardOptions
    from tandem.learn.scorecard.points import Scaling
    from tandem.report.scorecard_report import write_scorecard_report
    from tandem.report.scorecard_tables import points_rows

    console.rule("[bold]Learn: federated scorecard (WoE binning, IV selection, logistic regression, points)")
    opts = ScorecardOptions()
    training = TrainingOptions.from_args({k: TRAIN_ARGS[k] for k in ("test_fraction", "seed")})
    with progress_bar("scorecard") as update:
        update("linking rows, binning and fitting", 0.05)
        results = scorecard_local(
            files, "link_id", "bank", "default", training, options_json(BinningOptions(), opts),
            world / "scorecard", on_event=tree_progress(update, 0.05, 0.95, STEPS),
        )  # fmt: skip
    active = results["bank"]
    model = json.loads(Path(active["model_path"]).read_text())
    scaling = Scaling.of(opts)
    points = points_rows(model, scaling)
    report = write_scorecard_report(world / "scorecard" / "report.html", model, active, scaling)
    auc = active["metrics"]["auc"]
    console.print(
        table(
            f"Default model on {active['n_test']:,} held-out shared borrowers (test AUC)",
            ["model", "AUC"],
            [["boosted trees (SecureBoost)", boosted_auc], ["scorecard", auc], ["difference", auc - boosted_auc]],
        )
    )
    print_scorecard_points(points, "bank")
    console.print(
        f"{active['n_features_selected']} of {active['n_features_in']} features selected by IV, correlation and "
        f"VIF; fitted in {active['train_seconds']} s.\nScorecard report: [bold]{report}[/]"
    )


def _demo_insight(world: Path) -> None:
    """A few questions only both databases together can answer, asked between the two nodes."""
    from tandem.insight.local import insight_world
    from tandem.insight.query import load_queries
    from tandem.report.insight_report import write_insight_report

    path = world / "insight" / "queries.toml"
    write_atomically(path, INSIGHT_QUERIES.encode())
    with progress_bars(list(PARTIES)) as update:
        results = insight_world(world, load_queries(path), on_event=node_progress(update))
    for r in results:
        print_insight(r)
    report = write_insight_report(world / "insight" / "report.html", results, "Insight: the demo world")
    spent = sum(r.query.epsilon for r in results)
    console.print(
        f"No figure covers fewer than 50 shared customers and each carries noise; the queries spent "
        f"ε {spent:g} of each node's monthly budget (`tandem insight budget {world}`).\n"
        f"Insight report: [bold]{report}[/]"
    )


def _demo_decide(world: Path, customer_model: dict) -> dict[str, Path]:
    """Train the seller model, start both decision services and send them a burst of requests."""
    from tandem.decide.local import Service, burst, train_models, write_decide_configs

    with progress_bar("seller model") as update:
        update("training the federated seller model", 0.1)
        models = {"customers": customer_model, **train_models(world, ["sellers"])}
        update("seller model trained", 1.0)
    paths, key = write_decide_configs(world, models)
    bank, market = Service(paths["bank"]), Service(paths["market"])
    try:
        bank.wait_ready()
        market.wait_ready()
        with progress_bar("requests") as update:
            update("a burst of checkouts and seller applications", 0.1)
            stats = burst(world, market.api, key)
            update("done", 1.0)
    finally:
        bank.stop()
        market.stop()
    print_decide_burst(stats)
    console.print(f"Every decision is in the bank's store (table decisions); configs: {paths['bank'].parent}")
    return paths


def _demo_offers(world: Path, configs: dict[str, Path]) -> None:
    """Train a propensity model per product, decide every shared client's offers in batch and replay
    the held-out wave (the marketplace's decision service answers the bank's requests)."""
    from tandem.decide.local import Service
    from tandem.offers.batch import offers_portfolio
    from tandem.offers.catalog import load_catalog
    from tandem.offers.local import add_offers_sections
    from tandem.offers.train import train_propensity

    with progress_bar("propensity") as update:
        trained = train_propensity(world, load_catalog(), progress=update)
    print_propensity(trained)
    add_offers_sections(configs, trained["manifests"])
    market = Service(configs["market"])
    try:
        market.wait_ready()
        with progress_bar("offers") as update:
            result = offers_portfolio(str(configs["bank"]), update, report=world / "offers" / "report.html")
    finally:
        market.stop()
    print_offers(result)
    s = {r["strategy"]: r for r in result["evaluation"].get("strategies", [])}
    if s:
        console.print(
            f"\nOffering each client what both sides' behaviour points to: [bold]"
            f"{s['federated']['acceptance']:.1%}[/] of top-1 offers accepted, {s['federated']['lift']:.1f}x "
            f"random targeting ({s['random']['acceptance']:.1%}); the bank alone: "
            f"{s['bank only']['acceptance']:.1%}."
        )

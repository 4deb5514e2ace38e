"""Per-product propensity models: the federated booster on both sides' features against the bank's
historic campaign responses (label ``responded``), over mutual TLS between the marketplace's node
(its own process) and the bank's (in the process of the bank's command).

Each party exports its own rows keyed by link id from its own store; the bank's rows of a
product are the linked clients its campaigns of that product contacted before the held-out
wave. Two of the bank's features are left out: ``campaign_response_rate`` (it is computed over
every campaign, the ones being predicted included, so it would leak the label) and the
``app_*`` features (the loan applied for after the campaigns).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tandem.errors import TandemError
from tandem.features.rows import rows
from tandem.offers.catalog import Catalog
from tandem.offers.history import holdout_start, training_labels
from tandem.offers.models import write_manifest
from tandem.parties import PARTIES
from tandem.store import open_store

ARGS = {
    "test_fraction": 0.2,
    "seed": 42,
    "trees": 15,
    "max_depth": 3,
    "learning_rate": 0.25,
    "bins": 16,
    "min_child_weight": 5.0,
}
LABEL = "responded"


def bank_columns(names: list[str]) -> list[str]:
    """The bank's features a propensity model may use (see the module docstring)."""
    return [n for n in names if n != "campaign_response_rate" and not n.startswith("app_")]


def bank_rows(store, as_of: date) -> pa.Table:
    """``link_id``, ``local_id`` and the propensity features of every linked client."""
    table = rows(store, "bank", "customers", as_of)
    return table.select(["link_id", "local_id"] + bank_columns(table.column_names[2:]))


def export_propensity_files(
    world: Path, catalog: Catalog, folder: Path, as_of: date, holdout_from: date | None = None
) -> tuple[dict[str, dict[str, Path]], date]:
    """Each party's training file per product (the marketplace's is the same for all): the bank's
    linked clients its campaigns of the product contacted before the held-out wave, with the label.
    Returns ``({product: {"bank": file, "market": file}}, first day held out)``."""
    bank = open_store(world / "bank.duckdb", read_only=True)
    files = {}
    try:
        start = holdout_start(bank, holdout_from)
        labelled = {p.key: training_labels(bank, p.key, start) for p in catalog.customer_products}  # all, first
        features = bank_rows(bank, as_of)
        market = open_store(world / "market.duckdb", read_only=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows(market, "market", "customers", as_of).drop(["local_id"]), folder / "market.parquet")
        finally:
            market.close()
        for product in catalog.customer_products:
            labels = labelled[product.key]
            hit = pc.is_in(features.column("local_id"), labels.column("client_id"))
            mine = features.filter(hit)
            at = {cid: r for cid, r in zip(labels.column("client_id").to_pylist(), labels.column(LABEL).to_pylist())}
            y = np.array([at[c] for c in mine.column("local_id").to_pylist()], dtype=np.int64)
            path = folder / product.key / "bank.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(mine.drop(["local_id"]).append_column(LABEL, pa.array(y)), path)
            files[product.key] = {"bank": path, "market": folder / "market.parquet"}
    finally:
        bank.close()
    return files, start


def train_propensity(
    world: Path,
    catalog: Catalog,
    args: dict | None = None,
    as_of: date | None = None,
    holdout_from: date | None = None,
    parallel: int = 2,
    timeout_s: float = 120.0,
    progress: Callable[[str, float], None] = lambda what, fraction: None,
) -> dict:
    """Train one federated propensity model per retail product of ``catalog`` on a linked world;
    write each party's manifest (``world/nodes/offers-{bank,market}.json``).

    The products are shared out over ``parallel`` pairs of nodes that train side by side (one
    pair's protocol leaves a core idle while the other party works). Returns ``{"manifests":
    {party: path}, "holdout_from": date, "products": {product: the label holder's training result
    (metrics, model path, test ids and scores)}}``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tandem.devcluster import world_as_of

    args = args or ARGS
    as_of = as_of or world_as_of(world) or date.today()
    workdir = world / "propensity"
    files, start = export_propensity_files(world, catalog, workdir, as_of, holdout_from)
    products = [p.key for p in catalog.customer_products]
    groups = [products[i::parallel] for i in range(min(parallel, len(products)))]
    trees = {p: 0.0 for p in products}

    def on_tree(product: str, what: str, fraction: float) -> None:
        trees[product] = fraction
        progress(f"{product}: {what}", sum(trees.values()) / len(products))

    with ThreadPoolExecutor(len(groups)) as pool:
        parts = pool.map(
            lambda g: _train_group(files, groups[g], args, workdir / f"nodes-{g}", timeout_s, on_tree),
            range(len(groups)),
        )
        trained = {p: r for part in parts for p, r in part.items()}
    progress("done", 1.0)
    results = {p: {**trained[p]["bank"], "bank_file": str(files[p]["bank"])} for p in products}
    models = {party: {p: trained[p][party]["model_path"] for p in products} for party in PARTIES}
    metrics = {
        k: {
            "auc": r["metrics"]["auc"],
            "n_train": r["n_train"],
            "n_test": r["n_test"],
            "seconds_per_tree": r["seconds_per_tree"],
        }
        for k, r in results.items()
    }
    manifests = {
        "bank": write_manifest(
            world / "nodes" / "offers-bank.json", "bank", models["bank"], args=args, holdout_from=start, metrics=metrics
        ),
        "market": write_manifest(world / "nodes" / "offers-market.json", "market", models["market"]),
    }
    return {"manifests": manifests, "holdout_from": start, "products": results}


def _train_group(files: dict, products: list[str], args: dict, folder: Path, timeout_s: float, on_tree) -> dict:
    """Train ``products`` one after another: the marketplace's node is its own process serving every
    session; the bank's node runs in this process (it is the bank's command) over mutual TLS."""
    from tandem.devcluster import node_configs, serving
    from tandem.learn.options import TrainingOptions
    from tandem.learn.party_file import read_party_file
    from tandem.node import Node
    from tandem.node_config import load_node_config

    configs = node_configs(
        folder, {"bank": "bank.duckdb", "market": "market.duckdb"}, {"bank": "bank", "market": "bank"}, timeout_s
    )
    market_args = ["--data", str(Path(files[products[0]]["market"]).resolve()), "--id", "link_id"]
    options = TrainingOptions.from_args(args)
    bank, current = None, [products[0]]

    def on_event(e: dict) -> None:
        if e.get("event") == "progress" and e.get("what", "").startswith("tree"):
            on_tree(current[0], e["what"], e["fraction"])

    with serving(configs, {"market": market_args}) as procs:
        market = procs["market"]
        try:
            bank = Node(load_node_config(configs["bank"]), events=on_event)
            bank.start()
            out = {}
            for product in products:
                current[0] = product
                bank.train_data = read_party_file(files[product]["bank"], "link_id", LABEL)
                try:
                    result = bank.train(["market"], options.request_fields(), options.he, options.key_bits)
                except TandemError as exc:
                    raise TandemError(
                        f"{product}: {exc}"
                        + (f" (market node: {market.error()})" if market.proc.poll() not in (None, 0) else "")
                    ) from None
                out[product] = {"bank": result, "market": _passive_result(market, result["model_path"], timeout_s)}
            return out
        finally:
            if bank is not None:
                bank.close()


def _passive_result(market, active_model: str, timeout_s: float) -> dict:
    """The marketplace node's result event for the model the bank just saved (same model id)."""
    import time

    model_id = Path(active_model).name.split("-")[0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for e in list(market.events):
            if e.get("event") == "result" and Path(e.get("model_path", "")).name.startswith(f"{model_id}-"):
                return e
        if market.proc.poll() is not None:
            break
        time.sleep(0.02)
    raise TandemError(f"market node: no model {model_id} saved ({market.error()})")

"""The ``tandem`` command."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from tandem.atomic import write_atomically
from tandem.console import console, err_console, progress_bar, progress_bars, table
from tandem.errors import InputError, TandemError
from tandem.parties import PARTIES

app = typer.Typer(
    help="Tandem: a bank and a marketplace working on their shared customers without sharing raw rows.\n\n"
         "Start with `tandem demo`, or `tandem world` to make a synthetic bank + marketplace world.",
    no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
)
store_app = typer.Typer(help="Check a party store, import files into it, copy it to another database.",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")
insight_app = typer.Typer(help="Joint figures over both parties' data with minimum group sizes and differential "
                               "privacy: ask them, list the fields they may use, read a node's privacy budget.",
                          no_args_is_help=True)
app.add_typer(insight_app, name="insight")


# training options shared by `tandem train` and `tandem node --train`
TestFraction = Annotated[float, typer.Option(help="Share of linked rows held out for testing.")]
Seed = Annotated[int, typer.Option(help="Seed of the train/test split and the binning.")]
Trees = Annotated[int, typer.Option(help="Number of trees.")]
MaxDepth = Annotated[int, typer.Option(help="Depth of each tree.")]
LearningRate = Annotated[float, typer.Option(help="Shrinkage per tree.")]
Bins = Annotated[int, typer.Option(help="Bins per feature, the missing-value bin included (3..256).")]
L2 = Annotated[float, typer.Option("--l2", help="L2 regularisation of leaf values (lambda).")]
MinChildWeight = Annotated[float, typer.Option(help="Smallest hessian sum a child may have.")]
Goss = Annotated[bool, typer.Option("--goss", help="Gradient-based one-side sampling: grow each tree on the rows "
                                    "with the largest gradients plus a random share of the rest (faster).")]
GossTop = Annotated[float, typer.Option(help="GOSS: share of rows kept by largest |gradient|.")]
GossOther = Annotated[float, typer.Option(help="GOSS: share of rows sampled from the rest.")]
EarlyStopping = Annotated[int, typer.Option(help="Stop after this many trees without a better validation AUC "
                                            "(0: off); the best number of trees is kept.")]
ValidationFraction = Annotated[float, typer.Option(help="Share of training rows held out for early stopping.")]
He = Annotated[str, typer.Option("--he", help="Homomorphic encryption: ou (Okamoto-Uchiyama) or paillier.")]
KeyBits = Annotated[int, typer.Option(help="Key size of the homomorphic encryption, in bits.")]
FirstTreeActiveOnly = Annotated[bool, typer.Option(
    "--first-tree-active-only", help="Grow the first tree on the label holder's features only (narrows "
    "SecureBoost's instance-space leak; see docs/privacy.md).")]


def _party(value: str) -> str:
    if value not in PARTIES:
        raise InputError(f"--party must be one of {', '.join(PARTIES)}, got '{value}'")
    return value


@app.command()
def world(
    persons: int = typer.Option(..., "--persons", "-n", help="Number of persons in the world (bank clients, "
                                "marketplace users or both)."),
    seed: int = typer.Option(1, help="Random seed; the same seed gives the same tables."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write bank.duckdb, market.duckdb, truth.parquet "
                             "and summary.json into."),
    config: Optional[Path] = typer.Option(None, help="TOML file overriding the world calibration."),
    ceiling: bool = typer.Option(True, help="Also train the plaintext LightGBM ceiling (bank-only vs joint AUC)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Generate a synthetic bank + marketplace world with ground truth."""
    from tandem.world.generate import generate_world

    with progress_bar("world") as update:
        summary = generate_world(persons, seed, out, config=config, progress=update, evaluate=ceiling)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, out)


@app.command()
def demo(
    persons: int = typer.Option(100_000, help="Size of the demo world."),
    seed: int = typer.Option(7, help="Random seed."),
    out: Path = typer.Option(Path("demo-world"), help="Where the demo world is written."),
):
    """The main job: make a world, show its summary and what joining the two sides is worth."""
    from tandem.world.generate import generate_world

    from tandem.demo import TRAIN_ARGS, bank_alone_auc, export_training_files
    from tandem.learn.local import train_local
    from tandem.link.local import link_world

    console.rule("[bold]Tandem demo")
    with progress_bar("world") as update:
        summary = generate_world(persons, seed, out, progress=update)
    _print_summary(summary, out)
    console.rule("[bold]Link: bank and marketplace nodes, private set intersection over mutual TLS")
    with progress_bars(["bank", "market"]) as update:
        links = link_world(out, entities=["customers", "sellers"], count_only=False,
                           on_event=lambda n, e: e.get("event") == "progress" and update(n, e["what"], e["fraction"]))
    _print_link_result({"bank": links["bank"]})
    console.rule("[bold]Learn: federated gradient boosting (SecureBoost, Okamoto-Uchiyama 2048)")
    files = export_training_files(out)
    with progress_bar("train") as update:
        update("linking rows and training", 0.05)
        trained = train_local(files, "link_id", "bank", "default", TRAIN_ARGS, out / "train", on_event=lambda n, e: (
            e.get("event") == "progress" and e["what"].startswith("tree")
            and update(e["what"], 0.05 + 0.95 * e["fraction"])))
        result = trained["bank"]
    alone = bank_alone_auc(files["bank"], result["test_ids"], TRAIN_ARGS)
    report = _model_report(out / "train" / "report.html", result, {"AUC, bank alone": alone})
    fed = result["metrics"]["auc"]
    console.print(table(f"Default model on {result['n_test']:,} held-out shared borrowers (test AUC)",
                        ["model", "AUC"], [["bank alone", alone], ["bank + marketplace, federated", fed],
                                           ["gain", fed - alone],
                                           ["plaintext ceiling: bank alone / joint (world truth)",
                                            f"{summary['auc_bank_only']} / {summary['auc_joint']}"]]))
    console.print(f"\nThe marketplace's behaviour lifts the bank's default model from [bold]{alone:.3f}[/] to "
                  f"[bold]{fed:.3f}[/] AUC without either side seeing the other's rows "
                  f"({result['seconds_per_tree']} s per tree).\nModel report: [bold]{report}[/]")
    console.rule("[bold]Decide: installments at checkout and seller credit lines, online")
    configs = _demo_decide(out, {**result, "market": trained["market"]})
    console.rule("[bold]Offer: the next best offer for each shared client, gated by solvency")
    _demo_offers(out, configs)
    console.rule("[bold]Insight: joint figures with minimum group sizes and differential privacy")
    _demo_insight(out)


def _demo_insight(world: Path) -> None:
    """A few questions only both databases together can answer, asked between the two nodes."""
    from tandem.demo import INSIGHT_QUERIES
    from tandem.insight.local import insight_world
    from tandem.insight.query import load_queries
    from tandem.report.insight_report import write_insight_report

    path = world / "insight" / "queries.toml"
    write_atomically(path, INSIGHT_QUERIES.encode())
    with progress_bars(["bank", "market"]) as update:
        results = insight_world(world, load_queries(path), on_event=lambda n, e: e.get("event") == "progress"
                                and update(n, e["what"], e["fraction"]))
    for r in results:
        _print_insight(r)
    report = write_insight_report(world / "insight" / "report.html", results, "Insight: the demo world")
    spent = sum(r.query.epsilon for r in results)
    console.print(f"No figure covers fewer than 50 shared customers and each carries noise; the queries spent "
                  f"ε {spent:g} of each node's monthly budget (`tandem insight budget {world}`).\n"
                  f"Insight report: [bold]{report}[/]")


def _demo_decide(world: Path, customer_model: dict) -> dict[str, Path]:
    """Train the seller model, start both decision services and send them a burst of requests."""
    from tandem.decide.local import burst, train_models, Service, write_decide_configs

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
    for kind, s in stats.items():
        console.print(table(f"{s['requests']:,} {kind} requests through the marketplace gateway to the bank",
                            ["measure", "value"], [
            *[[f"{d}", f"{n:,} ({n / max(1, s['requests']):.1%})"] for d, n in s["decisions"].items()],
            ["PD p10 / p50 / p90", " / ".join(f"{q:.3f}" for q in s["pd_quantiles"])],
            ["latency p50 / p95 / p99 (ms)", " / ".join(f"{q:.1f}" for q in s["latency_ms"])],
            ["errors", s["errors"]]]))
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
    _print_propensity(trained)
    add_offers_sections(configs, trained["manifests"])
    market = Service(configs["market"])
    try:
        market.wait_ready()
        with progress_bar("offers") as update:
            result = offers_portfolio(str(configs["bank"]), update, report=world / "offers" / "report.html")
    finally:
        market.stop()
    _print_offers(result)
    s = {r["strategy"]: r for r in result["evaluation"].get("strategies", [])}
    if s:
        console.print(f"\nOffering each client what both sides' behaviour points to: [bold]"
                      f"{s['federated']['acceptance']:.1%}[/] of top-1 offers accepted, {s['federated']['lift']:.1f}x "
                      f"random targeting ({s['random']['acceptance']:.1%}); the bank alone: "
                      f"{s['bank only']['acceptance']:.1%}.")


def _print_summary(s: dict, out: Path) -> None:
    rows = [[f"bank.{t}", n] for t, n in s["tables"]["bank"].items()]
    rows += [[f"market.{t}", n] for t, n in s["tables"]["market"].items()]
    console.print(table(f"World in {out} ({s['persons']:,} persons, seed {s['seed']}, {s['seconds']} s)",
                        ["table", "rows"], rows))
    o, c = s["overlap"], s["consent_rates"]
    console.print(table("Overlap, consent and outcomes", ["measure", "value"], [
        ["bank clients", o["bank_clients"]], ["marketplace users", o["market_users"]],
        ["bank clients who use the marketplace", o["shared_persons"]],
        ["  share of bank clients", o["share_of_bank_clients_on_market"]],
        ["consent rate, bank", c["bank"]], ["consent rate, marketplace", c["market"]],
        ["shared and both consented", o["both_consented"]], ["  of which linkable by phone or e-mail", o["matchable"]],
        ["sellers / at the bank / linkable by INN", f"{o['sellers']:,} / {o['sellers_at_bank']:,} / "
                                                   f"{o['sellers_matchable']:,}"],
        ["application loans", s["application_loans"]], ["default rate (90+ DPD in 12 months)", s["default_rate"]],
    ]))
    ids = s["identifiers"]
    console.print(table("Identifiers that do not normalise", ["field", "valid", "invalid (reasons)"], [
        [k.replace("_", " "), f"{v['valid']:,}/{v['total']:,}",
         ", ".join(f"{n:,} {r}" for r, n in v["invalid"].items()) or "—"] for k, v in ids.items()
    ]))
    if s.get("auc_joint") is not None:
        console.print(table("Plaintext ceiling: LightGBM test AUC, joined by the ground truth",
                            ["features", "AUC"], [["bank only", s["auc_bank_only"]],
                                                  ["bank + marketplace", s["auc_joint"]],
                                                  ["gain", s["auc_gain"]]]))


@store_app.command("check")
def store_check(
    target: str = typer.Argument(..., help="DuckDB file or SQLAlchemy URL."),
    party: str = typer.Option(..., help="Whose schema to check against: bank or market."),
):
    """Check that a store has every table and column its party needs, with the right types."""
    from tandem.store import open_store
    from tandem.store.base import check_schema
    from tandem.store.party_schema import TABLES

    store = open_store(target, read_only=not _is_url(target))
    try:
        check_schema(store, TABLES[_party(party)])
        rows = [[spec.name, store.query(f'SELECT count(*) AS n FROM "{spec.name}"').column(0)[0].as_py()]
                for spec in TABLES[party]]
    finally:
        store.close()
    console.print(table(f"{target}: schema OK for {party}", ["table", "rows"], rows))


@store_app.command("import")
def store_import(
    target: str = typer.Argument(..., help="DuckDB file or SQLAlchemy URL to import into."),
    file: Path = typer.Argument(..., help="Parquet or CSV file."),
    table_name: str = typer.Option(..., "--table", help="Table to (re)place."),
    party: Optional[str] = typer.Option(None, help="Check the file against this party's schema for the table."),
):
    """Import a Parquet or CSV file as a table (replaces the table atomically)."""
    from tandem.store import open_store
    from tandem.store.base import import_file
    from tandem.store.party_schema import spec

    table_spec = None
    if party is not None:
        try:
            table_spec = spec(_party(party), table_name)
        except KeyError:
            raise InputError(f"--table: {party} has no table '{table_name}'") from None
    store = open_store(target, create=True)
    try:
        n = import_file(store, file, table_name, table_spec)
    finally:
        store.close()
    console.print(f"imported {n:,} rows from {file} into {target} table '{table_name}'")


@store_app.command("copy")
def store_copy(
    source: str = typer.Argument(..., help="Store to copy from."),
    dest: str = typer.Argument(..., help="Store to copy into (DuckDB file or SQLAlchemy URL)."),
    party: str = typer.Option(..., help="Whose tables to copy: bank or market."),
):
    """Copy a party's tables from one store to another, in chunks (e.g. a world into PostgreSQL)."""
    from tandem.store import open_store
    from tandem.store.base import check_schema
    from tandem.store.party_schema import TABLES

    specs = TABLES[_party(party)]
    src = open_store(source, read_only=not _is_url(source))
    dst = open_store(dest, create=True)
    try:
        check_schema(src, specs)
        with progress_bar("copy") as update:
            for i, spec in enumerate(specs):
                update(spec.name, i / len(specs))
                dst.write_table(spec.name, src.iter_batches(spec.name, columns=spec.column_names), spec)
            update("done", 1.0)
    finally:
        src.close()
        dst.close()
    console.print(f"copied {len(specs)} {party} tables from {source} to {dest}")


@app.command()
def features(
    store_target: str = typer.Option(..., "--store", help="The party's store (DuckDB file or SQLAlchemy URL)."),
    party: str = typer.Option(..., help="bank or market."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    as_of: Optional[str] = typer.Option(None, help="Snapshot date (YYYY-MM-DD); data before it is used. "
                                        "Default: today."),
):
    """Build a party's model features for its own customers, from its own store."""

    from tandem.features import bank_features, market_features
    from tandem.store import open_store

    day = _date(as_of) if as_of else date.today()
    build = {"bank": bank_features, "market": market_features}[_party(party)]
    store = open_store(store_target, read_only=not _is_url(store_target))
    try:
        result = build(store, day)
    finally:
        store.close()
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(result, buf)
    write_atomically(out, buf.getvalue())
    console.print(f"wrote {result.num_rows:,} rows x {result.num_columns - 1} features to {out}")


@app.command("ids")
def ids_check(
    target: str = typer.Argument(..., help="The party's store."),
    party: str = typer.Option(..., help="bank or market."),
):
    """Normalise the party's phones and e-mails and report what cannot be normalised, and why."""
    from tandem.ids import normalise_emails, normalise_phones
    from tandem.store import open_store

    table_name = {"bank": "clients", "market": "users"}[_party(party)]
    store = open_store(target, read_only=not _is_url(target))
    try:
        data = store.read_table(table_name, ["phone", "email"])
    finally:
        store.close()
    _, phones = normalise_phones(data.column("phone").to_pylist())
    _, emails = normalise_emails(data.column("email").to_pylist())
    rows = []
    for rep in (phones, emails):
        rows.append([rep.kind, rep.valid, rep.n_invalid, "; ".join(
            f"{n:,} {r} (e.g. row {rep.examples[r][0][0]}: {rep.examples[r][0][1]!r})"
            for r, n in rep.invalid.most_common())])
    console.print(table(f"{target} {table_name}", ["identifier", "valid", "invalid", "reasons"], rows))


@app.command()
def certs(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for ca.pem, ca.key and NODE.pem/NODE.key."),
    nodes: list[str] = typer.Argument(..., help="Node names (each certificate's CN), e.g. bank market."),
):
    """Create a development certificate authority (unless OUT has one) and a certificate per node."""
    from tandem.crypto.tls import make_ca, make_node_cert

    try:
        if not (out / "ca.pem").exists():
            make_ca(out)
        for node in nodes:
            make_node_cert(out, node, out / "ca.pem", out / "ca.key")
    except OSError as exc:
        raise InputError(f"{out}: cannot write certificates ({exc.strerror})") from None
    console.print(f"certificates for {', '.join(nodes)} in {out} (CA: {out / 'ca.pem'})")


@app.command()
def node(
    config: Path = typer.Option(..., "--config", "-c", help="The node's TOML config."),
    link: Optional[str] = typer.Option(None, "--link", help="Start a link run with this peer, then exit."),
    entities: str = typer.Option("customers,sellers", help="What to link: customers, sellers or both."),
    count_only: bool = typer.Option(False, "--count-only", help="Learn only the size of the overlap."),
    incremental: bool = typer.Option(False, "--incremental", help="Keep keys and blinded sets so that the next "
                                     "run with this peer only processes new records (see docs/privacy.md)."),
    once: bool = typer.Option(False, "--once", help="Serve one session, then exit (status 1 if it failed)."),
    events: bool = typer.Option(False, "--events", help="Print progress and results as JSON lines."),
    data: Optional[Path] = typer.Option(None, help="CSV or Parquet with this party's rows, for training."),
    id_column: Optional[str] = typer.Option(None, "--id", help="The id column of --data."),
    label: Optional[str] = typer.Option(None, help="The label column of --data (the label holder only)."),
    train: Optional[str] = typer.Option(None, "--train", help="Train with these peers (comma-separated) as the "
                                        "passive parties, then exit."),
    insight: Optional[str] = typer.Option(None, "--insight", help="Run the --query files' insight queries with "
                                          "this peer, then exit."),
    query: list[Path] = typer.Option([], "--query", help="An insight query file (TOML), for --insight."),
    sessions: int = typer.Option(0, "--sessions", help="Serve this many sessions, then exit (0: until stopped)."),
    test_fraction: TestFraction = 0.2,
    seed: Seed = 42,
    trees: Trees = 50,
    max_depth: MaxDepth = 5,
    learning_rate: LearningRate = 0.1,
    bins: Bins = 32,
    l2: L2 = 1.0,
    min_child_weight: MinChildWeight = 1.0,
    goss: Goss = False,
    goss_top: GossTop = 0.2,
    goss_other: GossOther = 0.1,
    early_stopping: EarlyStopping = 0,
    validation_fraction: ValidationFraction = 0.1,
    he: He = "ou",
    key_bits: KeyBits = 2048,
    first_tree_active_only: FirstTreeActiveOnly = False,
):
    """Run a party's node: serve peers over gRPC with mutual TLS, or start a link or training run."""
    from tandem.node import Node, json_events, load_node_config

    cfg = load_node_config(config)
    emit = json_events() if events else None
    train_data = None
    if data is not None:
        from tandem.learn.federated import read_party_file

        if not id_column:
            raise InputError("--data needs --id COLUMN")
        train_data = read_party_file(data, id_column, label)
    n = Node(cfg, emit, train_data)
    try:
        n.start()
        if train:
            from tandem.learn.federated import request_fields

            args = _training_args(locals())
            n.train(train.split(","), request_fields(args), he, key_bits)
            return
        if insight:
            from tandem.insight.query import load_queries

            if not query:
                raise InputError("--insight needs one or more --query FILE")
            n.insight(insight, [q for path in query for q in load_queries(path)])
            return
        if link:
            if events:
                n.link(link, entities.split(","), count_only, incremental)
            else:
                with progress_bar(f"{cfg.name} <-> {link}") as update:
                    n.events = lambda e: e.get("event") == "progress" and update(e["what"], e["fraction"])
                    result = n.link(link, entities.split(","), count_only, incremental)
                _print_link_result({cfg.name: result})
            return
        if not events:
            console.print(f"node {cfg.name} listening on port {n.server.port}; Ctrl-C stops it")
        limit = 1 if once else sessions
        while not (limit and (n.served >= limit or n.failure)):
            n.finished.wait(0.5)
            n.finished.clear()
        if n.failure:
            raise TandemError(n.failure)
    except TandemError as exc:
        if emit:
            emit({"event": "error", "node": cfg.name, "message": str(exc)})
        raise
    finally:
        n.close()


@app.command("link")
def link_cmd(
    world_dir: Path = typer.Option(..., "--world", "-w", help="A world folder (from `tandem world`)."),
    count_only: bool = typer.Option(False, "--count-only", help="Both sides learn only the size of the overlap."),
    incremental: bool = typer.Option(False, "--incremental", help="Keep keys and blinded sets between runs; a "
                                     "later run only processes new records."),
    entities: str = typer.Option("customers,sellers", help="What to link: customers, sellers or both."),
    as_json: bool = typer.Option(False, "--json", help="Print counts per key and time taken as JSON."),
    timeout: float = typer.Option(60.0, help="Seconds a node waits for its peer before giving up."),
):
    """Link a world's bank and marketplace: two nodes, separate processes, mutual TLS on loopback."""
    import time as _time

    from tandem.link.local import link_world

    started = _time.perf_counter()
    with progress_bars(["bank", "market"]) as update:
        def on_event(node_name, event):
            if event.get("event") == "progress":
                update(node_name, event["what"], event["fraction"])

        results = link_world(world_dir, entities=entities.split(","), count_only=count_only, timeout_s=timeout,
                             incremental=incremental, on_event=on_event)
    seconds = round(_time.perf_counter() - started, 2)
    if as_json:
        bank = results["bank"]
        print(json.dumps({"count_only": count_only, "incremental": incremental, "seconds": seconds,
                          "protocol_seconds": bank["seconds"],
                          "entities": {e: {"linked": v["linked"], "consented": v["consented"],
                                           "keys": {k: kv["matched"] for k, kv in v["keys"].items()},
                                           "blinded_sent": {k: kv["blinded_sent"] for k, kv in v["keys"].items()}}
                                       for e, v in bank["entities"].items()}}, indent=2))
    else:
        _print_link_result(results)
        console.print(f"done in {seconds} s")


def _print_link_result(results: dict) -> None:
    for node_name, r in results.items():
        rows = []
        for entity, v in r["entities"].items():
            for key, kv in v["keys"].items():
                rows.append([f"{entity} / {key}", kv["candidates"], kv["matched"], kv["duplicate_records"],
                             sum(kv["invalid"].values())])
            if v["linked"] is not None:
                rows.append([f"{entity} linked", v["consented"], v["linked"], "", ""])
        title = f"{node_name}: {'overlap only' if r['count_only'] else 'links written'} with {r['peer']}"
        console.print(table(title, ["entity / key", "candidates", "matched", "duplicates", "invalid"], rows))


TRAINING_OPTIONS = ("test_fraction", "seed", "trees", "max_depth", "learning_rate", "bins", "l2", "min_child_weight",
                    "goss", "goss_top", "goss_other", "early_stopping", "validation_fraction", "he", "key_bits",
                    "first_tree_active_only")


def _training_args(options: dict) -> dict:
    """The training options of a command (by CLI name), checked: one clear line for a bad value."""
    from tandem.learn.federated import estimator_kwargs, request_fields
    from tandem.learn.rounds import BoostParams
    from tandem.learn.splitting import SplitParams

    args = {k: options[k] for k in TRAINING_OPTIONS}
    if not 0 < args["test_fraction"] < 1 or not 0 < args["validation_fraction"] < 1:
        raise InputError("--test-fraction and --validation-fraction must be between 0 and 1")
    if args["he"] not in ("ou", "paillier"):
        raise InputError(f"--he must be ou or paillier, got '{args['he']}'")
    if not 1024 <= args["key_bits"] <= 4096:
        raise InputError(f"--key-bits must be between 1024 and 4096, got {args['key_bits']}")
    kw = estimator_kwargs(request_fields(args))
    BoostParams(kw["n_trees"], kw["max_depth"], kw["learning_rate"], kw["bins"],
                SplitParams(kw["l2"], kw["min_child_weight"]), goss=kw["goss"],
                early_stopping_rounds=kw["early_stopping_rounds"]).check()
    return args


@app.command("train")
def train_cmd(
    party: list[str] = typer.Option(..., "--party", help="NAME=FILE (CSV or Parquet), once per party."),
    id_column: str = typer.Option(..., "--id", help="The column that identifies a row on every side."),
    label: str = typer.Option(..., help="NAME:COLUMN — the party holding the label and its column."),
    test_fraction: TestFraction = 0.2,
    seed: Seed = 42,
    trees: Trees = 50,
    max_depth: MaxDepth = 5,
    learning_rate: LearningRate = 0.1,
    bins: Bins = 32,
    l2: L2 = 1.0,
    min_child_weight: MinChildWeight = 1.0,
    goss: Goss = False,
    goss_top: GossTop = 0.2,
    goss_other: GossOther = 0.1,
    early_stopping: EarlyStopping = 0,
    validation_fraction: ValidationFraction = 0.1,
    he: He = "ou",
    key_bits: KeyBits = 2048,
    first_tree_active_only: FirstTreeActiveOnly = False,
    metrics_out: Optional[Path] = typer.Option(None, help="Write metrics as JSON here."),
    workdir: Path = typer.Option(Path("tandem-train"), help="Folder for node configs, certificates, models, logs."),
):
    """Link on the id column, train a federated model (SecureBoost) and evaluate it; each party is its own process."""
    from tandem.learn.baselines import pooled_baselines
    from tandem.learn.local import train_local

    files = {}
    for item in party:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--party must look like NAME=FILE, got '{item}'")
        files[name] = Path(file)
    label_party, sep, label_column = label.partition(":")
    if not sep or not label_column:
        raise InputError(f"--label must look like NAME:COLUMN, got '{label}'")
    args = _training_args(locals())
    with progress_bar("train") as update:
        update("linking and training", 0.05)
        results = train_local(files, id_column, label_party, label_column, args, workdir, on_event=lambda n, e: (
            e.get("event") == "progress" and e["what"].startswith("tree")
            and update(e["what"], 0.05 + 0.85 * e["fraction"])))
        update("pooled baselines", 0.9)
        active = results[label_party]
        baselines = pooled_baselines(files, id_column, label_party, label_column, args)
        update("done", 1.0)
    m = active["metrics"]
    report = _model_report(workdir / "report.html", active, baselines)
    metrics = {"auc": m["auc"], "ks": m["ks"], "gini": m["gini"], "brier": m["brier"], **baselines,
               "train_seconds": active["train_seconds"], "seconds_per_tree": active["seconds_per_tree"],
               "bytes_sent": {name: r["bytes_sent"] for name, r in results.items()},
               "n_train": active["n_train"], "n_test": active["n_test"], "deciles": m["deciles"],
               "models": {name: r["model_path"] for name, r in results.items()}, "report": str(report)}
    console.print(table("Federated model (test)", ["measure", "value"], [
        ["AUC (federated)", m["auc"]], ["AUC (same algorithm, pooled)", baselines["auc_plaintext"]],
        ["AUC (XGBoost hist, pooled)", baselines["auc_xgboost"]], ["KS", m["ks"]], ["Gini", m["gini"]],
        ["rows train / test", f"{active['n_train']:,} / {active['n_test']:,}"],
        ["seconds per tree", active["seconds_per_tree"]],
        *[[f"bytes sent by {name}", r["bytes_sent"]] for name, r in results.items()],
    ]))
    console.print(f"model report: {report}")
    if metrics_out:
        write_atomically(metrics_out, json.dumps(metrics, indent=2).encode())
        console.print(f"metrics written to {metrics_out}")


def _model_report(path: Path, active: dict, extra: dict) -> Path:
    """The HTML report of a training run, from the label holder's result and its model file."""
    from tandem.learn import model_io
    from tandem.report.model_report import write_model_report

    m = active["metrics"]
    model = model_io.load(active["model_path"], "active")
    summary = {"AUC": m["auc"], "KS": m["ks"], "Gini": m["gini"], **{k: v for k, v in extra.items()},
               "rows (train)": active["n_train"], "rows (test)": active["n_test"],
               "seconds per tree": active["seconds_per_tree"], "model id": model["model_id"]}
    return write_model_report(path, title=f"Federated model {model['model_id']} ({active['node']} + {active['peer']})",
                              metrics=summary, y=active["test_labels"], score=active["test_scores"],
                              importance=model_io.importance(model))


@app.command()
def serve(config: Path = typer.Option(..., "--config", "-c", help="The node's TOML config, with a [decide] section.")):
    """Run a party's decision service: the bank decides installments and seller credit lines, the
    marketplace's gateway asks it (mutual TLS between nodes, API keys for other clients)."""
    from tandem.decide.serve import serve as run

    run(str(config))


@app.command()
def score(
    config: Path = typer.Option(..., "--config", "-c", help="The bank node's TOML config, with a [decide] section."),
    entity: str = typer.Option("customers", help="customers (pre-approved installment limits) or sellers."),
):
    """Portfolio mode: score every shared customer or seller (federated batch prediction with the
    marketplace's decision service) into the bank's store, table scores_customers / scores_sellers."""
    from tandem.decide.batch import score_portfolio

    if entity not in ("customers", "sellers"):
        raise InputError(f"--entity must be customers or sellers, got '{entity}'")
    with progress_bar("score") as update:
        result = score_portfolio(str(config), entity, update)
    console.print(table(f"{result['rows']:,} {entity} scored into {result['table']} (model {result['model_version']})",
                        ["band", "rows"], [[b, n] for b, n in result["bands"].items()]))


@app.command()
def propensity(
    world_dir: Path = typer.Option(..., "--world", "-w", help="A linked world folder (`tandem link`)."),
    catalog: Optional[Path] = typer.Option(None, help="The offer catalog (TOML; default: the one shipped, "
                                           "tandem/offers/catalog.toml)."),
    holdout_from: Optional[str] = typer.Option(None, help="Campaigns sent on or after this day (YYYY-MM-DD) are "
                                               "held out for evaluation. Default: the latest campaign's day."),
    trees: Trees = 15,                     # the defaults are tandem.offers.train.ARGS
    max_depth: MaxDepth = 3,
    learning_rate: LearningRate = 0.25,
    bins: Bins = 16,
    key_bits: KeyBits = 2048,
):
    """Train a federated propensity model per product of the offer catalog.

    SecureBoost on both sides' features against the bank's campaign responses
    before the held-out wave; each party is its own node process. Writes each
    party's manifest into WORLD/nodes."""
    from tandem.offers.catalog import load_catalog
    from tandem.offers.train import ARGS, train_propensity

    cat = load_catalog(catalog)
    args = {**ARGS, "trees": trees, "max_depth": max_depth, "learning_rate": learning_rate, "bins": bins,
            "key_bits": key_bits}
    _training_args({"l2": 1.0, "goss": False, "goss_top": 0.2, "goss_other": 0.1, "early_stopping": 0,
                    "validation_fraction": 0.1, "he": "ou", "first_tree_active_only": False, **args})
    with progress_bar("propensity") as update:
        result = train_propensity(world_dir, cat, args, holdout_from=_date(holdout_from) if holdout_from else None,
                                  progress=update)
    _print_propensity(result)
    console.print(f"manifests: {result['manifests']['bank']} and {result['manifests']['market']}; point each "
                  "node's \\[offers] models = \"FILE\" at its own, then run `tandem offers`")


def _print_propensity(result: dict) -> None:
    console.print(table(f"Propensity models, trained on the campaigns before {result['holdout_from']} "
                        "(test AUC on held-out contacts of each campaign)", ["product", "rows train / test",
                                                                               "AUC", "s per tree"],
                        [[k, f"{r['n_train']:,} / {r['n_test']:,}", r["metrics"]["auc"], r["seconds_per_tree"]]
                         for k, r in result["products"].items()]))


@app.command()
def offers(
    config: Path = typer.Option(..., "--config", "-c", help="The bank node's TOML config, with \\[decide] and "
                                "\\[offers] sections."),
    report: Optional[Path] = typer.Option(None, help="Write the HTML report here (default: STATE_DIR/"
                                          "offers-report.html)."),
    evaluate: bool = typer.Option(True, help="Replay the held-out campaigns: top-1 acceptance and revenue of the "
                                  "federated propensity models vs random targeting vs the bank alone."),
    holdout_from: Optional[str] = typer.Option(None, help="First day of the held-out campaigns (default: the "
                                               "one the models were trained with)."),
    as_json: bool = typer.Option(False, "--json", help="Print the offer mix and the evaluation as JSON."),
):
    """Next best offers for every shared client, into the bank's store (table offers).

    Products ranked by propensity x value; credit only under the decision
    policy's PD cutoff; within consent, do-not-disturb and the contact limits;
    personalised content from the marketplace for the offers made. Then the
    replay of the held-out campaigns and the HTML report."""
    from tandem.node import load_node_config
    from tandem.offers.batch import offers_portfolio

    out = report or load_node_config(config).state_dir / "offers-report.html"
    with progress_bar("offers") as update:
        result = offers_portfolio(str(config), update, evaluate=evaluate, report=out if evaluate else None,
                                  holdout_from=_date(holdout_from) if holdout_from else None)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_offers(result)


def _print_offers(result: dict) -> None:
    console.print(table(f"Offer mix: {result['clients']:,} shared clients decided into table {result['table']}",
                        ["product", "credit", "clients offered", "as first offer", "mean propensity",
                         "expected value, RUB"],
                        [[m["product"], "yes" if m["credit"] else "no", m["offers"], m["first"], m["mean_propensity"],
                          f"{m['expected_value_rub']:,.0f}"] for m in result["mix"]]))
    console.print(table("Withheld (client x product pairs)", ["reason", "pairs"],
                        [[k.replace("_", " "), v] for k, v in result["withheld"].items()]))
    credit = result["credit"]
    console.print(f"{credit['offers']:,} credit offers, every one with a PD under the policy's cutoff "
                  f"{credit['pd_cutoff']} (highest: {credit['pd_max'] if credit['pd_max'] is not None else '—'})")
    ev = result.get("evaluation")
    if ev and ev.get("strategies"):
        console.print(table(f"Uplift on the held-out campaigns from {ev['holdout_from']} ({ev['contacts']:,} "
                            "contacts, one random product each; replayed on the contacts where the strategy's "
                            "top-1 offer is the product offered)",
                            ["strategy", "contacts replayed", "top-1 acceptance", "95% CI", "lift vs random",
                             "revenue per 1,000 contacts, RUB"],
                            [[s["strategy"], s["contacts"], f"{s['acceptance']:.2%}",
                              f"{s['ci95'][0]:.1%} – {s['ci95'][1]:.1%}", f"{s['lift']:.2f}x",
                              f"{s['revenue_per_1000']:,.0f}"] for s in ev["strategies"]]))
    elif ev:
        console.print(ev.get("note", ""))
    if result.get("report"):
        console.print(f"Offer report: [bold]{result['report']}[/]")


@app.command()
def audit(
    log: Path = typer.Argument(..., help="An audit log (STATE_DIR/audit.jsonl) or a node config (.toml)."),
    last: int = typer.Option(50, help="Show the last N entries (0: all)."),
):
    """Print a node's audit log: every message that left (or reached) the node."""
    from tandem.audit import read_audit

    if log.suffix == ".toml":
        from tandem.node import load_node_config

        log = load_node_config(log).audit_path
    entries, torn = read_audit(log)
    shown = entries[-last:] if last else entries
    rows = [[e["time"], e["direction"], e["peer"], e["protocol"], e["message"], e["bytes"], e["records"],
             e["session"][:8]] for e in shown]
    console.print(table(f"{log}: {len(entries)} entries" + (f" ({torn} torn lines skipped)" if torn else ""),
                        ["time", "dir", "peer", "protocol", "message", "bytes", "records", "session"], rows))
    out_bytes = sum(e["bytes"] for e in entries if e["direction"] == "out")
    console.print(f"sent {out_bytes:,} bytes in {sum(e['direction'] == 'out' for e in entries):,} messages")


@insight_app.command("run")
def insight_run(
    world_dir: Path = typer.Option(..., "--world", "-w", help="A linked world folder (`tandem world`, then "
                                   "`tandem link`)."),
    query_files: list[Path] = typer.Option([], "--query", "-q", help="A query file (TOML, [[query]] tables); "
                                           "may be given more than once."),
    group_by: list[str] = typer.Option([], "--group-by", "-g", help="A group key, e.g. bank.income_band "
                                       "(one query from the command line)."),
    measure: list[str] = typer.Option([], "--measure", "-m", help="count, sum(F), mean(F), share(FLAG) or "
                                      "share(PART, WHOLE); fields of the party without the group keys."),
    where: list[str] = typer.Option([], "--where", help="A filter on either party's field, e.g. "
                                    "\"bank.segment == 'premium'\" or \"market.orders >= 2\"."),
    epsilon: float = typer.Option(1.0, help="Privacy budget the query spends (differential privacy)."),
    min_group_size: int = typer.Option(50, help="Groups with fewer linked customers are never shown."),
    as_of: Optional[str] = typer.Option(None, help="Fields as of this date (default: the world's snapshot)."),
    param: list[str] = typer.Option([], "--param", help="NAME=VALUE, e.g. duty_free_eur=200 "
                                    "(see `tandem insight fields`)."),
    initiator: str = typer.Option("bank", help="The node that asks: bank or market."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the figures here (.csv or .parquet)."),
    report: Optional[Path] = typer.Option(None, help="HTML report (default: WORLD/insight/report.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    budget: float = typer.Option(10.0, help="Development nodes: epsilon per partner and period."),
    refresh: str = typer.Option("monthly", help="Development nodes: daily, weekly, monthly or never."),
    max_epsilon: float = typer.Option(2.0, help="Development nodes: the most one query may spend."),
    timeout: float = typer.Option(60.0, help="Seconds a node waits for its peer before giving up."),
):
    """Ask joint questions of the bank and the marketplace (insight/1).

    Group keys of one party, measures of the other, over their linked customers; groups below the
    minimum size are suppressed and every figure carries differential-privacy noise."""
    from tandem.insight.budget import InsightPolicy
    from tandem.insight.local import insight_world
    from tandem.insight.query import load_queries, parse_query

    queries = [q for path in query_files for q in load_queries(path)]
    if group_by or measure or where:
        params = {}
        for item in param:
            name, sep, value = item.partition("=")
            try:
                params[name.strip()] = float(value)
            except ValueError:
                raise InputError(f"--param must look like NAME=NUMBER, got '{item}'") from None
        raw = {"group_by": group_by, "measures": measure or ["count"], "where": where, "epsilon": epsilon,
               "min_group_size": min_group_size, "params": params}
        queries.append(parse_query({**raw, **({"as_of": as_of} if as_of else {})}, "command line"))
    elif param or as_of:
        raise InputError("--param and --as-of belong to a command-line query (--group-by, --measure)")
    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"--out must end in .csv or .parquet, got '{out}'")
    policy = InsightPolicy.from_section({"budget": budget, "refresh": refresh, "max_epsilon": max_epsilon},
                                        "command line")
    with progress_bars(["bank", "market"]) as update:
        results = insight_world(world_dir, queries, initiator=initiator, policy=policy, timeout_s=timeout,
                                on_event=lambda n, e: e.get("event") == "progress"
                                and update(n, e["what"], e["fraction"]))
    if out is not None:
        _write_insight_table(out, results)
    from tandem.report.insight_report import write_insight_report

    page = write_insight_report(report or world_dir / "insight" / "report.html", results,
                                f"Insight: {world_dir.name} (bank + marketplace)")
    if as_json:
        print(json.dumps([{"query": r.query.name, "query_id": r.query_id, "columns": r.columns, "rows": r.rows(),
                           "suppressed": r.suppressed} for r in results], indent=2))
        return
    for r in results:
        _print_insight(r)
    console.print(f"report: {page}" + (f"; figures: {out}" if out else ""))


def _print_insight(r) -> None:
    from tandem.insight.result import shown

    q = r.query
    note = (f"ε {q.epsilon:g}, groups of at least {q.min_group_size}"
            + ("" if q.noise else ", NO NOISE (test mode)")
            + (f"; {r.suppressed} group(s) suppressed" if r.suppressed else "")
            + (f"; where {'; '.join(f.label for f in q.where)}" if q.where else ""))
    headers = ["±95%" if c.endswith(" ±95%") else c.replace("bank.", "").replace("market.", "").replace("_", " ")
               for c in r.columns]         # short, and wrappable in a narrow terminal
    console.print(table(f"{q.name} ({note})", headers, [[shown(v) for v in row] for row in r.rows()]))


def _write_insight_table(path: Path, results) -> None:
    """All queries' figures in one file (a ``query`` column tells them apart), written atomically."""
    import io

    import pandas as pd

    frames = [r.to_arrow().to_pandas().assign(query=r.query.name, query_id=r.query_id) for r in results]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["query", "query_id"] + [c for c in frame.columns if c not in ("query", "query_id")]]
    buf = io.BytesIO()
    if path.suffix.lower() == ".csv":
        frame.to_csv(buf, index=False)
    else:
        frame.to_parquet(buf, index=False)
    write_atomically(path, buf.getvalue())


@insight_app.command("fields")
def insight_fields():
    """List the fields and parameters an insight query may use.

    Group keys with their labels, numbers with the clamping bounds that set the noise, flags."""
    from tandem.insight.catalog import FIELDS, PARAMS

    rows = [[f.qualified, f.kind, ", ".join(f.labels) if f.kind == "group" else
             f"[{f.bounds[0]:g}, {f.bounds[1]:g}] {f.unit}".strip(), f.doc] for f in FIELDS.values()]
    console.print(table("Insight fields (group keys of one party, measures of the other, filters on either)",
                        ["field", "kind", "labels / bounds", "meaning"], rows, justify_numbers=False))
    console.print(table("Parameters ([query.params] or --param NAME=VALUE)", ["parameter", "default", "meaning"],
                        [[n, d, doc] for n, (d, doc) in PARAMS.items()], justify_numbers=False))


@insight_app.command("budget")
def insight_budget(
    target: Path = typer.Argument(..., help="A node config (.toml) or a world folder (its bank node)."),
):
    """Show a node's privacy-budget ledger and what is left per partner this period."""
    from tandem.insight.budget import Ledger
    from tandem.node import load_node_config

    if target.is_dir():
        target = target / "nodes" / "bank.toml"
    cfg = load_node_config(target)
    ledger = Ledger(cfg.store, cfg.insight)
    rows = ledger.rows().to_pylist()
    console.print(table(f"{cfg.name}: insight queries charged", ["charged at", "peer", "period", "epsilon", "role",
                                                                 "query id"],
                        [[str(r["charged_at"])[:19], r["peer"], r["period"], r["epsilon"], r["role"], r["query_id"]]
                         for r in rows]))
    left = []
    for peer in cfg.peers:
        spent, period, refreshes = ledger.spent(peer)
        left.append([peer, period, spent, cfg.insight.budget - spent, refreshes.isoformat() if refreshes else "never"])
    console.print(table("Privacy budget left (epsilon)", ["peer", "period", "spent", "left", "refreshes on"], left))


def _is_url(target: str) -> bool:
    return "://" in target and not target.startswith("duckdb://")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--as-of must be a date like 2019-01-01, got '{text}'") from None


def main() -> None:
    """Entry point: run the app; errors on bad input print one line and exit 2."""
    try:
        app()
    except TandemError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()

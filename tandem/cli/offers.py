"""`tandem propensity` and `tandem offers`: propensity models and next best offers."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tandem.cli.common import app, parse_date, training_options
from tandem.console import console, progress_bar
from tandem.learn.options import DEFAULTS, TrainingOptions
from tandem.offers.train import ARGS as PROPENSITY_ARGS
from tandem.printers import print_offers, print_propensity

PROPENSITY_OPTIONS = ("trees", "max_depth", "learning_rate", "bins", "key_bits")


@app.command()
@training_options(PROPENSITY_OPTIONS, PROPENSITY_ARGS)
def propensity(
    world_dir: Path = typer.Option(..., "--world", "-w", help="A linked world folder (`tandem link`)."),
    catalog: Path | None = typer.Option(
        None, help="The offer catalog (TOML; default: the one shipped, tandem/offers/catalog.toml)."
    ),
    holdout_from: str | None = typer.Option(
        None,
        help="Campaigns sent on or after this day (YYYY-MM-DD) are "
        "held out for evaluation. Default: the latest campaign's day.",
    ),
    training: TrainingOptions = DEFAULTS,  # the defaults are tandem.offers.train.ARGS
):
    """Train a federated propensity model per product of the offer catalog.

    SecureBoost on both sides' features against the bank's campaign responses
    before the held-out wave; each party is its own node process. Writes each
    party's manifest into WORLD/nodes."""
    from tandem.offers.catalog import load_catalog
    from tandem.offers.train import train_propensity

    cat = load_catalog(catalog)
    training.check()
    args = {**PROPENSITY_ARGS, **{name: getattr(training, name) for name in PROPENSITY_OPTIONS}}
    with progress_bar("propensity") as update:
        result = train_propensity(
            world_dir,
            cat,
            args,
            holdout_from=parse_date(holdout_from, "--holdout-from") if holdout_from else None,
            progress=update,
        )
    print_propensity(result)
    console.print(
        f"manifests: {result['manifests']['bank']} and {result['manifests']['market']}; point each "
        'node\'s \\[offers] models = "FILE" at its own, then run `tandem offers`'
    )


@app.command()
def offers(
    config: Path = typer.Option(
        ..., "--config", "-c", help="The bank node's TOML config, with \\[decide] and \\[offers] sections."
    ),
    report: Path | None = typer.Option(
        None, help="Write the HTML report here (default: STATE_DIR/offers-report.html)."
    ),
    evaluate: bool = typer.Option(
        True,
        help="Replay the held-out campaigns: top-1 acceptance and revenue of the "
        "federated propensity models vs random targeting vs the bank alone.",
    ),
    holdout_from: str | None = typer.Option(
        None, help="First day of the held-out campaigns (default: the one the models were trained with)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the offer mix and the evaluation as JSON."),
):
    """Next best offers for every shared client, into the bank's store (table offers).

    Products ranked by propensity x value; credit only under the decision
    policy's PD cutoff; within consent, do-not-disturb and the contact limits;
    personalised content from the marketplace for the offers made. Then the
    replay of the held-out campaigns and the HTML report."""
    from tandem.node_config import load_node_config
    from tandem.offers.batch import offers_portfolio

    out = report or load_node_config(config).state_dir / "offers-report.html"
    with progress_bar("offers") as update:
        result = offers_portfolio(
            str(config),
            update,
            evaluate=evaluate,
            report=out if evaluate else None,
            holdout_from=parse_date(holdout_from, "--holdout-from") if holdout_from else None,
        )
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_offers(result)

"""`tandem serve` and `tandem score`: decisions online and for the whole portfolio."""

from __future__ import annotations

from pathlib import Path

import typer

from tandem.cli.common import app
from tandem.console import console, progress_bar, table
from tandem.errors import InputError
from tandem.parties import ENTITIES


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

    if entity not in ENTITIES:
        raise InputError(f"--entity must be one of {', '.join(ENTITIES)}, got '{entity}'")
    with progress_bar("score") as update:
        result = score_portfolio(str(config), entity, update)
    console.print(
        table(
            f"{result['rows']:,} {entity} scored into {result['table']} (model {result['model_version']})",
            ["band", "rows"],
            [[b, n] for b, n in result["bands"].items()],
        )
    )

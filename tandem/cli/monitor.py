"""`tandem monitor`: the score's and the bank's own features' population stability of its scorecard."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tandem.atomic import write_atomically
from tandem.cli.common import app
from tandem.console import console, table
from tandem.errors import InputError
from tandem.parties import ENTITIES


@app.command()
def monitor(
    config: Path = typer.Option(..., "--config", "-c", help="The bank node's TOML config, with a [decide] section."),
    entity: str = typer.Option("customers", help="customers or sellers: whose scorecard ([decide] ENTITY_model)."),
    start: str = typer.Option(..., "--from", help="First day of the period (2019-01-01): scores scored since then."),
    end: str = typer.Option(..., "--to", help="Last day, included (features as of then or an earlier [decide] as_of)."),
    out: Path | None = typer.Option(None, "--out", help="Write the tables as JSON here."),
):
    """Score PSI of the portfolio's scores (tandem score) in the period against the scorecard's development
    score bands, and the CSI of each of the bank's own selected features, with traffic lights (green below
    0.1, amber to 0.25, red above). Each party monitors its own features; this is the bank's side."""
    from tandem.decide.monitor import monitor as run
    from tandem.decide.monitor import parse_day

    if entity not in ENTITIES:
        raise InputError(f"--entity must be one of {', '.join(ENTITIES)}, got '{entity}'")
    result = run(str(config), entity, parse_day(start, "--from"), parse_day(end, "--to"))
    score = result["score"]
    console.print(
        table(
            f"Score stability of {entity}, model {result['model_version']}, {result['from']} to {result['to']}: "
            f"PSI {score['psi']:.4f} ({score['light']}), {score['scores']:,} scores",
            ["band (points)", "development", "period", "dev share", "period share", "psi"],
            [
                [r["label"], r["expected"], r["actual"], r["expected_share"], r["actual_share"], r["psi"]]
                for r in score["rows"]
            ],
        )
    )
    console.print(
        table(
            f"Characteristic stability of the bank's features (as of {result['as_of']})",
            ["feature", "csi", "light", "bins"],
            [[f["feature"], f["psi"], f["light"], len(f["rows"])] for f in result["features"]],
        )
    )
    if out is not None:
        write_atomically(out, json.dumps(result, indent=2).encode())
        console.print(f"written: {out}")

"""`tandem world` and `tandem demo`: the synthetic world, and the main job on one."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tandem.cli.common import app
from tandem.console import progress_bar
from tandem.printers import print_world_summary


@app.command()
def world(
    persons: int = typer.Option(
        ..., "--persons", "-n", help="Number of persons in the world (bank clients, marketplace users or both)."
    ),
    seed: int = typer.Option(1, help="Random seed; the same seed gives the same tables."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to write bank.duckdb, market.duckdb, truth.parquet and summary.json into."
    ),
    config: Path | None = typer.Option(None, help="TOML file overriding the world calibration."),
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
        print_world_summary(summary, out)


@app.command()
def demo(
    persons: int = typer.Option(100_000, help="Size of the demo world."),
    seed: int = typer.Option(7, help="Random seed."),
    out: Path = typer.Option(Path("demo-world"), help="Where the demo world is written."),
):
    """The main job: make a world, show its summary and what joining the two sides is worth."""
    from tandem.demo import run_demo

    run_demo(persons, seed, out)

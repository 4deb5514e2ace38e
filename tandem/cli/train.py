"""`tandem train`: a federated model from one file per party, each party its own node process."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tandem.atomic import write_atomically
from tandem.cli.common import SepOption, app, party_files, training_options
from tandem.console import console, err_console, progress_bar, tree_progress
from tandem.learn.options import DEFAULTS, TrainingOptions
from tandem.printers import print_training


@app.command("train")
@training_options()
def train_cmd(
    party: list[str] = typer.Option(
        ..., "--party", help="NAME=FILE (CSV, TSV or other delimited text, .gz too, or Parquet), once per party."
    ),
    id_column: str = typer.Option(..., "--id", help="The column that identifies a row on every side."),
    label: str = typer.Option(..., help="NAME:COLUMN — the party holding the label and its column."),
    delimiter: SepOption = None,
    training: TrainingOptions = DEFAULTS,
    metrics_out: Path | None = typer.Option(None, help="Write metrics as JSON here."),
    workdir: Path = typer.Option(Path("tandem-train"), help="Folder for node configs, certificates, models, logs."),
):
    """Link on the id column, train a federated model (SecureBoost) and evaluate it; each party is its own process."""
    from tandem.learn.baselines import pooled_baselines
    from tandem.learn.local import train_local
    from tandem.report.training_report import write_training_report

    files, label_party, label_column = party_files(party, label)
    training.check()
    with progress_bar("train") as update:
        update("linking and training", 0.05)
        results = train_local(
            files,
            id_column,
            label_party,
            label_column,
            training,
            workdir,
            on_event=tree_progress(update, 0.05, 0.85),
            sep=delimiter,
            warn=lambda message: err_console.print(f"warning: {message}", markup=False),
        )
        update("pooled baselines", 0.9)
        active = results[label_party]
        baselines = pooled_baselines(files, id_column, label_party, label_column, training, active.goss_seed, delimiter)
        update("done", 1.0)
    m = active.metrics
    report = write_training_report(workdir / "report.html", active, baselines)
    metrics = {
        "auc": m["auc"],
        "ks": m["ks"],
        "gini": m["gini"],
        "brier": m["brier"],
        **baselines,
        "train_seconds": active.train_seconds,
        "seconds_per_tree": active.seconds_per_tree,
        "bytes_sent": {name: r.bytes_sent for name, r in results.items()},
        "n_train": active.n_train,
        "n_test": active.n_test,
        "rows_left_out": {name: r.rows_left_out for name, r in results.items()},
        "deciles": m["deciles"],
        "models": {name: r.model_path for name, r in results.items()},
        "report": str(report),
    }
    print_training(results, label_party, baselines)
    console.print(f"model report: {report}")
    if metrics_out:
        write_atomically(metrics_out, json.dumps(metrics, indent=2).encode())
        console.print(f"metrics written to {metrics_out}")

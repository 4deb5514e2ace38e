"""`tandem scorecard`: a federated credit scorecard (WoE binning, IV selection, logistic regression, points)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from tandem.atomic import write_atomically
from tandem.cli.common import SepOption, app, party_files
from tandem.console import console, err_console, progress_bar, table, tree_progress
from tandem.errors import InputError
from tandem.printers import print_scorecard_points


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@app.command("scorecard")
def scorecard_cmd(
    party: list[str] = typer.Option(..., "--party", help="NAME=FILE (CSV or Parquet), once per party (two parties)."),
    id_column: str = typer.Option(..., "--id", help="The column that identifies a row on every side."),
    label: str = typer.Option(..., help="NAME:COLUMN — the party holding the label and its column."),
    test_fraction: float = typer.Option(0.2, help="Share of linked rows held out for testing."),
    seed: int = typer.Option(42, help="Seed of the train / test / calibration split."),
    iv_min: float = typer.Option(0.02, help="Drop features whose information value is below this."),
    max_corr: float = typer.Option(0.7, help="Of two selected features correlated above this, keep the higher IV."),
    max_vif: float = typer.Option(10.0, help="Drop features while the largest variance inflation factor exceeds this."),
    l2: float = typer.Option(1.0, "--l2", help="L2 regularisation of the regression coefficients."),
    max_prebins: int = typer.Option(20, help="Most quantile pre-bins per numeric feature."),
    special_code: list[str] = typer.Option(
        [], "--special-code", help="A value that is a code, not a measurement (-999, 'unknown'): its own bin. Repeat."
    ),
    pdo: float = typer.Option(20.0, help="Points to double the odds."),
    base_score: float = typer.Option(600.0, help="The score at the base odds."),
    base_odds: float = typer.Option(50.0, help="Good:bad odds at the base score."),
    key_bits: int = typer.Option(2048, help="Size of the label holder's Okamoto-Uchiyama key (bits)."),
    delimiter: SepOption = None,
    metrics_out: Path | None = typer.Option(None, help="Write metrics as JSON here."),
    workdir: Path = typer.Option(Path("tandem-scorecard"), help="Folder for node configs, certificates, models, logs."),
):
    """Link on the id column, bin every feature of both parties (WoE / IV), select, fit and score a
    scorecard without pooling rows; each party is its own node process over mutual TLS."""
    from tandem.learn.options import TrainingOptions
    from tandem.learn.scorecard.job import STEPS, options_json
    from tandem.learn.scorecard.local import scorecard_local
    from tandem.learn.scorecard.options import BinningOptions, ScorecardOptions
    from tandem.learn.scorecard.points import Scaling
    from tandem.learn.scorecard.reference import pooled_scorecard
    from tandem.report.scorecard_report import write_scorecard_report
    from tandem.report.scorecard_tables import points_rows

    files, label_party, label_column = party_files(party, label)
    if not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    codes = tuple(float(c) if _is_number(c) else c for c in special_code)
    binning = BinningOptions(max_n_prebins=max_prebins, special_codes=codes).check()
    opts = ScorecardOptions(
        iv_min=iv_min, max_corr=max_corr, max_vif=max_vif, l2=l2, pdo=pdo, base_score=base_score, base_odds=base_odds
    ).check()
    training = TrainingOptions(test_fraction=test_fraction, seed=seed, key_bits=key_bits).check()
    with progress_bar("scorecard") as update:
        update("linking and fitting", 0.05)
        results = scorecard_local(
            files, id_column, label_party, label_column, training, options_json(binning, opts), workdir,
            on_event=tree_progress(update, 0.05, 0.85, STEPS), sep=delimiter,
            warn=lambda message: err_console.print(f"warning: {message}", markup=False),
        )  # fmt: skip
        update("pooled reference", 0.9)
        ref = pooled_scorecard(
            files, id_column, label_party, label_column, seed, test_fraction, binning, opts, sep=delimiter
        )
        update("done", 1.0)
    active = results[label_party]
    m = active["metrics"]
    model = json.loads(Path(active["model_path"]).read_text())
    coef = {f["name"]: f["coef"] for f in model["features"]}
    ref_pd = 1 / (1 + np.exp(-np.asarray(ref["test_logit"])))
    scaling = Scaling.of(opts)
    points = points_rows(model, scaling)
    report = write_scorecard_report(workdir / "report.html", model, active, scaling)
    metrics = {
        "auc": m["auc"],
        "auc_plaintext": ref["auc_plaintext"],
        "auc_sklearn": ref["auc_sklearn"],
        "ks": m["ks"],
        "gini": m["gini"],
        "brier": m["brier"],
        "n_train": active["n_train"],
        "n_test": active["n_test"],
        "n_calibration": active["n_calibration"],
        "n_features_in": active["n_features_in"],
        "n_features_selected": active["n_features_selected"],
        "iv": active["iv"],
        "iv_plaintext": ref["iv_plaintext"],
        "coef_max_abs_diff": max(
            [abs(coef.get(n, np.inf) - c) for n, c in ref["coef"].items()]
            + [abs(model["intercept"] - ref["intercept"])]
        ),
        "pd_max_abs_diff": float(np.max(np.abs(np.asarray(active["test_scores"]) - ref_pd))),
        "selected": [r["name"] for r in active["selection"] if r["status"] == "selected"],
        "selection": active["selection"],
        "calibration": active["calibration"],
        "train_seconds": active["train_seconds"],
        "rows_left_out": {name: r["rows_left_out"] for name, r in results.items()},
        "bytes_sent": {name: r["bytes_sent"] for name, r in results.items()},
        "models": {name: r["model_path"] for name, r in results.items()},
        "points": points,
        "report": str(report),
    }
    console.print(
        table(
            "Scorecard (test)",
            ["measure", "value"],
            [
                ["AUC (federated)", m["auc"]],
                ["AUC (same algorithm, pooled)", ref["auc_plaintext"]],
                ["AUC (scikit-learn LogisticRegression, pooled WoE)", ref["auc_sklearn"]],
                ["KS / Gini", f"{m['ks']:.4f} / {m['gini']:.4f}"],
                ["rows train / test", f"{active['n_train']:,} / {active['n_test']:,}"],
                ["features in / selected", f"{active['n_features_in']} / {active['n_features_selected']}"],
                ["fit seconds", active["train_seconds"]],
                *[[f"bytes sent by {name}", r["bytes_sent"]] for name, r in results.items()],
            ],
        )
    )
    console.print(
        table(
            "Feature selection",
            ["feature", "IV", "status"],
            [[r["name"], r["iv"], r["status"]] for r in active["selection"]],
        )
    )
    print_scorecard_points(points, label_party)
    console.print(f"scorecard report: {report}")
    if metrics_out:
        write_atomically(metrics_out, json.dumps(metrics, indent=2).encode())
        console.print(f"metrics written to {metrics_out}")

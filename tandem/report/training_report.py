"""The HTML report of a training run, from the label holder's result and its saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.learn import model_io
from tandem.learn.result import TrainingResult
from tandem.report.model_report import write_model_report


def write_training_report(path: Path, active: TrainingResult, extra: dict) -> Path:
    """``extra``: more figures for the summary table (e.g. the pooled baselines), by label."""
    m = active.metrics
    model = model_io.load(active.model_path, "active")
    summary = {
        "AUC": m["auc"],
        "KS": m["ks"],
        "Gini": m["gini"],
        **extra,
        "rows (train)": active.n_train,
        "rows (test)": active.n_test,
        "seconds per tree": active.seconds_per_tree,
        "model id": model["model_id"],
    }
    return write_model_report(
        path,
        title=f"Federated model {model['model_id']} ({active.node} + {active.peer})",
        metrics=summary,
        y=np.asarray(active.test_labels),
        score=np.asarray(active.test_scores),
        importance=model_io.importance(model),
    )

"""Pooled-data baselines for evaluation only (they read every party's file, as no node may)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.federated import ordered, split_rows
from tandem.learn.metrics import roc_auc
from tandem.learn.options import TrainingOptions, estimator_kwargs
from tandem.learn.party_file import features as feature_table
from tandem.learn.party_file import read_party_file


def _quiet(message: str) -> None:
    """Shifted rows were reported when the nodes' files were first read."""


def pooled_baselines(
    files: dict[str, Path],
    id_column: str,
    label_party: str,
    label_column: str,
    options: TrainingOptions,
    goss_seed: int | None = None,
    sep: str | None = None,
) -> dict:
    """``auc_plaintext`` (the same algorithm on the pooled table) and ``auc_xgboost`` (XGBoost hist,
    same hyperparameters), on the same rows, order and train/validation/test split as the
    federated run; the plaintext one merges the other parties' bins as their nodes do by default
    (``tandem.learn.buckets.MIN_BIN_ROWS``) and, with GOSS, draws with the label holder's ``goss_seed``.
    The label holder's categorical columns are categorical in both (XGBoost: pandas ``category``
    dtype with ``enable_categorical``).
    ``sep``: the files' delimiter (``None``: sniffed)."""
    import pandas as pd
    import xgboost as xgb

    parts = []
    categorical_columns: list[str] = []
    for name, f in files.items():
        d = read_party_file(f, id_column, label_column if name == label_party else None, sep, warn=_quiet)
        X_d, names, categorical = feature_table(d)
        frame = pd.DataFrame(X_d, columns=[f"{name}:{c}" for c in names])
        categorical_columns += [f"{name}:{names[j]}" for j in categorical]
        frame["_id"] = d.ids
        if d.y is not None:
            frame["_y"] = d.y
        parts.append((name == label_party, frame))
    parts.sort(key=lambda p: not p[0])  # label holder's features first, as in training
    pooled = parts[0][1]
    for _, frame in parts[1:]:
        pooled = pooled.merge(frame, on="_id")
    fields = options.request_fields()
    pooled = pooled.iloc[ordered(pooled["_id"].tolist(), fields["seed"])]
    test, valid = split_rows(pooled["_id"].tolist(), fields)
    features = [c for c in pooled.columns if c not in ("_id", "_y")]
    cat = [j for j, c in enumerate(features) if c in categorical_columns]
    X, y = pooled[features].to_numpy(dtype=object if cat else np.float64), pooled["_y"].to_numpy()
    n_label_features = sum(c.startswith(f"{label_party}:") for c in features)
    kw = estimator_kwargs(fields)
    ref = HistBoostingClassifier(
        **kw,
        first_tree_features=n_label_features if fields["first_tree_active_only"] else None,
        min_bin_rows=MIN_BIN_ROWS,
        passive_from=n_label_features,
        goss_seed=goss_seed,
        categorical=cat,
    ).fit(X[~test], y[~test], valid[~test])
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": kw["max_depth"],
        "eta": kw["learning_rate"],
        "max_bin": kw["bins"],
        "lambda": kw["l2"],
        "min_child_weight": kw["min_child_weight"],
        "nthread": 2,
        "seed": kw["seed"],
        "eval_metric": "auc",
    }
    fit, held = ~test & ~valid, valid
    table = _xgboost_table(pooled[features], categorical_columns)

    def matrix(rows: np.ndarray, label: np.ndarray | None = None) -> xgb.DMatrix:
        if table is None:
            return xgb.DMatrix(X[rows], label=label)
        return xgb.DMatrix(table.iloc[np.flatnonzero(rows)], label=label, enable_categorical=True)

    dfit = matrix(fit, y[fit])
    extra = (
        {
            "evals": [(matrix(held, y[held]), "valid")],
            "early_stopping_rounds": kw["early_stopping_rounds"],
            "verbose_eval": False,
        }
        if kw["early_stopping_rounds"]
        else {}
    )
    booster = xgb.train(params, dfit, num_boost_round=kw["n_trees"], **extra)
    rounds = (0, booster.best_iteration + 1) if extra else (0, 0)
    return {
        "auc_plaintext": roc_auc(y[test], ref.predict_proba(X[test])[:, 1]),
        "auc_xgboost": roc_auc(y[test], booster.predict(matrix(test), iteration_range=rounds)),
        "n_trees_plaintext": len(ref.trees_),
    }


def _xgboost_table(frame, categorical_columns: list[str]):
    """The pooled features as XGBoost reads categories (``category`` dtype, positional column names),
    or ``None`` when every feature is numeric (then the float matrix is used)."""
    if not categorical_columns:
        return None
    table = frame.copy()
    for c in table.columns:
        table[c] = table[c].astype("category") if c in categorical_columns else table[c].astype(np.float64)
    table.columns = [f"f{j}" for j in range(table.shape[1])]
    return table

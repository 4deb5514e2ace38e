"""Pooled-data baselines for evaluation only (they read every party's file, as no node may)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.federated import read_party_file
from tandem.learn.metrics import roc_auc


def pooled_baselines(files: dict[str, Path], id_column: str, label_party: str, label_column: str,
                     test_ids: list[str], args: dict) -> dict:
    """``auc_plaintext`` (the same algorithm on the pooled table) and ``auc_xgboost`` (XGBoost hist,
    same hyperparameters), on the same train/test rows as the federated run."""
    import pandas as pd
    import xgboost as xgb

    parts = []
    for name, f in files.items():
        d = read_party_file(f, id_column, label_column if name == label_party else None)
        frame = pd.DataFrame(d.X, columns=[f"{name}:{c}" for c in d.names])
        frame["_id"] = d.ids
        if d.y is not None:
            frame["_y"] = d.y
        parts.append((name == label_party, frame))
    parts.sort(key=lambda p: not p[0])                       # label holder's features first, as in training
    pooled = parts[0][1]
    for _, frame in parts[1:]:
        pooled = pooled.merge(frame, on="_id")
    features = [c for c in pooled.columns if c not in ("_id", "_y")]
    test = pooled["_id"].isin(set(test_ids)).to_numpy()
    X, y = pooled[features].to_numpy(dtype=np.float64), pooled["_y"].to_numpy()
    n_label_features = sum(c.startswith(f"{label_party}:") for c in features)
    ref = HistBoostingClassifier(n_trees=args["trees"], max_depth=args["max_depth"],
                                 learning_rate=args["learning_rate"], bins=args["bins"], seed=args["seed"],
                                 first_tree_features=n_label_features if args.get("first_tree_active_only") else None)
    ref.fit(X[~test], y[~test])
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args["max_depth"],
              "eta": args["learning_rate"], "max_bin": args["bins"], "lambda": 1.0, "min_child_weight": 1.0,
              "nthread": 2, "seed": args["seed"]}
    booster = xgb.train(params, xgb.DMatrix(X[~test], label=y[~test]), num_boost_round=args["trees"])
    return {"auc_plaintext": roc_auc(y[test], ref.predict_proba(X[test])[:, 1]),
            "auc_xgboost": roc_auc(y[test], booster.predict(xgb.DMatrix(X[test])))}

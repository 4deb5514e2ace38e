"""The pooled reference of the federated scorecard, for evaluation only (outside the nodes).

On the joined table, with the same rows, order, train / test / calibration split and pre-binnings as the
federated run: optbinning on the pooled rows of every feature (``optimal.reference_fit``), the same IV
filter, moments, selection, one Newton step and calibration -> ``auc_plaintext``; and scikit-learn's exact
``LogisticRegression`` on the same pooled WoE features of the selected features -> ``auc_sklearn``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.federated import is_test, ordered
from tandem.learn.metrics import roc_auc
from tandem.learn.party_file import PartyData, read_party_file
from tandem.learn.scorecard.fit import Fitted, calibrate, newton_step
from tandem.learn.scorecard.gram import quantise_woe
from tandem.learn.scorecard.job import columns, is_calibration
from tandem.learn.scorecard.moments import Moments
from tandem.learn.scorecard.optimal import bin_own, reference_fit
from tandem.learn.scorecard.options import BinningOptions, ScorecardOptions
from tandem.learn.scorecard.prebin import Prebins
from tandem.learn.scorecard.selection import select


def pooled_scorecard(
    files: dict[str, Path],
    id_column: str,
    label_party: str,
    label_column: str,
    seed: int,
    test_fraction: float,
    binning: BinningOptions,
    opts: ScorecardOptions,
    passive_min_bin_rows: int = MIN_BIN_ROWS,
    sep: str | None = None,
) -> dict:
    """``auc_plaintext``, ``auc_sklearn``, ``iv_plaintext`` (name -> IV, passive features as ``f0``..),
    ``selected``, the coefficients and the test rows' ids and logits of the pooled pipeline."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    parties: dict[str, PartyData] = {
        name: read_party_file(f, id_column, label_column if name == label_party else None, sep, warn=lambda line: None)
        for name, f in files.items()
    }
    active = parties.pop(label_party)
    (passive,) = parties.values()
    common = sorted(set(active.ids) & set(passive.ids))
    if not common:
        raise ValueError("the parties share no ids")
    common = [common[i] for i in ordered(common, seed)]
    a_at = {v: i for i, v in enumerate(active.ids)}
    p_at = {v: i for i, v in enumerate(passive.ids)}
    ra, rp = np.array([a_at[v] for v in common]), np.array([p_at[v] for v in common])
    test = is_test(common, seed, round(test_fraction * 1_000_000))
    calib = is_calibration(common, seed, opts.calibration_fraction) & ~test
    if active.y is None:
        raise ValueError("the label holder's file has no label")
    y = active.y[ra].astype(np.int64)
    tr = ~test
    woe, iv = {}, {}
    for name, column in columns(active).items():
        x = column[ra]
        prebins, table = bin_own(name, x[tr], y[tr], binning)
        woe[name] = quantise_woe(table.woe)[table.assign[prebins.transform(x)]]
        iv[name] = float(table.iv_bins.sum())
    own_bins = BinningOptions(**{**vars(binning), "min_bin_rows": passive_min_bin_rows})
    for j, column in enumerate(columns(passive).values()):
        name, x = f"f{j}", column[rp]
        prebins = Prebins.fit(name, x[tr], own_bins)
        table = reference_fit(x[tr], y[tr], prebins, binning)
        woe[name] = quantise_woe(table.woe)[table.assign[prebins.transform(x)]]
        iv[name] = float(table.iv_bins.sum())
    candidates = [n for n in woe if iv[n] >= opts.iv_min]
    X = np.column_stack([woe[n] for n in candidates]) if candidates else np.zeros((len(common), 0))
    moments = Moments.from_rows(tuple(candidates), X[tr], y[tr])
    selection = select(iv, moments, opts)
    names = list(selection.selected)
    Xs = X[:, [candidates.index(n) for n in names]]
    step = newton_step(moments.subset(selection.selected), opts.l2)
    score = step[0] + Xs @ step[1:]
    calibration = calibrate(score[calib], y[calib])
    fitted = Fitted.from_step(tuple(names), step, calibration)
    logit = fitted.logit(Xs)
    sk = LogisticRegression(C=1 / opts.l2 if opts.l2 > 0 else np.inf, max_iter=1000, tol=1e-10)
    sk.fit(Xs[tr], y[tr])
    return {
        "auc_plaintext": roc_auc(y[test], logit[test]),
        "auc_sklearn": roc_auc(y[test], sk.decision_function(Xs[test])),
        "iv_plaintext": iv,
        "selected": names,
        "intercept": float(fitted.intercept),
        "coef": dict(zip(names, map(float, fitted.coef))),
        "test_ids": [v for v, t in zip(common, test) if t],
        "test_logit": logit[test].tolist(),
    }

"""The federated scorecard job: link rows on an id column, bin, select, fit, calibrate, score, evaluate.

The label holder runs ``active_job`` with one ``Session`` to the passive party, which runs ``passive_job``.
Rows are linked, ordered and split into train and test as in ``tandem train`` (``tandem.learn.federated``).
Then, over one session, in this order: binning (``ActiveBinning`` / ``PassiveBinning``: every feature's
final bins, WoE and IV), the second moments of the WoE features whose IV passes ``iv_min`` (``gram``),
the correlation / VIF filter and the regression at the label holder (``selection``, ``fit``), scoring of
the calibration and test rows (``scoring``), and the passive party's final part of the scorecard.

One passive party: the passive-passive moments of two passive parties would need a three-party step that
is not built.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from tandem import protocol_versions as versions
from tandem.crypto.he import PublicHe, SecretHe
from tandem.errors import InputError
from tandem.learn.federated import PartyData, _align_active, _align_passive, is_test, share
from tandem.learn.metrics import summary
from tandem.learn.scorecard.active import ActiveBinning
from tandem.learn.scorecard.fit import Fitted, calibrate, newton_step
from tandem.learn.scorecard.gram import ActiveGram, PassiveGram, quantise_woe
from tandem.learn.scorecard.model import active_model, passive_model
from tandem.learn.scorecard.moments import Moments
from tandem.learn.scorecard.optimal import bin_own
from tandem.learn.scorecard.options import BinningOptions, ScorecardOptions
from tandem.learn.scorecard.passive import PassiveBinning
from tandem.learn.scorecard.points import Scaling
from tandem.learn.scorecard.prebin import Prebins
from tandem.learn.scorecard.scoring import ActiveScoring, PassiveScoring
from tandem.learn.scorecard.selection import select
from tandem.learn.scorecard.stability import score_reference
from tandem.learn.scorecard.tables import BinTable
from tandem.protocols.role import Role
from tandem.protocols.wire import ScorecardRequest
from tandem.transport.session import Session

PROTOCOL = versions.SCORECARD
STEPS = ("binning", "second moments", "scoring", "done")  # the label holder's progress events


def request_options(request: ScorecardRequest) -> tuple[BinningOptions, ScorecardOptions]:
    """The binning and scorecard options a request carries (JSON), checked."""
    try:
        raw = json.loads(request.options)
        binning = BinningOptions(**{**raw["binning"], "special_codes": tuple(raw["binning"]["special_codes"])})
        return binning.check(), ScorecardOptions(**raw["scorecard"]).check()
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"scorecard request options are not usable: {exc}") from None


def options_json(binning: BinningOptions, opts: ScorecardOptions) -> str:
    """What ``ScorecardRequest.options`` carries."""
    return json.dumps({"binning": asdict(binning), "scorecard": asdict(opts)}, separators=(",", ":"))


def default_options_json() -> str:
    return options_json(BinningOptions(), ScorecardOptions())


def run_role(session: Session, role: Role) -> None:
    """Drive a sans-I/O role over ``session`` until it is done."""
    session.send_all(role.start())  # type: ignore[attr-defined]
    while not role.done:
        session.send_all(role.receive(session.recv()))  # type: ignore[attr-defined]


def is_calibration(ids: list[str], seed: int, fraction: float) -> np.ndarray:
    """The rows whose scores calibrate the regression (to be taken among the training rows)."""
    return share(ids, f"calibration/{seed}", round(fraction * 1_000_000))


def columns(data: PartyData) -> dict[str, np.ndarray]:
    """Every feature column of a party's table, numeric (float64, NaN missing) then categorical (object,
    None missing), in file order within each kind: name -> (n,)."""
    return {name: data.X[:, j] for j, name in enumerate(data.names)} | dict(data.categorical)


def _own_woe(prebins: Prebins, table: BinTable, x: np.ndarray) -> np.ndarray:
    """(n,) quantised WoE of rows ``x`` of one of the label holder's own features."""
    return quantise_woe(table.woe)[table.assign[prebins.transform(x)]]


def active_job(
    sessions: list[Session],
    data: PartyData,
    request: ScorecardRequest,
    blinder,
    *,
    party: str,
    passive_parties: list[str],
    scheme: str,
    key_bits: int,
    progress: Callable[[str, float], None] | None = None,
) -> dict:
    """The label holder's side; returns metrics, timings, the selection and its part of the model."""
    if len(sessions) != 1:
        raise InputError(f"the scorecard takes one passive party, got {len(sessions)}")
    (session,) = sessions
    say = progress or (lambda what, fraction: None)
    started = time.perf_counter()
    binning, opts = request_options(request)
    rows = _align_active(sessions, data, request.seed, blinder)
    ids = [data.ids[r] for r in rows]
    test = is_test(ids, request.seed, request.test_fraction_ppm)
    calib = is_calibration(ids, request.seed, opts.calibration_fraction) & ~test
    train_rows, test_rows = rows[~test], rows[test]
    if data.y is None:
        raise InputError(f"{data.source or 'the label holder'}: no label column")
    if len(train_rows) < 10 or len(test_rows) < 2 or not calib.any():
        raise InputError(f"too few shared rows to fit and test ({len(train_rows)} train, {len(test_rows)} test)")
    y_all = data.y[rows].astype(np.int64)
    y = y_all[~test]
    if y.min() == y.max():
        raise InputError("the training rows hold only one class")
    fit_started = time.perf_counter()
    say("binning", 0.1)
    own: dict[str, tuple[Prebins, BinTable]] = {}
    features = columns(data)
    for name, x in features.items():
        try:
            own[name] = bin_own(name, x[train_rows], y, binning)
        except (InputError, ValueError) as exc:
            raise InputError(f"binning feature '{name}': {exc}") from None
    he = SecretHe.generate(scheme, key_bits)
    binner = ActiveBinning(session.id, y, he, binning)
    run_role(session, binner)
    clash = sorted(set(own) & set(binner.tables_))
    if clash:
        raise InputError(
            f"{data.source}: column '{clash[0]}' has the name the passive party's feature goes by; rename it"
        )
    iv = {name: float(t.iv_bins.sum()) for name, (_, t) in own.items()}
    iv.update({name: float(t.iv_bins.sum()) for name, t in binner.tables_.items()})
    say("second moments", 0.4)
    own_in = [n for n in features if iv[n] >= opts.iv_min]
    passive_in = [n for n in binner.tables_ if iv[n] >= opts.iv_min]
    woe_all = np.column_stack([_own_woe(*own[n], features[n][rows]) for n in own_in] or [np.zeros((len(rows), 0))])
    gram = ActiveGram(session.id, y, woe_all[~test], own_in, [binner.tables_[n] for n in passive_in], he)
    run_role(session, gram)
    moments = Moments(tuple(gram.names_), gram.xtx_, gram.xty_).check()
    selection = select(iv, moments, opts)
    chosen = moments.subset(selection.selected)
    step = newton_step(chosen, opts.l2)
    own_sel = [n for n in selection.selected if n in own]
    passive_sel = [n for n in selection.selected if n not in own]
    coef = dict(zip(selection.selected, step[1:]))
    say("scoring", 0.7)
    scorer = ActiveScoring(
        session.id,
        passive_sel,
        [coef[n] * quantise_woe(binner.tables_[n].woe) for n in passive_sel],
        calib | test,
    )
    run_role(session, scorer)
    asked = np.flatnonzero(calib | test)
    step_score = np.full(len(rows), np.nan)
    own_part = step[0] + woe_all[:, [own_in.index(n) for n in own_sel]] @ np.array([coef[n] for n in own_sel])
    step_score[asked] = own_part[asked] + scorer.scores_
    calibration = calibrate(step_score[calib], y_all[calib])
    fitted = Fitted.from_step(tuple(selection.selected), step, calibration)
    final = dict(zip(fitted.names, fitted.coef))
    run_role(
        session,
        ActiveScoring(
            session.id,
            passive_sel,
            [final[n] * quantise_woe(binner.tables_[n].woe) for n in passive_sel],
            np.zeros(len(rows), bool),
        ),
    )
    train_seconds = time.perf_counter() - fit_started
    pd_test = 1 / (1 + np.exp(-(calibration.a + calibration.c * step_score[test])))
    tables = {n: t for n, (_, t) in own.items()} | dict(binner.tables_)
    model = active_model(
        request.model_id,
        party,
        passive_parties[0],
        fitted,
        {n: p for n, (p, _) in own.items()},
        tables,
        selection,
        opts,
    )
    # the development sample's score bands, for the score's stability in a later period (``tandem monitor``)
    scored = calib | test
    model["score_reference"] = score_reference(
        Scaling.of(opts).score_from_logit(calibration.a + calibration.c * step_score[scored])
    )
    say("done", 1.0)
    return {
        "metrics": summary(y_all[test], pd_test),
        "n_train": int(len(train_rows)),
        "n_test": int(len(test_rows)),
        "n_calibration": int(calib.sum()),
        "rows_left_out": data.rows_left_out,
        "n_features_in": len(iv),
        "n_features_selected": len(selection.selected),
        "iv": iv,
        "selection": [vars(r) for r in selection.rows],
        "calibration": {"a": calibration.a, "c": calibration.c, "iterations": calibration.iterations},
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "model": model,
        "test_ids": [data.ids[i] for i in test_rows],
        "test_scores": pd_test.tolist(),
        "test_labels": y_all[test].tolist(),
    }


def wire_names(names: list[str], share: bool) -> list[str]:
    """What the label holder calls a passive party's features: ``f0``, ``f1``.. or, where that party's config
    shares them (``[train] share_names``), its names folded to the wire's identifier rule (lower case,
    ``[a-z0-9_]``, at most 32 characters, made unique)."""
    if not share:
        return [f"f{j}" for j in range(len(names))]
    out: list[str] = []
    for j, name in enumerate(names):
        folded = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        folded = (folded if folded[:1].isalpha() else f"f_{folded}")[:32]
        out.append(folded if folded not in out else f"{folded[:27]}_{j}")
    return out


def passive_job(
    session: Session,
    data: PartyData,
    request: ScorecardRequest,
    blinder,
    *,
    party: str,
    min_bin_rows: int,
    share_names: bool = False,
) -> dict:
    """A passive party's side; returns its part of the model. ``min_bin_rows`` and ``share_names`` are this
    party's own settings (its node config), never the request's."""
    binning, opts = request_options(request)
    binning = BinningOptions(**{**vars(binning), "min_bin_rows": min_bin_rows}).check()
    rows = _align_passive(session, data, request.seed, blinder)
    ids = [data.ids[r] for r in rows]
    test = is_test(ids, request.seed, request.test_fraction_ppm)
    train_rows = rows[~test]
    features = columns(data)
    names = wire_names(list(features), share_names)
    prebins = []
    for j, (name, x) in enumerate(features.items()):
        try:
            prebins.append(Prebins.fit(name, x[train_rows], binning))
        except InputError as exc:  # the peer hears of it: say which column without its name
            reason = str(exc).split(": ", 1)[-1]
            where = f"{party}'s feature {names[j]} (its feature {j + 1}: numeric columns in file order, then text ones)"
            raise InputError(f"{where} cannot be binned: {reason}") from None
    pre_all = np.column_stack([p.transform(x[rows]) for p, x in zip(prebins, features.values())])
    binner = PassiveBinning(session.id, pre_all[~test], [p.layout for p in prebins], names, min_bin_rows)
    run_role(session, binner)
    he = binner.he
    if not isinstance(he, PublicHe):
        raise InputError("binning ended without the label holder's key")
    bins_all = np.column_stack([a[pre_all[:, j]] for j, a in enumerate(binner.assign_)])
    n_bins = [int(a.max()) + 1 for a in binner.assign_]
    run_role(session, PassiveGram(session.id, bins_all[~test], n_bins, names, he))
    run_role(session, PassiveScoring(session.id, bins_all, n_bins, names))
    final = PassiveScoring(session.id, bins_all, n_bins, names)
    run_role(session, final)
    model = passive_model(
        request.model_id, party, list(features), names, prebins, binner.assign_, final, Scaling.of(opts).factor
    )
    return {
        "model": model,
        "n_train": int(len(train_rows)),
        "n_test": int(test.sum()),
        "rows_left_out": data.rows_left_out,
    }

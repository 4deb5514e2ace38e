"""The federated training job: link rows on an id column, align them, split, train, evaluate.

Run by both sides over one ``Session`` (the label holder as initiator). Rows are linked
with the PSI protocol (entity ``rows``, key ``id``), aligned by link id, and split into
train and test by a hash of the link id and the seed, which both sides compute alike, so
no row list ever travels.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tandem.crypto.he import SecretHe
from tandem.errors import InputError
from tandem.learn import model_io
from tandem.learn.binning import Binner
from tandem.learn.metrics import summary
from tandem.link.job import run_entity
from tandem.link.records import EntityRecords, KeyReport
from tandem.protocols.boost import (ActiveBoost, BoostParams, PassiveBoost, unframe_blobs, passive_bitmaps,
                                    predict_federated, unpack_mask)
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.wire import PredictBitmaps, PredictRequest, TrainRequest
from tandem.transport.session import Session

PROTOCOL = "boost/1"


@dataclass
class PartyData:
    """One party's table: ids (n,), numeric features (n, f) with NaN for missing, names; label if any."""

    ids: list[str]
    X: np.ndarray
    names: list[str]
    y: np.ndarray | None = None
    source: str = ""


def read_party_file(path: str | Path, id_column: str, label: str | None = None) -> PartyData:
    """Read CSV or Parquet; every non-id column (except the label) is a numeric feature."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:   # pandas raises many types for unreadable files
        raise InputError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    if id_column not in frame.columns:
        raise InputError(f"{path}: no id column '{id_column}'")
    ids = frame[id_column].astype(str).str.strip()
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(f"{path}: duplicate ids in column '{id_column}' (e.g. {dup.iloc[0]!r})")
    y = None
    if label is not None:
        if label not in frame.columns:
            raise InputError(f"{path}: no label column '{label}'")
        values = pd.to_numeric(frame[label], errors="coerce")
        if values.isna().any() or not values.isin([0, 1]).all():
            raise InputError(f"{path}: label column '{label}' must hold only 0 and 1")
        if values.nunique() < 2:
            raise InputError(f"{path}: label column '{label}' has only one class")
        y = values.to_numpy(dtype=np.float64)
    names = [c for c in frame.columns if c not in (id_column, label)]
    if not names:
        raise InputError(f"{path}: no feature columns besides '{id_column}'")
    for c in names:
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])):
            raise InputError(f"{path}: feature column '{c}' is not numeric")
    X = frame[names].to_numpy(dtype=np.float64)
    if np.isinf(X).any():
        raise InputError(f"{path}: feature columns hold infinite values")
    return PartyData(ids.tolist(), X, names, y, str(path))


def is_test(link_ids: list[str], seed: int, fraction_ppm: int) -> np.ndarray:
    """Deterministic split both sides compute alike: shape ``(n,)`` bool."""
    cut = fraction_ppm * (1 << 64) // 1_000_000
    return np.array([int.from_bytes(hashlib.sha256(f"{seed}:{lid}".encode()).digest()[:8], "big") < cut
                     for lid in link_ids], dtype=bool)


def _link_rows(session: Session, data: PartyData, initiator: bool, blinder) -> tuple[np.ndarray, list[str]]:
    """PSI on the id column; returns local row indices aligned by link id, and the link ids."""
    records = EntityRecords(ids=np.arange(len(data.ids), dtype=np.int64),
                            values={"id": np.array(data.ids, dtype=object)}, total=len(data.ids),
                            reports={"id": KeyReport(usable=len(data.ids))})
    outcome = run_entity(session, records, "rows", ["id"], initiator=initiator, count_only=False, blinder=blinder)
    rows = outcome.rows
    if rows.num_rows == 0:
        raise InputError(f"{data.source}: no ids shared with the other party")
    order = np.argsort(np.array(rows.column("link_id").to_pylist()))
    link_ids = [rows.column("link_id")[int(i)].as_py() for i in order]
    return rows.column("local_id").to_numpy()[order], link_ids


def _drive(role, session: Session) -> None:
    session.send_all(role.start())
    while not role.done:
        session.send_all(role.receive(session.recv()))


def active_job(session: Session, data: PartyData, request: TrainRequest, blinder, *, party: str,
               passive_party: str, scheme: str = "ou", key_bits: int = 2048) -> dict:
    """The label holder's side; returns metrics, timings and its part of the model (JSON dict)."""
    started = time.perf_counter()
    rows, link_ids = _link_rows(session, data, True, blinder)
    test = is_test(link_ids, request.seed, request.test_fraction_ppm)
    train_rows, test_rows = rows[~test], rows[test]
    if len(train_rows) < 10 or len(test_rows) < 2:
        raise InputError(f"too few shared rows to train and test ({len(train_rows)} train, {len(test_rows)} test)")
    y = data.y
    if np.unique(y[train_rows]).size < 2:
        raise InputError("the training rows hold only one class")
    binner = Binner(request.bins, request.seed).fit(data.X[train_rows])
    params = BoostParams(request.n_trees, request.max_depth, request.learning_rate, request.bins,
                         first_tree_active_only=request.first_tree_active_only)
    he = SecretHe.generate(scheme, key_bits)
    trained = time.perf_counter()
    active = ActiveBoost(session.id, binner.transform(data.X[train_rows]), y[train_rows], params, he)
    _drive(active, session)
    train_seconds = time.perf_counter() - trained
    ids = [i for t in active.split_ids_ for i in t.values()]
    session.send(PredictRequest(session.id, request.model_id, len(test_rows), ids))
    reply = session.recv()
    if not isinstance(reply, PredictBitmaps):
        raise RemoteProtocolError(f"peer answered {reply.name} to a prediction request")
    masks = {i: unpack_mask(b, len(test_rows)) for i, b in zip(ids, unframe_blobs(reply.payload, len(ids)))}
    raw = predict_federated(active.trees_, active.split_ids_, active.base_score_, binner.transform(data.X[test_rows]),
                            binner.missing_bin, masks)
    proba = 1 / (1 + np.exp(-raw))
    model = model_io.active_json(request.model_id, party, binner, data.names, active.base_score_, active.trees_,
                                 active.split_ids_, passive_party, {"n_trees": request.n_trees,
                                                                   "max_depth": request.max_depth,
                                                                   "bins": request.bins})
    return {"metrics": summary(y[test_rows], proba), "n_train": int(len(train_rows)), "n_test": int(len(test_rows)),
            "train_seconds": round(train_seconds, 2),
            "seconds_per_tree": round(train_seconds / max(1, len(active.trees_)), 3),
            "seconds": round(time.perf_counter() - started, 2), "model": model,
            "test_ids": [data.ids[i] for i in test_rows], "test_scores": proba.tolist(),
            "test_labels": y[test_rows].astype(int).tolist()}


def passive_job(session: Session, data: PartyData, request: TrainRequest, blinder, *, party: str) -> dict:
    """A passive party's side; returns its part of the model (JSON dict)."""
    rows, link_ids = _link_rows(session, data, False, blinder)
    test = is_test(link_ids, request.seed, request.test_fraction_ppm)
    train_rows, test_rows = rows[~test], rows[test]
    binner = Binner(request.bins, request.seed).fit(data.X[train_rows])
    passive = PassiveBoost(session.id, binner.transform(data.X[train_rows]), binner.threshold)
    _drive(passive, session)
    ask = session.recv()
    if not isinstance(ask, PredictRequest):
        raise RemoteProtocolError(f"expected a prediction request, got {ask.name}")
    session.send(passive_bitmaps(ask, binner.transform(data.X[test_rows]), passive.split_bins_, binner.missing_bin))
    return {"model": model_io.passive_json(request.model_id, party, binner, data.names, passive.split_bins_),
            "n_train": int(len(train_rows)), "n_test": int(len(test_rows))}

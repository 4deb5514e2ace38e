"""The federated training job: link rows on an id column, align them, split, train, evaluate.

The label holder runs ``active_job`` with one ``Session`` per passive party; each passive
party runs ``passive_job``. Rows are linked with the PSI protocol (entity ``rows``, key
``id``) pairwise between the label holder and each passive party; the label holder then
tells each party which of its linked rows every party holds (``SharedRows``). Each side
orders its shared rows by a hash of the id and the seed, and splits them into train,
validation and test by other such hashes: all sides compute the same order and split
from their own copies of the shared ids, so no row list travels and a rerun gets the
same rows in the same order (which is what lets it resume from a checkpoint).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tandem.errors import InputError
from tandem.learn import checkpoint, model_io
from tandem.learn.binning import Binner
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.metrics import summary
from tandem.learn.options import DEFAULTS, estimator_kwargs
from tandem.learn.party_file import PartyData, features
from tandem.learn.party_file import read_party_file as read_party_file  # re-exported: older imports
from tandem.learn.secureboost.passive import PassiveBoost
from tandem.learn.secureboost.shared import Resume
from tandem.learn.vertical import VerticalBoostingClassifier, serve_passive, serve_predictions
from tandem.link.job import run_entity
from tandem.link.records import EntityRecords, KeyReport
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.framing import pack_mask, unpack_mask
from tandem.protocols.wire import SharedRows, TrainRequest
from tandem.transport.session import Session


def share(ids: list[str], tag: str, fraction_ppm: int) -> np.ndarray:
    """Rows whose seeded hash of ``tag`` and id falls in the first ``fraction_ppm`` parts per million, ``(n,)``
    bool: every side computes the same from its copy of the shared ids."""
    cut = fraction_ppm * (1 << 64) // 1_000_000
    return np.array(
        [int.from_bytes(hashlib.sha256(f"{tag}:{i}".encode()).digest()[:8], "big") < cut for i in ids], dtype=bool
    )


def is_test(ids: list[str], seed: int, fraction_ppm: int) -> np.ndarray:
    """The test rows, shape ``(n,)`` bool: every side computes the same from the shared ids."""
    return share(ids, f"test/{seed}", fraction_ppm)


def is_valid(ids: list[str], seed: int, fraction_ppm: int) -> np.ndarray:
    """The validation rows for early stopping (to be taken among the non-test rows)."""
    return share(ids, f"valid/{seed}", fraction_ppm)


def ordered(ids: list[str], seed: int) -> np.ndarray:
    """The agreed row order: positions of ``ids`` sorted by a seeded hash of the id."""
    keys = [hashlib.sha256(f"order/{seed}:{i}".encode()).digest() for i in ids]
    return np.array(sorted(range(len(ids)), key=keys.__getitem__), dtype=np.int64)


def split_rows(ids: list[str], fields: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(test, valid)`` masks over rows in the agreed order; validation rows only with early stopping."""
    test = is_test(ids, fields["seed"], fields["test_fraction_ppm"])
    valid = np.zeros(len(ids), dtype=bool)
    if fields["early_stopping_rounds"]:
        valid = is_valid(ids, fields["seed"], fields["validation_fraction_ppm"]) & ~test
    return test, valid


def _link_rows(session: Session, data: PartyData, initiator: bool, blinder) -> np.ndarray:
    """PSI on the id column; returns the linked local row indices in link-id order."""
    records = EntityRecords(
        ids=np.arange(len(data.ids), dtype=np.int64),
        values={"id": np.array(data.ids, dtype=object)},
        total=len(data.ids),
        reports={"id": KeyReport(usable=len(data.ids))},
    )
    outcome = run_entity(session, records, "rows", ["id"], initiator=initiator, count_only=False, blinder=blinder)
    rows = outcome.rows
    if rows is None:  # run_entity always returns rows when count_only is False
        raise RuntimeError("linking the id column returned no rows")
    order = np.argsort(np.array(rows.column("link_id").to_pylist()))
    return rows.column("local_id").to_numpy()[order]


def _align_active(sessions: list[Session], data: PartyData, seed: int, blinder) -> np.ndarray:
    """Link with every passive party; keep the rows all of them hold; return them in the agreed order."""
    linked = [_link_rows(s, data, True, blinder) for s in sessions]
    common = linked[0]
    for rows in linked[1:]:
        common = np.intersect1d(common, rows)
    for session, rows in zip(sessions, linked):
        session.send(SharedRows(session.id, len(rows), pack_mask(np.isin(rows, common))))
    if len(common) == 0:
        raise InputError(
            f"{data.source}: no ids shared with " + ("the other party" if len(sessions) == 1 else "every other party")
        )
    return common[ordered([data.ids[r] for r in common], seed)]


def _align_passive(session: Session, data: PartyData, seed: int, blinder) -> np.ndarray:
    rows = _link_rows(session, data, False, blinder)
    msg = session.recv()
    if not isinstance(msg, SharedRows) or msg.n_rows != len(rows):
        raise RemoteProtocolError(f"expected the shared rows of {len(rows)} linked rows, got {msg.name}")
    shared = rows[unpack_mask(msg.payload, len(rows))]
    return shared[ordered([data.ids[r] for r in shared], seed)]


def _fixed_text(column: np.ndarray) -> np.ndarray:
    """A categorical column (object: str / ``None``) as fixed-width text, whose bytes a fingerprint can hash."""
    return np.array(["\x00" if v is None else str(v) for v in column], dtype=str)


def _fields(request: TrainRequest) -> dict:
    return {k: v for k, v in vars(request).items() if k not in ("session", "model_id", "payload")}


def active_job(
    sessions: list[Session],
    data: PartyData,
    request: TrainRequest,
    blinder,
    *,
    party: str,
    passive_parties: list[str],
    scheme: str = DEFAULTS.he,
    key_bits: int = DEFAULTS.key_bits,
    checkpoints: Path | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> dict:
    """The label holder's side; returns metrics, timings and its part of the model (JSON dict).

    ``checkpoints``: a folder for this job's checkpoint; an interrupted run resumes from it.
    ``progress(what, fraction)`` hears of each completed tree.
    """
    started = time.perf_counter()
    X, names, categorical = features(data)
    fields = _fields(request)
    rows = _align_active(sessions, data, request.seed, blinder)
    ids = [data.ids[r] for r in rows]
    test, valid = split_rows(ids, fields)
    train_rows, test_rows = rows[~test], rows[test]
    if len(train_rows) < 10 or len(test_rows) < 2:
        raise InputError(f"too few shared rows to train and test ({len(train_rows)} train, {len(test_rows)} test)")
    y = data.y
    if y is None:
        raise InputError(f"{data.source or 'the active party'}: no label column")
    if np.unique(y[train_rows]).size < 2:
        raise InputError("the training rows hold only one class")
    if fields["early_stopping_rounds"] and not valid.any():
        raise InputError("too few shared rows for a validation split (early stopping)")
    job = checkpoint.fingerprint(
        {**fields, "party": party, "passive": passive_parties},
        data.X[train_rows],
        *[_fixed_text(c[train_rows]) for c in data.categorical.values()],
        y[train_rows],
        ids=[data.ids[r] for r in train_rows],
    )
    path = checkpoint.path_for(checkpoints, job) if checkpoints else None
    resume = checkpoint.load_active(path, job) if path else None
    # GOSS's random rows come from a seed only the label holder knows (the request's seed is the
    # passive parties' too); a resumed run keeps the checkpoint's.
    goss_seed = resume.goss_seed if resume and resume.goss_seed is not None else secrets.randbits(63)
    model = VerticalBoostingClassifier(
        sessions,
        **estimator_kwargs(fields),
        goss_seed=goss_seed,
        scheme=scheme,
        key_bits=key_bits,
        first_tree_active_only=request.first_tree_active_only,
        categorical=categorical,
        engine=blinder.engine,
    )

    def on_tree(done: Resume) -> None:
        if path:
            checkpoint.save_active(path, job, done)
        if progress:
            progress(f"tree {len(done.trees)} of {request.n_trees}", len(done.trees) / request.n_trees)

    trained = time.perf_counter()
    model.fit(
        X[train_rows],
        y[train_rows],
        valid[~test],
        resume=resume,
        on_tree=on_tree,
    )
    train_seconds = time.perf_counter() - trained
    proba = model.predict_proba(X[test_rows], request.model_id)[:, 1]
    if path:
        checkpoint.remove(path)
    grown = max(1, len(model.trees_) - model.resumed_)
    saved = model_io.active_json(
        request.model_id,
        party,
        model.binner_,
        names,
        model.base_score_,
        model.trees_,
        model.split_ids_,
        passive_parties,
        {
            k: fields[k]
            for k in (
                "n_trees",
                "max_depth",
                "bins",
                "learning_rate",
                "l2",
                "min_child_weight",
                "goss_top_ppm",
                "goss_other_ppm",
                "early_stopping_rounds",
                "seed",
            )
        },
    )
    return {
        "metrics": summary(y[test_rows], proba),
        "n_train": int(len(train_rows)),
        "n_test": int(len(test_rows)),
        "n_valid": int(valid.sum()),
        "rows_left_out": data.rows_left_out,
        "n_trees": len(model.trees_),
        "resumed_trees": model.resumed_,
        "goss_seed": goss_seed,  # the label holder's own record (a validator recomputes GOSS's rows with it)
        "train_seconds": round(train_seconds, 2),
        "setup_seconds": round(model.setup_seconds_, 2),  # binning and key generation, before the first tree
        "seconds_per_tree": round((train_seconds - model.setup_seconds_) / grown, 3),
        "seconds": round(time.perf_counter() - started, 2),
        "model": saved,
        "test_ids": [data.ids[i] for i in test_rows],
        "test_scores": proba.tolist(),
        "test_labels": y[test_rows].astype(int).tolist(),
    }


def passive_job(
    session: Session,
    data: PartyData,
    request: TrainRequest,
    blinder,
    *,
    party: str,
    checkpoints: Path | None = None,
    min_bin_rows: int = MIN_BIN_ROWS,
) -> dict:
    """A passive party's side; returns its part of the model (JSON dict). ``min_bin_rows`` is this
    party's own setting (its node config), never taken from the request."""
    X, names, categorical = features(data)
    fields = _fields(request)
    rows = _align_passive(session, data, request.seed, blinder)
    ids = [data.ids[r] for r in rows]
    test, _valid = split_rows(ids, fields)
    train_rows, test_rows = rows[~test], rows[test]
    binner = Binner(request.bins, request.seed, categorical).fit(X[train_rows])
    job = checkpoint.fingerprint(
        {**fields, "party": party, "peer": session.peer},
        data.X[train_rows],
        *[_fixed_text(c[train_rows]) for c in data.categorical.values()],
        ids=[data.ids[r] for r in train_rows],
    )
    path = checkpoint.path_for(checkpoints, job) if checkpoints else None
    role = PassiveBoost(
        session.id,
        binner.transform(X[train_rows]),
        checkpoint.load_passive(path, job) if path else None,
        min_bin_rows,
        binner.categorical_,
    )
    serve_passive(session, role, on_split=(lambda r: checkpoint.save_passive(path, job, r.splits_)) if path else None)
    serve_predictions(session, binner.transform(X[test_rows]), role.split_bins_, binner.missing_bin)
    if path:
        checkpoint.remove(path)
    return {
        "model": model_io.passive_json(request.model_id, party, binner, names, role.split_bins_),
        "n_train": int(len(train_rows)),
        "n_test": int(len(test_rows)),
        "rows_left_out": data.rows_left_out,
    }

"""The federated estimator, scikit-learn style, for the label holder; and the passive parties' loop.

``VerticalBoostingClassifier`` drives ``ActiveBoost`` over one live ``Session`` per passive
party; rows must already be aligned (row i is the same person everywhere, see
``tandem.learn.federated``). ``serve_passive`` drives ``PassiveBoost`` on the other side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from tandem.crypto.he import SecretHe
from tandem.engine import LocalEngine
from tandem.learn.binning import Binner
from tandem.learn.boosting import PARAMS, binary_label, sigmoid
from tandem.learn.options import DEFAULTS as D
from tandem.learn.rounds import BoostParams, valid_rows
from tandem.learn.secureboost.active import ActiveBoost
from tandem.learn.secureboost.passive import PassiveBoost
from tandem.learn.secureboost.predict import passive_bitmaps, predict_federated
from tandem.learn.secureboost.shared import Resume
from tandem.learn.splitting import SplitParams
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.framing import unframe_blobs, unpack_mask
from tandem.protocols.wire import PredictBitmaps, PredictRequest
from tandem.transport.session import Session

OnTree = Callable[[Resume], None]  # called after each completed tree (e.g. to write a checkpoint)


class VerticalBoostingClassifier:
    """SecureBoost for the label holder: ``fit(X, y)`` with ``X`` (n, fa) this party's features of
    the aligned rows; every passive session serves the same rows. Parameters as
    ``HistBoostingClassifier`` plus ``first_tree_active_only``, the encryption ``scheme``
    ("ou" or "paillier") and ``key_bits``; ``categorical``: indices of this party's categorical
    features (passive parties' are not supported yet).

    Fitted: ``binner_``, ``trees_``, ``split_ids_`` (per tree: node -> (party, split id)),
    ``base_score_``, ``scores_`` (validation score per tree), ``resumed_`` (trees taken
    from ``resume``), ``raw_`` (scores of the fitted rows), ``setup_seconds_`` (binning and key
    generation, before the first tree). ``engine``: where the gradients are encrypted (a node's workers).
    """

    def __init__(
        self,
        passive: Sequence[Session] = (),
        *,
        n_trees: int = D.trees,
        max_depth: int = D.max_depth,
        learning_rate: float = D.learning_rate,
        bins: int = D.bins,
        l2: float = D.l2,
        min_child_weight: float = D.min_child_weight,
        min_gain: float = 0.0,
        goss: tuple[float, float] | None = None,
        early_stopping_rounds: int = D.early_stopping,
        validation_fraction: float = D.validation_fraction,
        seed: int = 0,
        goss_seed: int | None = None,
        first_tree_active_only: bool = D.first_tree_active_only,
        scheme: str = D.he,
        key_bits: int = D.key_bits,
        categorical: tuple[int, ...] | list[int] = (),
        engine: LocalEngine | None = None,
    ):
        self.passive = list(passive)
        self.engine = engine  # where the gradients are encrypted (a node's workers); not a parameter
        self.n_trees, self.max_depth, self.learning_rate, self.bins = n_trees, max_depth, learning_rate, bins
        self.l2, self.min_child_weight, self.min_gain, self.goss = l2, min_child_weight, min_gain, goss
        self.early_stopping_rounds, self.validation_fraction = early_stopping_rounds, validation_fraction
        self.goss_seed = goss_seed
        self.seed, self.first_tree_active_only = seed, first_tree_active_only
        self.scheme, self.key_bits = scheme, key_bits
        self.categorical = categorical

    def get_params(self) -> dict:
        names = [p for p in PARAMS if p not in ("first_tree_features", "min_bin_rows", "passive_from", "categorical")]
        return {k: getattr(self, k) for k in names + ["first_tree_active_only", "scheme", "key_bits", "categorical"]}

    def boost_params(self) -> BoostParams:
        return BoostParams(
            self.n_trees,
            self.max_depth,
            self.learning_rate,
            self.bins,
            SplitParams(self.l2, self.min_child_weight, self.min_gain),
            self.first_tree_active_only,
            self.goss,
            self.early_stopping_rounds,
            self.seed,
            self.goss_seed,
        ).check()

    def fit(
        self, X, y, valid: np.ndarray | None = None, *, resume: Resume | None = None, on_tree: OnTree | None = None
    ) -> VerticalBoostingClassifier:
        """``valid`` (n,) bool: rows held out for early stopping (default: a random share when it is on).
        ``resume``: a checkpoint to continue from if every passive party still holds its splits."""
        if not self.passive:
            raise ValueError("no passive party sessions")
        began = time.perf_counter()
        params = self.boost_params()
        y = binary_label(y)
        self.binner_ = Binner(self.bins, self.seed, self.categorical).fit(X)
        binned = self.binner_.transform(X)
        if valid is None:
            valid = (
                valid_rows(len(y), self.validation_fraction, self.seed)
                if params.early_stopping_rounds
                else np.zeros(len(y), dtype=bool)
            )
        he = SecretHe.generate(self.scheme, self.key_bits)
        role = ActiveBoost(
            [s.id for s in self.passive], binned, y, params, he, ~valid, resume, self.binner_.categorical_, self.engine
        )
        self.setup_seconds_ = time.perf_counter() - began  # binning and key generation (OU: 0.3-4 s, by chance)
        self._send(role.start())
        done = 0
        while not role.done:
            party = role.awaiting()[0]
            self._send(role.receive(party, self.passive[party].recv()))
            if on_tree and role.completed_ > done:
                done = role.completed_
                on_tree(role.checkpoint())
        self.trees_, self.split_ids_, self.base_score_ = role.trees_, role.split_ids_, role.base_score_
        self.scores_, self.resumed_, self.raw_ = role.scores_, role.resumed_, role.raw_
        return self

    def _send(self, outbox) -> None:
        for party, msg in outbox:
            self.passive[party].send(msg)

    def decision_function(self, X, model_id: str = "") -> np.ndarray:
        """Raw scores (n,) of rows every passive party holds in the same order (``serve_predictions``)."""
        binned = self.binner_.transform(X)
        masks = {}
        for k, session in enumerate(self.passive):
            ids = [sid for t in self.split_ids_ for party, sid in t.values() if party == k]
            session.send(PredictRequest(session.id, model_id, len(binned), "\n".join(ids).encode()))
            reply = session.recv()
            if not isinstance(reply, PredictBitmaps):
                raise RemoteProtocolError(f"passive party {k} answered {reply.name} to a prediction request")
            for sid, blob in zip(ids, unframe_blobs(reply.payload, len(ids))):
                masks[(k, sid)] = unpack_mask(blob, len(binned))
        return predict_federated(
            self.trees_, self.split_ids_, self.base_score_, binned, self.binner_.missing_bin, masks
        )

    def predict_proba(self, X, model_id: str = "") -> np.ndarray:
        """Shape ``(n, 2)``: probabilities of class 0 and class 1."""
        p = sigmoid(self.decision_function(X, model_id))
        return np.column_stack([1 - p, p])


def serve_passive(session: Session, role: PassiveBoost, on_split: Callable[[PassiveBoost], None] | None = None) -> None:
    """Run a passive party's side of training. ``on_split`` runs after new splits are made and
    before the active party hears of them (so a checkpoint never lags behind it)."""
    session.send_all(role.start())
    while not role.done:
        made = len(role.splits_)
        out = role.receive(session.recv())
        if on_split and len(role.splits_) != made:
            on_split(role)
        session.send_all(out)


def serve_predictions(
    session: Session, binned: np.ndarray, splits: dict[str, tuple[int, int, bool, tuple[int, ...]]], missing_bin: int
) -> None:
    """Answer one prediction request with go-left bitmaps over ``binned`` (n, fp) rows."""
    ask = session.recv()
    if not isinstance(ask, PredictRequest):
        raise RemoteProtocolError(f"expected a prediction request, got {ask.name}")
    session.send(passive_bitmaps(ask, binned, splits, missing_bin))

"""Scoring rows with the scorecard's passive part (``scorecard/1``, after the fit): sans-I/O roles.

The label holder sends each passive feature's logit contribution per final bin (coefficient x WoE: the
passive party's part of the scorecard, which it keeps) and a bitmap of the shared rows to score; the
passive party answers with the summed contribution of its features for each of those rows. The label
holder adds its own part. Used for the rows that calibrate the regression and for the test rows.
"""

from __future__ import annotations

import numpy as np

from tandem.learn.scorecard.shared import State
from tandem.protocols.errors import LocalProtocolError
from tandem.protocols.framing import frame_blobs, pack_mask, unframe_blobs, unpack_mask
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import PartialScores, ScoreRequest


class ActiveScoring(Role):
    """The label holder. ``features`` the passive features in the model (that party's order);
    ``contributions`` (n_bins,) float64 logit contribution per bin of each; ``rows`` (N,) bool over the shared
    rows (none: the request only hands the passive party its final part).

    After ``DONE``: ``scores_`` (rows.sum(),) float64, the passive part of each asked row's logit."""

    def __init__(self, session: str, features: list[str], contributions: list[np.ndarray], rows: np.ndarray):
        if len(features) != len(contributions):
            raise LocalProtocolError("one contribution table per feature")
        self.session, self.features, self.rows = session, list(features), np.asarray(rows, dtype=bool)
        self.contributions = [np.asarray(c, dtype="<f8") for c in contributions]
        self.state = State.START
        self.scores_ = np.zeros(0)

    def start(self) -> list[Message]:
        table = b"".join(c.tobytes() for c in self.contributions)
        self.state = State.WAIT_SUMS
        return [ScoreRequest(self.session, self.features, len(self.rows), frame_blobs([table, pack_mask(self.rows)]))]

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_scores(self, msg: PartialScores) -> list[Message]:
        k = int(self.rows.sum())
        if msg.n_rows != k or len(msg.payload) != 8 * k:
            self._fail(f"partial scores of {msg.n_rows} rows ({len(msg.payload)} bytes), {k} asked for")
        scores = np.frombuffer(msg.payload, dtype="<f8").astype(np.float64)
        if not np.isfinite(scores).all():
            self._fail("partial scores hold values that are not finite")
        self.scores_ = scores
        self.state = State.DONE
        return []

    HANDLERS = {(State.WAIT_SUMS, PartialScores): _on_scores}


class PassiveScoring(Role):
    """A passive party. ``bins`` (N, F) int the final bin of every shared row in each feature; ``n_bins`` (F,);
    ``names`` its features as the label holder knows them. After ``DONE``: ``features_`` and
    ``contributions_`` (its part of the scorecard, in logit units per bin)."""

    def __init__(self, session: str, bins: np.ndarray, n_bins: list[int], names: list[str]):
        self.session, self.bins, self.n_bins, self.names = session, np.asarray(bins, np.int64), list(n_bins), names
        self.state = State.WAIT_KEY
        self.features_: list[str] = []
        self.contributions_: list[np.ndarray] = []

    def start(self) -> list[Message]:
        return []

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_request(self, msg: ScoreRequest) -> list[Message]:
        if msg.n_rows != len(self.bins):
            self._fail(f"score request over {msg.n_rows} shared rows, this party has {len(self.bins)}")
        if len(set(msg.features)) != len(msg.features) or set(msg.features) - set(self.names):
            self._fail("score request names features this party does not have, or one twice")
        picked = [self.names.index(x) for x in msg.features]
        table, mask = unframe_blobs(msg.payload, 2)
        sizes = [self.n_bins[j] for j in picked]
        if len(table) != 8 * sum(sizes):
            self._fail(f"score request holds {len(table) // 8} contributions, the features have {sum(sizes)} bins")
        values = np.frombuffer(table, dtype="<f8").astype(np.float64)
        if not np.isfinite(values).all():
            self._fail("score request holds contributions that are not finite")
        rows = unpack_mask(mask, len(self.bins))
        ends = np.cumsum(sizes)
        self.contributions_ = [values[e - s : e] for s, e in zip(sizes, ends)]
        self.features_ = list(msg.features)
        scores = np.zeros(int(rows.sum()))
        for j, c in zip(picked, self.contributions_):
            scores += c[self.bins[rows, j]]
        self.state = State.DONE
        return [PartialScores(self.session, len(scores), scores.astype("<f8").tobytes())]

    HANDLERS = {(State.WAIT_KEY, ScoreRequest): _on_request}

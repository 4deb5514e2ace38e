"""A passive party's side of scorecard binning (features, no labels), as a sans-I/O role."""

from __future__ import annotations

import numpy as np

from tandem.crypto.he import HeError, PublicHe
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.learn.scorecard.prebin import Layout
from tandem.learn.scorecard.shared import MAX_FEATURES, State
from tandem.learn.scorecard.tables import assign_problem, parse_assign
from tandem.protocols.errors import LocalProtocolError
from tandem.protocols.framing import bucket_sums_payload
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import BinMerge, EncryptedLabels, PrebinSums, ScorecardKey


class PassiveBinning(Role):
    """A feature holder without labels. ``prebin_ids`` (n, f) uint8: the pre-bin of each training row (shared
    order) in each feature (``Prebins.transform``); ``layouts``: one ``Layout`` per feature; ``names``:
    what the label holder calls them (opaque ``f0``.. or shared names); ``min_bin_rows``: this party's own
    minimum (its node config), which every non-empty pre-bin must meet before anything is sent.

    Receives the public key and the encrypted labels, sums them per pre-bin (``PublicHe.bucket_sums``, one
    pass per chunk, added up) and returns the sums; then accepts only a merge an honest label holder could
    send (``tables.assign_problem``). After ``DONE``: ``assign_`` (one (n_prebins,) int64 array per feature:
    pre-bin -> final bin); ``Prebins.final_edges`` turns one into its final edges.
    """

    def __init__(
        self,
        session: str,
        prebin_ids: np.ndarray,
        layouts: list[Layout],
        names: list[str],
        min_bin_rows: int = MIN_BIN_ROWS,
    ):
        ids = np.asarray(prebin_ids)
        if ids.ndim != 2 or ids.shape[1] != len(layouts) or len(names) != len(layouts):
            raise LocalProtocolError("prebin_ids must be (rows, features), one layout and one name per feature")
        if not 1 <= len(layouts) <= MAX_FEATURES or min_bin_rows < 1:
            raise LocalProtocolError(f"1..{MAX_FEATURES} features and min_bin_rows >= 1 are needed")
        self.n_bins = max(lay.n_prebins for lay in layouts)
        for j, (name, layout) in enumerate(zip(names, layouts)):
            problem = layout.problem()
            if problem or int(ids[:, j].max(initial=0)) >= layout.n_prebins:
                raise LocalProtocolError(f"feature '{name}': pre-bin ids do not fit its layout ({problem or 'ids'})")
            counts = np.bincount(ids[:, j], minlength=layout.n_prebins)
            small = np.flatnonzero((counts < min_bin_rows) & ((counts > 0) | (np.arange(len(counts)) < layout.missing)))
            if len(small):
                k = int(small[0])
                raise LocalProtocolError(
                    f"feature '{name}': pre-bin {k} holds {counts[k]} training rows, below min_bin_rows "
                    f"{min_bin_rows}; pre-bin it with Prebins.fit (which merges small pre-bins)"
                )
        # the missing pre-bin travels in the last bucket, as the bucket-sum primitive expects
        miss = np.array([lay.missing for lay in layouts])
        self.padded = np.where(ids == miss, self.n_bins - 1, ids).astype(np.uint8)
        self.session, self.layouts, self.names, self.min_bin_rows = session, layouts, list(names), min_bin_rows
        self.state = State.START
        self.he: PublicHe | None = None
        self._sums: dict[int, object] = {}
        self._next = (0, 0)  # (seq, first row) expected next
        self.assign_: list[np.ndarray] = []

    def start(self) -> list[Message]:
        self.state = State.WAIT_KEY
        return []

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_key(self, msg: ScorecardKey) -> list[Message]:
        if msg.n_rows != len(self.padded):
            self._fail(f"label holder has {msg.n_rows} training rows, this party {len(self.padded)}")
        try:
            self.he = PublicHe.from_bytes(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        self.state = State.WAIT_LABELS
        return []

    def _on_labels(self, msg: EncryptedLabels) -> list[Message]:
        he, n = self.he, len(self.padded)
        if he is None:
            raise LocalProtocolError("labels before the public key")
        if (msg.seq, msg.first) != self._next or msg.n_rows < 1 or msg.first + msg.n_rows > n:
            self._fail(f"encrypted labels chunk {msg.seq} (rows {msg.first}+{msg.n_rows}) out of order or range")
        if msg.last != (msg.first + msg.n_rows == n):
            self._fail("encrypted labels end before or after the last training row")
        try:
            cts = he.load(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        if cts.rows != msg.n_rows or cts.cols != 1:
            self._fail("encrypted labels do not match the rows they are for")
        rows = self.padded[msg.first : msg.first + msg.n_rows]
        for i, blob in enumerate(he.bucket_sums(cts, np.arange(msg.n_rows), rows, self.n_bins)):
            part = he.load(blob)
            self._sums[i] = part if i not in self._sums else he.add(self._sums[i], part)
        self._next = (msg.seq + 1, msg.first + msg.n_rows)
        if not msg.last:
            return []
        passes = [he.dump(self._sums[i]) for i in sorted(self._sums)]
        self.state = State.WAIT_MERGE
        return [
            PrebinSums(
                self.session,
                self.names,
                [lay.kind for lay in self.layouts],
                [lay.n_values for lay in self.layouts],
                [lay.n_special for lay in self.layouts],
                self.n_bins,
                bucket_sums_payload(passes, self.n_bins),
            )
        ]

    def _on_merge(self, msg: BinMerge) -> list[Message]:
        if msg.features != self.names or len(msg.assignments) != len(self.names):
            self._fail("bin merge does not name this party's features in order")
        out = []
        for name, layout, text in zip(self.names, self.layouts, msg.assignments):
            assign = parse_assign(text)
            problem = "not a list of bin ids" if assign is None else assign_problem(assign, layout)
            if problem or assign is None:
                self._fail(f"bin merge of feature '{name}' refused: {problem}")
            out.append(assign)
        self.assign_ = out
        self.state = State.DONE
        return []

    HANDLERS = {
        (State.WAIT_KEY, ScorecardKey): _on_key,
        (State.WAIT_LABELS, EncryptedLabels): _on_labels,
        (State.WAIT_MERGE, BinMerge): _on_merge,
    }

"""The label holder's side of scorecard binning with one passive party, as a sans-I/O role."""

from __future__ import annotations

import numpy as np

from tandem.crypto.he import HeError, SecretHe
from tandem.errors import InputError
from tandem.learn.scorecard.optimal import merge_from_counts
from tandem.learn.scorecard.options import MAX_PREBINS, BinningOptions
from tandem.learn.scorecard.prebin import Layout
from tandem.learn.scorecard.shared import CHUNK_ROWS, MAX_FEATURES, State
from tandem.learn.scorecard.tables import BinTable, assign_wire
from tandem.protocols.framing import bucket_sums_passes
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import BinMerge, EncryptedLabels, PrebinSums, ScorecardKey


class ActiveBinning(Role):
    """The label holder. ``y`` (n,) 0/1: the labels of the training rows in shared order; ``he``: its
    secret keys; ``opts``: the binning options (all of them apply here).

    Sends the public key and every label once, encrypted as a packed (event, 1) plaintext per row
    (``SecretHe.encrypt_gh``), in chunks of ``chunk_rows``. Receives the passive party's per-pre-bin
    encrypted sums, decrypts them to (events, rows) per pre-bin, checks that they can be true (each
    feature's rows add up to n and its events to this side's event total, no value or special pre-bin
    empty) and merges them by ``optimal.merge_from_counts``; sends back only the merge.

    After ``DONE``: ``tables_`` (feature name -> ``BinTable``, in the passive party's order).
    """

    def __init__(self, session: str, y: np.ndarray, he: SecretHe, opts: BinningOptions, chunk_rows: int = CHUNK_ROWS):
        y = np.asarray(y)
        if y.ndim != 1 or not np.isin(y, (0, 1)).all():
            raise InputError("labels must be a 1-d array of 0 and 1")
        if y.min(initial=1) == y.max(initial=0):
            raise InputError("labels must hold both 0 and 1 among the training rows")
        if chunk_rows < 1:
            raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.session, self.y, self.he, self.opts = session, y.astype(np.int64), he, opts.check()
        self.chunk_rows = chunk_rows
        self.state = State.START
        self.tables_: dict[str, BinTable] = {}

    def start(self) -> list[Message]:
        """The public key, then the encrypted labels (one message per chunk)."""
        n = len(self.y)
        out: list[Message] = [ScorecardKey(self.session, n, self.he.public_bytes())]
        starts = list(range(0, n, self.chunk_rows))
        for seq, first in enumerate(starts):
            part = self.y[first : first + self.chunk_rows]
            cts = self.he.encrypt_gh(part, np.ones(len(part), dtype=np.int64))
            out.append(EncryptedLabels(self.session, seq, first, len(part), seq == len(starts) - 1, self.he.dump(cts)))
        self.state = State.WAIT_SUMS
        return out

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _layouts(self, msg: PrebinSums) -> list[Layout]:
        f = len(msg.features)
        if not 1 <= f <= MAX_FEATURES or len(set(msg.features)) != f:
            self._fail(f"prebin sums name {f} features (1..{MAX_FEATURES}, each once)")
        if not len(msg.kinds) == len(msg.n_values) == len(msg.n_special) == f:
            self._fail("prebin sums: the layout lists do not match the features")
        layouts = [Layout(*t) for t in zip(msg.kinds, msg.n_values, msg.n_special)]
        for name, layout in zip(msg.features, layouts):
            problem = layout.problem()
            if problem:
                self._fail(f"prebin sums of feature '{name}': {problem}")
        if msg.n_bins != max(lay.n_prebins for lay in layouts) or msg.n_bins > MAX_PREBINS:
            self._fail(f"prebin sums: n_bins {msg.n_bins} does not fit the layouts")
        return layouts

    def _on_sums(self, msg: PrebinSums) -> list[Message]:
        layouts = self._layouts(msg)
        try:
            events, counts = self.he.decrypt_bucket_sums(
                bucket_sums_passes(msg.payload, msg.n_bins), len(layouts), msg.n_bins
            )
        except HeError:
            self._fail("prebin sums are not readable ciphertexts of the agreed size")
        n, n_events = len(self.y), int(self.y.sum())
        assignments = []
        for j, (name, layout) in enumerate(zip(msg.features, layouts)):
            used = list(range(layout.n_prebins - 1)) + [msg.n_bins - 1]
            ev, ct = events[j, used], counts[j, used]
            padding = np.delete(np.stack([events[j], counts[j]]), used, axis=1)
            if padding.any() or ct.sum() != n or ev.sum() != n_events or (ev < 0).any() or (ev > ct).any():
                self._fail(f"prebin sums of feature '{name}' do not add up to the training rows and their events")
            if (ct[: layout.missing] < 1).any():
                self._fail(f"prebin sums of feature '{name}' have an empty value or special pre-bin")
            try:
                table = merge_from_counts(name, layout, ev, ct, self.opts)
            except ValueError as exc:
                raise InputError(f"binning feature '{name}': {exc}") from None
            self.tables_[name] = table
            assignments.append(assign_wire(table.assign))
        self.state = State.DONE
        return [BinMerge(self.session, list(msg.features), assignments)]

    HANDLERS = {(State.WAIT_SUMS, PrebinSums): _on_sums}

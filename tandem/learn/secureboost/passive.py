"""A passive party of SecureBoost (features, no labels), as a sans-I/O role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from tandem.crypto.he import BucketSums, HeError, PublicHe
from tandem.learn.buckets import MIN_BIN_ROWS, bin_counts, is_cut, merge_bins, to_buckets
from tandem.learn.secureboost.shared import State, sent_child
from tandem.learn.tree import goes_left
from tandem.protocols.errors import LocalProtocolError
from tandem.protocols.framing import frame_blobs, histogram_payload, pack_mask, unframe_blobs, unpack_mask
from tandem.protocols.message import Message
from tandem.protocols.role import Role
from tandem.protocols.wire import (
    BoostDone,
    BoostReady,
    BoostStart,
    EncryptedGradients,
    EncryptedHistograms,
    PassivePartitions,
    PublicKeyMsg,
    SplitDecisions,
    SplitRequest,
)


@dataclass
class _Node:
    id: int
    rows: np.ndarray  # every row routed here (sorted)
    depth: int
    sibling: int = -1
    buckets: np.ndarray | None = None  # (fp, bins) bool, the bucket structure its sums are taken over


class PassiveBoost(Role):
    """A feature holder without labels. ``binned`` (n, fp) uint8; ``saved`` holds the splits of an
    interrupted run (split id -> (feature, bin, missing_left, tree, left bins)), offered for a resume.
    ``categorical`` (fp,) bool: its categorical features (their bins are never merged with each
    other; a split is the set of bins going left, ``left bins``, empty for a numeric split).
    ``min_bin_rows`` (this party's own setting, never the active party's): no bucket sum it sends
    covers fewer rows (``tandem.learn.buckets``; 1: every bin its own bucket).

    Split requests are checked against what an honest active party could ask: one request per
    level, each node of the frontier at most once, a slot on the node's bucket boundaries (categorical:
    a set of bins that hold rows of the node, of a feature whose bins are not merged there); every
    split handed out must then be used for its node. Trees come in increasing order below the
    agreed number, so a tree holds at most one split request per node it was sent gradients for.

    ``splits_`` (split id -> (feature, bin, missing_left, tree, left bins)) grows as splits are made; real
    thresholds never enter the role (the caller's binner maps a slot to one when saving the model).
    """

    def __init__(
        self,
        session: str,
        binned: np.ndarray,
        saved: dict[str, tuple[int, int, bool, int, tuple[int, ...]]] | None = None,
        min_bin_rows: int = MIN_BIN_ROWS,
        categorical: np.ndarray | None = None,
    ):
        if min_bin_rows < 1:
            raise LocalProtocolError(f"min_bin_rows must be >= 1, got {min_bin_rows}")
        self.session, self.binned, self.min_bin_rows = session, binned, min_bin_rows
        self._saved = dict(saved or {})
        fp = binned.shape[1]
        self.categorical = np.zeros(fp, dtype=bool) if categorical is None else np.asarray(categorical, dtype=bool)
        if self.categorical.shape != (fp,):
            raise LocalProtocolError(f"categorical must be a mask of the {fp} features")
        self.state = State.START
        self.splits_: dict[str, tuple[int, int, bool, int, tuple[int, ...]]] = {}
        self.he: PublicHe | None = None
        self._pending: dict[int, tuple[str, np.ndarray]] = {}
        self._parts: list = []  # the current tree's gradient ciphertexts, one array per part
        self._asked = False  # a split request came for the current level
        self._last_tree = -1

    @property
    def split_bins_(self) -> dict[str, tuple[int, int, bool, tuple[int, ...]]]:
        """Split id -> (feature, bin, missing_left, left bins): what prediction and the model file need."""
        return {sid: (f, b, m, left) for sid, (f, b, m, _t, left) in self.splits_.items()}

    def start(self) -> list[Message]:
        self.state = State.WAIT_READY
        return []

    def receive(self, msg: Message) -> list[Message]:
        return self._receive(msg)

    def _on_start(self, msg: BoostStart) -> list[Message]:
        n = len(self.binned)
        if msg.n_rows != n:
            self._fail(f"active party has {msg.n_rows} rows, this party {n}")
        if not 3 <= msg.bins <= 256 or msg.max_depth < 1:
            self._fail(f"unsupported settings (bins {msg.bins}, max depth {msg.max_depth})")
        if int(self.binned.max(initial=0)) >= msg.bins:
            self._fail("this party's features were binned with more bins than agreed")
        self.bins, self.max_depth, self.missing_bin = msg.bins, msg.max_depth, msg.bins - 1
        self.n_trees = msg.n_trees
        mask_blob, ids_blob = unframe_blobs(msg.payload, 2)
        self.train_mask = unpack_mask(mask_blob, n)
        wanted = ids_blob.decode("ascii", "replace").split("\n") if ids_blob else []
        resumable = msg.resume_trees > 0 and all(sid in self._saved for sid in wanted)
        bitmaps = []
        if resumable:
            self.splits_ = {sid: self._saved[sid] for sid in wanted}
            bitmaps = [pack_mask(self._goes_left(np.arange(n), *self.split_bins_[sid])) for sid in wanted]
        self.state = State.WAIT_KEY
        categorical = np.flatnonzero(self.categorical).tolist()
        return [BoostReady(self.session, self.binned.shape[1], resumable, frame_blobs(bitmaps), categorical)]

    def _on_key(self, msg: PublicKeyMsg) -> list[Message]:
        try:
            self.he = PublicHe.from_bytes(msg.payload)
        except HeError as exc:
            self._fail(str(exc))
        self.splits_ = {sid: s for sid, s in self.splits_.items() if s[3] < msg.first_tree}
        self._last_tree = msg.first_tree - 1
        self.state = State.WAIT_GRADIENTS
        return []

    def _on_done(self, msg: BoostDone) -> list[Message]:
        self.splits_ = {sid: s for sid, s in self.splits_.items() if s[3] < msg.n_trees}
        self.state = State.DONE
        return []

    def _goes_left(
        self, rows: np.ndarray, f: int, b: int, missing_left: bool, left_bins: tuple[int, ...] = ()
    ) -> np.ndarray:
        return goes_left(self.binned[rows, f], b, missing_left, self.missing_bin, left_bins)

    @property
    def _key(self) -> PublicHe:
        """The active party's public key; the table admits gradients only after it arrived."""
        if self.he is None:
            raise LocalProtocolError("gradients before the public key")
        return self.he

    def _on_gradients(self, msg: EncryptedGradients) -> list[Message]:
        """One part of a tree's encrypted gradients. The root's bucket sums grow part by part, so they
        are taken while the later parts are on the wire; its histograms go out with the last part."""
        mask_blob, cts_blob = unframe_blobs(msg.payload, 2)
        if self.state is State.WAIT_GRADIENTS:
            self._start_tree(msg, mask_blob)
        elif (msg.tree, msg.part, msg.parts) != (self.tree, len(self._parts), self._n_parts) or mask_blob:
            self._fail(
                f"gradients part {msg.part} of tree {msg.tree}: expected part {len(self._parts)} of tree {self.tree}"
            )
        try:
            cts = self._key.load(cts_blob)
        except HeError as exc:
            self._fail(str(exc))
        first, last = self._starts[-1], self._starts[-1] + cts.rows
        if (
            cts.rows < 1
            or last > len(self._sample_rows)
            or (len(self._parts) + 1 == msg.parts) != (last == len(self._sample_rows))
        ):
            self._fail("gradients do not match the rows they are for")
        self._parts.append(cts)
        self._starts.append(last)
        buckets = self._root_buckets
        self._root_sums.add(cts, np.arange(cts.rows), to_buckets(self.binned[self._sample_rows[first:last]], buckets))
        if last < len(self._sample_rows):
            return []
        self.state = State.WAIT_DECISIONS
        payload = histogram_payload(buckets, self._root_sums.passes(packed=True), self.bins)
        return [EncryptedHistograms(self.session, self.tree, [0], frame_blobs([payload]))]

    def _start_tree(self, msg: EncryptedGradients, mask_blob: bytes) -> None:
        """Part 0: the tree's sample and the root's bucket structure."""
        in_sample = unpack_mask(mask_blob, len(self.binned))
        if not self._last_tree < msg.tree < self.n_trees or msg.part != 0:
            self._fail(f"gradients for tree {msg.tree}: expected a tree after {self._last_tree}, below {self.n_trees}")
        self._last_tree = self.tree = msg.tree
        if (in_sample & ~self.train_mask).any():
            self._fail("gradients of rows outside the training rows")
        self._in_sample, self._sample_rows = in_sample, np.flatnonzero(in_sample)
        if not 1 <= msg.parts <= len(self._sample_rows):
            self._fail("gradients do not match the rows they are for")
        self._pos = np.cumsum(in_sample) - 1  # row -> its ciphertext's position in the sample
        self._n_parts, self._parts = msg.parts, []
        self._starts = [0]  # part k holds the ciphertexts of sample positions [starts[k], starts[k + 1])
        counts = bin_counts(self.binned[self._sample_rows], self.bins)
        self._root_buckets = merge_bins([counts], self.min_bin_rows, None, self.categorical)
        root = _Node(0, np.arange(len(self.binned)), 0, buckets=self._root_buckets)
        self._root_sums = BucketSums(self._key, self.bins)
        self._frontier = [root]
        self._next_id, self._pending, self._asked = 1, {}, False
        self.state = State.WAIT_GRADIENT_PARTS

    def _sums(self, rows: np.ndarray, binned: np.ndarray) -> list[bytes]:
        """Bucket sums of sample ``rows`` (sorted) with bucket indices ``binned`` (k, fp), over the parts
        their ciphertexts came in."""
        pos = self._pos[rows]
        cut = np.searchsorted(pos, self._starts)
        sums = BucketSums(self._key, self.bins)
        for k, cts in enumerate(self._parts):
            sums.add(cts, pos[cut[k] : cut[k + 1]] - self._starts[k], binned[cut[k] : cut[k + 1]])
        return sums.passes(packed=True)

    def _histograms(self) -> list[Message]:
        """Encrypted histograms of the frontier below the root, in one message: of each pair of siblings
        only the one ``sent_child`` names (the active party derives the other). Sums are per bucket: bins
        merged until every bucket holds ``min_bin_rows`` rows of the sample in the node and its sibling."""
        if not self._frontier:
            self.state = State.WAIT_GRADIENTS
            return []
        nodes, payloads = [], []
        grown = {n.id: n.rows[self._in_sample[n.rows]] for n in self._frontier}
        for n in self._frontier:
            if sent_child(n.id, len(grown[n.id]), n.sibling, len(grown[n.sibling])) != n.id:
                continue
            rows = grown[n.id]
            counts = [bin_counts(self.binned[grown[i]], self.bins) for i in (n.id, n.sibling)]
            n.buckets = merge_bins(counts, self.min_bin_rows, n.buckets, self.categorical)  # n.buckets: the parent's
            for m in self._frontier:
                if m.id == n.sibling:
                    m.buckets = n.buckets
            passes = self._sums(rows, to_buckets(self.binned[rows], n.buckets))
            nodes.append(n.id)
            payloads.append(histogram_payload(n.buckets, passes, self.bins))
        self.state = State.WAIT_DECISIONS
        return [EncryptedHistograms(self.session, self.tree, nodes, frame_blobs(payloads))]

    def _on_request(self, msg: SplitRequest) -> list[Message]:
        if self._asked:
            self._fail(f"a second split request for tree {self.tree}'s level (one per level)")
        self._asked = True
        frontier = {n.id: n for n in self._frontier}
        if (
            msg.tree != self.tree
            or len(msg.slots) != len(msg.nodes)
            or (msg.left_bins and len(msg.left_bins) != len(msg.nodes))
            or len(set(msg.nodes)) != len(msg.nodes)
        ):
            self._fail("malformed split request")
        ids, bitmaps = [], []
        for node_id, slot, left_text in zip(msg.nodes, msg.slots, msg.left_bins or [""] * len(msg.nodes), strict=True):
            try:
                f, b, m = (int(x) for x in slot.split(":"))
            except ValueError:
                self._fail(f"malformed split slot {slot!r}")
            if node_id not in frontier or not 0 <= f < self.binned.shape[1]:
                self._fail(f"split request names no node or slot of this party ({node_id}, {slot!r})")
            node = frontier[node_id]
            if self.categorical[f]:
                left_bins = self._category_set(node, f, b, left_text, slot)
            else:
                left_bins = ()
                if left_text or not 0 <= b < self.bins - 1:
                    self._fail(f"split request names no node or slot of this party ({node_id}, {slot!r})")
                if node.buckets is not None and not is_cut(node.buckets, f, b, bool(m)):
                    self._fail(f"split request for node {node_id} at {slot!r}, inside a merged bucket (no candidate)")
            left = self._goes_left(node.rows, f, b, bool(m), left_bins)
            split_id = secrets.token_hex(8)
            self.splits_[split_id] = (f, b, bool(m), self.tree, left_bins)
            self._pending[node_id] = (split_id, left)
            ids.append(split_id)
            bitmaps.append(pack_mask(left))
        return [PassivePartitions(self.session, self.tree, list(msg.nodes), ids, frame_blobs(bitmaps))]

    def _category_set(self, node: _Node, f: int, b: int, text: str, slot: str) -> tuple[int, ...]:
        """The bins of a categorical split request, checked: ascending, distinct, each holding rows of
        the node's sample, some such bin left out, on a feature whose bins are not merged at the node."""
        try:
            left = tuple(int(x) for x in text.split(","))
        except ValueError:
            self._fail(f"malformed category set {text[:40]!r} for node {node.id}")
        counts = np.bincount(self.binned[node.rows[self._in_sample[node.rows]], f], minlength=self.bins)
        held = np.flatnonzero(counts[: self.missing_bin])  # value bins with rows (missing is never in a set)
        if b != -1 or list(left) != sorted(set(left)) or not set(left) <= set(held.tolist()) or len(left) >= len(held):
            self._fail(f"split request for node {node.id} at {slot!r}: not a category set of the node")
        if node.buckets is not None and not node.buckets[f].all():
            self._fail(f"split request for node {node.id} at {slot!r}: its categories are merged (no candidate)")
        return left

    def _on_decisions(self, msg: SplitDecisions) -> list[Message]:
        if msg.tree != self.tree or msg.nodes != [n.id for n in self._frontier] or len(msg.decisions) != len(msg.nodes):
            self._fail("split decisions do not match the frontier")
        blobs = iter(unframe_blobs(msg.payload, sum(d == "rows" for d in msg.decisions)))
        children = []
        for node, decision in zip(self._frontier, msg.decisions, strict=True):
            if decision == "leaf":
                continue
            if decision == "rows":
                left = unpack_mask(next(blobs), len(node.rows))
            elif decision.startswith("own:") and self._pending.get(node.id, ("",))[0] == decision[4:]:
                left = self._pending[node.id][1]
            else:
                self._fail(f"malformed split decision {decision[:40]!r}")
            li, ri = self._next_id, self._next_id + 1  # the active party numbers nodes the same way
            self._next_id += 2
            children += [
                _Node(li, node.rows[left], node.depth + 1, ri, node.buckets),
                _Node(ri, node.rows[~left], node.depth + 1, li, node.buckets),
            ]
        decided = dict(zip(msg.nodes, msg.decisions, strict=True))
        unused = [i for i, (sid, _) in self._pending.items() if decided[i] != f"own:{sid}"]
        if unused:
            self._fail(f"split asked for node {unused[0]} of tree {self.tree} was not used")
        self._pending, self._asked = {}, False
        self._frontier = [c for c in children if c.depth < self.max_depth]
        return self._histograms()

    HANDLERS = {
        (State.WAIT_READY, BoostStart): _on_start,
        (State.WAIT_KEY, PublicKeyMsg): _on_key,
        (State.WAIT_GRADIENTS, EncryptedGradients): _on_gradients,
        (State.WAIT_GRADIENT_PARTS, EncryptedGradients): _on_gradients,
        (State.WAIT_DECISIONS, SplitRequest): _on_request,
        (State.WAIT_DECISIONS, SplitDecisions): _on_decisions,
        (State.WAIT_GRADIENTS, BoostDone): _on_done,
    }

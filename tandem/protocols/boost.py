"""SecureBoost for one active party (labels, secret key) and one or more passive parties, as sans-I/O roles.

Per tree, the active party picks the rows the tree grows on (every training row, or a
GOSS sample), encrypts their packed (gradient, hessian) and sends them to every passive
party. Level by level, each passive party returns encrypted bucket sums of its features
for the root and, of each pair of new siblings, the smaller one (``sent_child``); the
active party decrypts them, derives the other sibling as parent minus the sent one
(exact fixed-point integers), joins them with its own histograms and picks each node's
best split exactly as the plaintext reference would over the joined feature list (active
features first, then each passive party's in order). The owner of a passive split is
asked for it (``SplitRequest``) and answers with an opaque split id and the node's
go-left bitmap; then every passive party gets each node's decision: a leaf, the go-left
bitmap, or "your own split". Rows are routed through every tree whether or not they grew
it (validation rows, rows GOSS left out), so scores stay current everywhere.

Roles: ``ActiveBoost.receive(party, msg)`` returns ``[(party, msg), ...]`` to send;
``awaiting()`` names the parties it waits on. ``PassiveBoost.receive(msg)`` returns the
messages for the active party. What each side learns: docs/privacy.md.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

import numpy as np

from tandem.crypto.he import HeError, PublicHe, SecretHe, dequantise
from tandem.learn.grower import Tree, grow_tree, predict_binned
from tandem.learn.histogram import build_histogram, histogram_from_sums
from tandem.learn.rounds import BoostParams, gradients, root_value, round_rows, trees_to_keep, validation_score
from tandem.learn.splitting import best_split, leaf_weight
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.wire import (BoostDone, BoostReady, BoostStart, EncryptedGradients, EncryptedHistograms,
                                   Message, PassivePartitions, PredictBitmaps, PredictRequest, PublicKeyMsg,
                                   SplitDecisions, SplitRequest)

PROTOCOL = "boost/2"
Outbox = list[tuple[int, Message]]


def pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(mask.astype(bool)).tobytes()


def unpack_mask(blob: bytes, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8))
    if len(bits) < n or len(bits) >= n + 8 or bits[n:].any():
        raise RemoteProtocolError("malformed row bitmap")
    return bits[:n].astype(bool)


def frame_blobs(blobs: list[bytes]) -> bytes:
    return b"".join(len(b).to_bytes(4, "big") + b for b in blobs)


def unframe_blobs(payload: bytes, count: int | None = None) -> list[bytes]:
    """The blobs of ``frame_blobs``; ``count`` (if given) must match."""
    out, i = [], 0
    while i < len(payload) and (count is None or len(out) < count):
        if i + 4 > len(payload):
            raise RemoteProtocolError("malformed framed payload")
        n = int.from_bytes(payload[i:i + 4], "big")
        out.append(payload[i + 4:i + 4 + n])
        i += 4 + n
    if i != len(payload) or (count is not None and len(out) != count):
        raise RemoteProtocolError("malformed framed payload")
    return out


def sent_child(a_id: int, a_rows: int, b_id: int, b_rows: int) -> int:
    """Of two siblings, the one whose encrypted histogram travels (fewer rows in the tree's sample;
    the lower id on a tie). The receiver gets the other as parent minus this one, in plaintext."""
    return a_id if (a_rows, a_id) <= (b_rows, b_id) else b_id


class Phase(enum.Enum):
    START = "start"
    WAIT_READY = "wait_ready"
    WAIT_KEY = "wait_key"
    WAIT_HISTOGRAMS = "wait_histograms"
    WAIT_PARTITIONS = "wait_partitions"
    WAIT_GRADIENTS = "wait_gradients"
    WAIT_DECISIONS = "wait_decisions"
    DONE = "done"
    ERROR = "error"


@dataclass
class _Node:
    id: int
    rows: np.ndarray        # every row routed here (sorted)
    grown: np.ndarray       # of those, the rows this tree grows on
    depth: int
    parent: int = -1
    sibling: int = -1


@dataclass
class Resume:
    """A checkpoint of the active party: completed trees, their passive split ids
    (``split_ids[t][node] = (party, split id)``) and validation scores."""

    trees: list[Tree]
    split_ids: list[dict[int, tuple[int, str]]]
    scores: list[float] = field(default_factory=list)


class ActiveBoost:
    """The label holder. ``sessions``: one session id per passive party; ``binned`` (n, fa) uint8 own
    features, ``y`` (n,) 0/1, ``train`` (n,) bool (the rest are validation rows for early stopping).

    After ``DONE``: ``trees_`` (features >= fa are passive slots; ``split_ids_[t][node]`` =
    (party, split id) names them), ``raw_`` the scores of all n rows, ``base_score_``,
    ``scores_`` the validation score after each tree, ``resumed_`` trees taken from a checkpoint,
    ``completed_`` trees finished so far (``checkpoint()`` returns them).
    """

    def __init__(self, sessions: list[str], binned: np.ndarray, y: np.ndarray, params: BoostParams, he: SecretHe,
                 train: np.ndarray | None = None, resume: Resume | None = None):
        self.sessions, self.binned, self.y, self.params, self.he = sessions, binned, y, params, he
        train = np.ones(len(y), dtype=bool) if train is None else train
        self.train_mask, self.train, self.valid = train, np.flatnonzero(train), np.flatnonzero(~train)
        self.n_parties, self.resume = len(sessions), resume
        self.missing_bin = params.bins - 1
        self.phase = Phase.START
        p = np.clip(y[self.train].mean(), 1e-6, 1 - 1e-6)
        self.base_score_ = float(np.log(p / (1 - p)))
        self.raw_ = np.full(len(y), self.base_score_)
        self.trees_: list[Tree] = []
        self.split_ids_: list[dict[int, tuple[int, str]]] = []
        self.scores_: list[float] = []
        self.resumed_ = self.completed_ = 0
        self._ready: dict[int, BoostReady] = {}
        self._waiting: set[int] = set()

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def awaiting(self) -> list[int]:
        """The parties a message is expected from, lowest first."""
        return sorted(self._waiting)

    def start(self) -> Outbox:
        self.phase = Phase.WAIT_READY
        self._waiting = set(range(self.n_parties))
        p, resume = self.params, self.resume
        out = []
        for k in range(self.n_parties):
            ids = [sid for t in (resume.split_ids if resume else []) for party, sid in t.values() if party == k]
            payload = frame_blobs([pack_mask(self.train_mask), "\n".join(ids).encode()])
            out.append((k, BoostStart(self.sessions[k], len(self.y), p.n_trees, p.max_depth, p.bins,
                                      len(resume.trees) if resume else 0, payload)))
        return out

    def receive(self, party: int, msg: Message) -> Outbox:
        expected = {Phase.WAIT_READY: BoostReady, Phase.WAIT_HISTOGRAMS: EncryptedHistograms,
                    Phase.WAIT_PARTITIONS: PassivePartitions}.get(self.phase)
        if expected is None or not isinstance(msg, expected) or party not in self._waiting:
            return self._fail(f"unexpected {msg.name} from passive party {party} while {self.phase.value}")
        if isinstance(msg, BoostReady):
            return self._on_ready(party, msg)
        if isinstance(msg, EncryptedHistograms):
            return self._on_histograms(party, msg)
        return self._on_partitions(party, msg)

    # --- start and resume -----------------------------------------------------------------------

    def _on_ready(self, party: int, msg: BoostReady) -> Outbox:
        if msg.n_features < 1:
            return self._fail(f"passive party {party} has no features")
        self._ready[party] = msg
        self._waiting.discard(party)
        if self._waiting:
            return []
        counts = [self._ready[k].n_features for k in range(self.n_parties)]
        self.offsets = np.cumsum([self.binned.shape[1]] + counts)       # passive party k: [offsets[k], offsets[k+1])
        if self.resume and all(r.resumable for r in self._ready.values()):
            self._replay(self.resume)
        first = len(self.trees_)
        return [(k, PublicKeyMsg(self.sessions[k], first, self.he.public_bytes())) for k in range(self.n_parties)] \
            + self._next_tree()

    def _replay(self, resume: Resume) -> None:
        """Take the checkpoint's trees; score every row with them from the parties' bitmaps."""
        masks: dict[tuple[int, str], np.ndarray] = {}
        for k, ready in self._ready.items():
            ids = [sid for t in resume.split_ids for party, sid in t.values() if party == k]
            for sid, blob in zip(ids, unframe_blobs(ready.payload, len(ids))):
                masks[(k, sid)] = unpack_mask(blob, len(self.y))
        self.raw_ = predict_federated(resume.trees, resume.split_ids, self.base_score_, self.binned,
                                      self.missing_bin, masks)
        self.trees_, self.split_ids_ = list(resume.trees), list(resume.split_ids)
        self.scores_, self.resumed_ = list(resume.scores), len(resume.trees)
        self.completed_ = self.resumed_

    def checkpoint(self) -> Resume:
        """The completed trees, to continue from after an interruption."""
        c = self.completed_
        return Resume(self.trees_[:c], self.split_ids_[:c], self.scores_[:c])

    # --- one tree -------------------------------------------------------------------------------

    def _next_tree(self) -> Outbox:
        p = self.params
        keep = None
        if p.early_stopping_rounds and self.scores_:
            keep = trees_to_keep(self.scores_, p.early_stopping_rounds, len(self.trees_) == p.n_trees)
        if keep is not None or len(self.trees_) == p.n_trees:
            keep = len(self.trees_) if keep is None else keep
            self.trees_, self.split_ids_ = self.trees_[:keep], self.split_ids_[:keep]
            self.phase = Phase.DONE
            self._waiting = set()
            return [(k, BoostDone(self.sessions[k], keep)) for k in range(self.n_parties)]
        t = len(self.trees_)
        grad, hess = gradients(self.raw_, self.y)
        self._sample, self._g_q, self._h_q = round_rows(grad, hess, self.train, p, t)
        if t == 0 and p.first_tree_active_only:
            return self._local_tree()
        tree = Tree()
        tree.add(root_value(self._g_q, self._h_q, self._sample, p))
        self.trees_.append(tree)
        self.split_ids_.append({})
        self._in_sample = np.zeros(len(self.y), dtype=bool)
        self._in_sample[self._sample] = True
        self._frontier = [_Node(0, np.arange(len(self.y)), self._sample, 0)]
        self._leaf_rows: dict[int, np.ndarray] = {}
        self._hists: dict[tuple[int, int], np.ndarray] = {}     # (party, node) -> (f_k, bins, 2)
        self._parent_hists: dict[tuple[int, int], np.ndarray] = {}
        cts = self.he.encrypt_gh(self._g_q[self._sample], self._h_q[self._sample])
        payload = frame_blobs([pack_mask(self._in_sample), self.he.dump(cts)])
        self._expect_histograms()
        return [(k, EncryptedGradients(self.sessions[k], t, payload)) for k in range(self.n_parties)]

    def _local_tree(self) -> Outbox:
        """Grow a tree on this party's features alone; nothing is sent for it."""
        p = self.params
        tree, _ = grow_tree(self.binned, dequantise(self._g_q), dequantise(self._h_q), self._sample,
                            build=lambda rows: build_histogram(self.binned, self._g_q, self._h_q, rows, p.bins),
                            missing_bin=self.missing_bin, params=p.split, max_depth=p.max_depth,
                            learning_rate=p.learning_rate)
        self.trees_.append(tree)
        self.split_ids_.append({})
        self.raw_ += predict_binned(tree, self.binned, self.missing_bin)
        self._tree_finished()
        return self._next_tree()

    def _sent_nodes(self) -> list[_Node]:
        by_id = {n.id: n for n in self._frontier}
        return [n for n in self._frontier if n.parent < 0 or
                sent_child(n.id, len(n.grown), n.sibling, len(by_id[n.sibling].grown)) == n.id]

    def _expect_histograms(self) -> None:
        self.phase = Phase.WAIT_HISTOGRAMS
        self._expected = {k: [n.id for n in self._sent_nodes()] for k in range(self.n_parties)}
        self._waiting = set(range(self.n_parties))

    def _on_histograms(self, party: int, msg: EncryptedHistograms) -> Outbox:
        queue = self._expected[party]
        if msg.tree != len(self.trees_) - 1 or not queue or msg.node != queue[0]:
            return self._fail(f"passive party {party} sent histograms of tree {msg.tree} node {msg.node}, "
                              f"expected tree {len(self.trees_) - 1} node {queue[0] if queue else '-'}")
        n_features = int(self.offsets[party + 1] - self.offsets[party])
        try:
            g, h = self.he.decrypt_bucket_sums(msg.payload, n_features, self.params.bins)
        except HeError as exc:
            return self._fail(f"passive party {party}: {exc}")
        self._hists[(party, queue.pop(0))] = histogram_from_sums(g, h)
        if not queue:
            self._waiting.discard(party)
        if self._waiting:
            return []
        for n in self._frontier:                                  # the other sibling: parent minus the sent one
            for k in range(self.n_parties):
                if (k, n.id) not in self._hists:
                    self._hists[(k, n.id)] = self._parent_hists[(k, n.parent)] - self._hists[(k, n.sibling)]
        return self._decide()

    def _decide(self) -> Outbox:
        tree, p = self.trees_[-1], self.params
        fa = self.binned.shape[1]
        self._decisions: dict[int, tuple] = {}       # node id -> ("leaf",) | ("rows", mask) | ("own", party)
        self._asks: dict[int, list[tuple[_Node, str]]] = {}
        self._children: list[_Node] = []
        for node in self._frontier:
            own = build_histogram(self.binned, self._g_q, self._h_q, node.grown, p.bins)
            hist = np.concatenate([own] + [self._hists[(k, node.id)] for k in range(self.n_parties)], axis=0)
            split = best_split(hist, self.missing_bin, p.split)
            if split is None:
                self._decisions[node.id] = ("leaf",)
                self._leaf_rows[node.id] = node.rows
                continue
            total_g, total_h = hist[0, :, 0].sum(), hist[0, :, 1].sum()
            li = tree.add(p.learning_rate * leaf_weight(split.left_g, split.left_h, p.split.l2))
            ri = tree.add(p.learning_rate * leaf_weight(total_g - split.left_g, total_h - split.left_h, p.split.l2))
            tree.feature[node.id], tree.bin_[node.id] = split.feature, split.bin_
            tree.missing_left[node.id], tree.gain[node.id] = split.missing_left, split.gain
            tree.left[node.id], tree.right[node.id] = li, ri
            if split.feature < fa:
                col = self.binned[node.rows, split.feature]
                left = np.where(col == self.missing_bin, split.missing_left, col <= split.bin_)
                self._decisions[node.id] = ("rows", left)
                self._add_children(node, left, li, ri)
            else:
                k = int(np.searchsorted(self.offsets, split.feature, side="right")) - 1
                slot = f"{split.feature - self.offsets[k]}:{split.bin_}:{int(split.missing_left)}"
                self._asks.setdefault(k, []).append((node, slot))
                self._decisions[node.id] = ("own", k)
        if not self._asks:
            return self._announce()
        self.phase = Phase.WAIT_PARTITIONS
        self._waiting = set(self._asks)
        t = len(self.trees_) - 1
        return [(k, SplitRequest(self.sessions[k], t, [n.id for n, _ in asks], [s for _, s in asks]))
                for k, asks in sorted(self._asks.items())]

    def _on_partitions(self, party: int, msg: PassivePartitions) -> Outbox:
        asks = self._asks[party]
        if msg.nodes != [n.id for n, _ in asks] or len(msg.split_ids) != len(asks) or \
                len(set(msg.split_ids)) != len(asks):
            return self._fail(f"passive party {party} answered other splits than asked for")
        for (node, _), split_id, blob in zip(asks, msg.split_ids, unframe_blobs(msg.payload, len(asks))):
            left = unpack_mask(blob, len(node.rows))
            self.split_ids_[-1][node.id] = (party, split_id)
            self._decisions[node.id] = ("own", party, split_id, left)
            tree = self.trees_[-1]
            self._add_children(node, left, tree.left[node.id], tree.right[node.id])
        self._waiting.discard(party)
        return [] if self._waiting else self._announce()

    def _announce(self) -> Outbox:
        """Every frontier node's decision to every passive party, then on to the next level."""
        t, out = len(self.trees_) - 1, []
        for k in range(self.n_parties):
            decisions, bitmaps = [], []
            for node in self._frontier:
                d = self._decisions[node.id]
                if d[0] == "leaf":
                    decisions.append("leaf")
                elif d[0] == "own" and d[1] == k:
                    decisions.append(f"own:{d[2]}")
                else:
                    decisions.append("rows")
                    bitmaps.append(pack_mask(d[-1]))
            out.append((k, SplitDecisions(self.sessions[k], t, [n.id for n in self._frontier], decisions,
                                          frame_blobs(bitmaps))))
        return out + self._next_level()

    def _add_children(self, node: _Node, left: np.ndarray, li: int, ri: int) -> None:
        grown_left = self._in_sample[node.rows[left]]
        lrows, rrows = node.rows[left], node.rows[~left]
        self._children += [_Node(li, lrows, lrows[grown_left], node.depth + 1, node.id, ri),
                           _Node(ri, rrows, rrows[self._in_sample[rrows]], node.depth + 1, node.id, li)]

    def _next_level(self) -> Outbox:
        self._children.sort(key=lambda n: n.id)
        for n in self._children:
            if n.depth >= self.params.max_depth:
                self._leaf_rows[n.id] = n.rows
        self._frontier = [n for n in self._children if n.depth < self.params.max_depth]
        self._parent_hists, self._hists = self._hists, {}
        if self._frontier:
            self._expect_histograms()
            return []
        tree = self.trees_[-1]
        for leaf, rows in self._leaf_rows.items():
            self.raw_[rows] += tree.value[leaf]
        self._tree_finished()
        return self._next_tree()

    def _tree_finished(self) -> None:
        self.completed_ += 1
        if self.params.early_stopping_rounds:
            self.scores_.append(validation_score(self.y[self.valid], self.raw_[self.valid]))

    def _fail(self, reason: str) -> Outbox:
        self.phase = Phase.ERROR
        raise RemoteProtocolError(reason)


class PassiveBoost:
    """A feature holder without labels. ``binned`` (n, fp) uint8; ``thresholds(feature, bin)`` maps a
    histogram slot to its real threshold. ``saved`` holds the splits of an interrupted run
    (split id -> (feature, bin, missing_left, tree)), offered for a resume.

    ``splits_`` (split id -> (feature, bin, missing_left, tree)) grows as splits are made;
    ``thresholds_`` maps split ids to real thresholds.
    """

    def __init__(self, session: str, binned: np.ndarray, thresholds=None,
                 saved: dict[str, tuple[int, int, bool, int]] | None = None):
        self.session, self.binned = session, binned
        self._threshold = thresholds or (lambda f, b: float(b))
        self._saved = dict(saved or {})
        self.phase = Phase.START
        self.splits_: dict[str, tuple[int, int, bool, int]] = {}
        self.he: PublicHe | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def split_bins_(self) -> dict[str, tuple[int, int, bool]]:
        return {sid: (f, b, m) for sid, (f, b, m, _t) in self.splits_.items()}

    def start(self) -> list[Message]:
        self.phase = Phase.WAIT_READY
        return []

    def receive(self, msg: Message) -> list[Message]:
        if isinstance(msg, BoostStart) and self.phase is Phase.WAIT_READY:
            return self._on_start(msg)
        if isinstance(msg, PublicKeyMsg) and self.phase is Phase.WAIT_KEY:
            try:
                self.he = PublicHe.from_bytes(msg.payload)
            except HeError as exc:
                return self._fail(str(exc))
            self.splits_ = {sid: s for sid, s in self.splits_.items() if s[3] < msg.first_tree}
            self.phase = Phase.WAIT_GRADIENTS
            return []
        if isinstance(msg, EncryptedGradients) and self.phase is Phase.WAIT_GRADIENTS:
            return self._on_gradients(msg)
        if isinstance(msg, SplitRequest) and self.phase is Phase.WAIT_DECISIONS and not self._pending:
            return self._on_request(msg)
        if isinstance(msg, SplitDecisions) and self.phase is Phase.WAIT_DECISIONS:
            return self._on_decisions(msg)
        if isinstance(msg, BoostDone) and self.phase is Phase.WAIT_GRADIENTS:
            self.splits_ = {sid: s for sid, s in self.splits_.items() if s[3] < msg.n_trees}
            self.phase = Phase.DONE
            return []
        return self._fail(f"unexpected {msg.name} while {self.phase.value}")

    def _on_start(self, msg: BoostStart) -> list[Message]:
        n = len(self.binned)
        if msg.n_rows != n:
            return self._fail(f"active party has {msg.n_rows} rows, this party {n}")
        if not 3 <= msg.bins <= 256 or msg.max_depth < 1:
            return self._fail(f"unsupported settings (bins {msg.bins}, max depth {msg.max_depth})")
        if int(self.binned.max(initial=0)) >= msg.bins:
            return self._fail("this party's features were binned with more bins than agreed")
        self.bins, self.max_depth, self.missing_bin = msg.bins, msg.max_depth, msg.bins - 1
        mask_blob, ids_blob = unframe_blobs(msg.payload, 2)
        self.train_mask = unpack_mask(mask_blob, n)
        wanted = ids_blob.decode("ascii", "replace").split("\n") if ids_blob else []
        resumable = msg.resume_trees > 0 and all(sid in self._saved for sid in wanted)
        bitmaps = []
        if resumable:
            self.splits_ = {sid: self._saved[sid] for sid in wanted}
            bitmaps = [pack_mask(self._goes_left(np.arange(n), *self._saved[sid][:3])) for sid in wanted]
        self.phase = Phase.WAIT_KEY
        return [BoostReady(self.session, self.binned.shape[1], resumable, frame_blobs(bitmaps))]

    def _goes_left(self, rows: np.ndarray, f: int, b: int, missing_left: bool) -> np.ndarray:
        col = self.binned[rows, f]
        return np.where(col == self.missing_bin, missing_left, col <= b)

    def _on_gradients(self, msg: EncryptedGradients) -> list[Message]:
        mask_blob, cts_blob = unframe_blobs(msg.payload, 2)
        in_sample = unpack_mask(mask_blob, len(self.binned))
        if (in_sample & ~self.train_mask).any():
            return self._fail("gradients of rows outside the training rows")
        try:
            self.tree, self.cts = msg.tree, self.he.load(cts_blob)
        except HeError as exc:
            return self._fail(str(exc))
        if self.cts.rows != int(in_sample.sum()):
            return self._fail("gradients do not match the rows they are for")
        self._pos = np.cumsum(in_sample) - 1            # row -> its ciphertext
        self._in_sample = in_sample
        self._frontier = [(0, np.arange(len(self.binned)), 0, -1)]
        self._next_id, self._pending = 1, {}
        return self._histograms()

    def _histograms(self) -> list[Message]:
        """Encrypted histograms of the frontier: the root, and of each pair of siblings only the one
        ``sent_child`` names (the active party derives the other)."""
        out: list[Message] = []
        grown = {node_id: rows[self._in_sample[rows]] for node_id, rows, _depth, _sibling in self._frontier}
        for node_id, _rows, _depth, sibling in self._frontier:
            if sibling >= 0 and sent_child(node_id, len(grown[node_id]), sibling, len(grown[sibling])) != node_id:
                continue
            rows = grown[node_id]
            blob = self.he.bucket_sums(self.cts, self._pos[rows], self.binned[rows], self.bins)
            out.append(EncryptedHistograms(self.session, self.tree, node_id, blob))
        self.phase = Phase.WAIT_DECISIONS if self._frontier else Phase.WAIT_GRADIENTS
        return out

    def _on_request(self, msg: SplitRequest) -> list[Message]:
        frontier = {n[0]: n for n in self._frontier}
        if msg.tree != self.tree or len(msg.slots) != len(msg.nodes) or len(set(msg.nodes)) != len(msg.nodes):
            return self._fail("malformed split request")
        ids, bitmaps = [], []
        for node_id, slot in zip(msg.nodes, msg.slots):
            try:
                f, b, m = (int(x) for x in slot.split(":"))
            except ValueError:
                return self._fail(f"malformed split slot {slot!r}")
            if node_id not in frontier or not (0 <= f < self.binned.shape[1] and 0 <= b < self.bins - 1):
                return self._fail(f"split request names no node or slot of this party ({node_id}, {slot!r})")
            left = self._goes_left(frontier[node_id][1], f, b, bool(m))
            split_id = secrets.token_hex(8)
            self.splits_[split_id] = (f, b, bool(m), self.tree)
            self._pending[node_id] = (split_id, left)
            ids.append(split_id)
            bitmaps.append(pack_mask(left))
        return [PassivePartitions(self.session, self.tree, list(msg.nodes), ids, frame_blobs(bitmaps))]

    def _on_decisions(self, msg: SplitDecisions) -> list[Message]:
        if msg.tree != self.tree or msg.nodes != [n[0] for n in self._frontier] or \
                len(msg.decisions) != len(msg.nodes):
            return self._fail("split decisions do not match the frontier")
        blobs = iter(unframe_blobs(msg.payload, sum(d == "rows" for d in msg.decisions)))
        children = []
        for (node_id, rows, depth, _), decision in zip(self._frontier, msg.decisions):
            if decision == "leaf":
                continue
            if decision == "rows":
                left = unpack_mask(next(blobs), len(rows))
            elif decision.startswith("own:") and self._pending.get(node_id, ("",))[0] == decision[4:]:
                left = self._pending[node_id][1]
            else:
                return self._fail(f"malformed split decision {decision[:40]!r}")
            li, ri = self._next_id, self._next_id + 1       # the active party numbers nodes the same way
            self._next_id += 2
            children += [(li, rows[left], depth + 1, ri), (ri, rows[~left], depth + 1, li)]
        self._pending = {}
        self._frontier = [c for c in children if c[2] < self.max_depth]
        return self._histograms()

    def _fail(self, reason: str) -> list[Message]:
        self.phase = Phase.ERROR
        raise RemoteProtocolError(reason)


# --- federated prediction ---------------------------------------------------------------------

def passive_bitmaps(request: PredictRequest, binned: np.ndarray, splits: dict[str, tuple[int, int, bool]],
                    missing_bin: int) -> PredictBitmaps:
    """The passive side of prediction: go-left bitmaps of its splits; never feature values.

    ``splits`` maps split id -> (feature, bin, missing_left) on this party's binned features.
    """
    if request.n_rows != len(binned):
        raise RemoteProtocolError(f"active party predicts {request.n_rows} rows, this party has {len(binned)}")
    blobs = []
    for split_id in request.split_ids:
        if split_id not in splits:
            raise RemoteProtocolError(f"unknown split id {split_id[:16]!r} (model version mismatch?)")
        f, b, m = splits[split_id]
        col = binned[:, f]
        blobs.append(pack_mask(np.where(col == missing_bin, m, col <= b)))
    return PredictBitmaps(request.session, request.model, frame_blobs(blobs))


def predict_federated(trees: list[Tree], split_ids: list[dict[int, tuple[int, str]]], base_score: float,
                      binned: np.ndarray, missing_bin: int, bitmaps: dict[tuple[int, str], np.ndarray]) -> np.ndarray:
    """Raw scores (n,) from the active party's binned features (n, fa) and the passive parties'
    go-left bitmaps: ``bitmaps[(party, split id)]`` (n,) bool for each node in ``split_ids[t]``;
    the other nodes are the active party's own splits."""
    raw = np.full(len(binned), base_score)
    rows = np.arange(len(binned))
    for tree, ids in zip(trees, split_ids):
        node = np.zeros(len(binned), dtype=np.int64)
        left, right = np.array(tree.left), np.array(tree.right)
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            go_left = np.zeros(len(binned), dtype=bool)
            for n in np.unique(node[inner]):
                at = rows[node == n]
                if n in ids:
                    go_left[at] = bitmaps[ids[n]][at]
                else:
                    col = binned[at, tree.feature[n]]
                    go_left[at] = np.where(col == missing_bin, tree.missing_left[n], col <= tree.bin_[n])
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        raw += np.array(tree.value)[node]
    return raw

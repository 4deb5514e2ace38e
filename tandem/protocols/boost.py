"""SecureBoost for one active party (labels, secret key) and one passive party, as sans-I/O roles.

Per tree, the active party encrypts each row's packed (gradient, hessian) and sends them.
Level by level, the passive party returns encrypted bucket sums of its features for the
root and, of each pair of new siblings, the smaller one; the active party decrypts them,
derives the other sibling as parent minus the sent one (exact fixed-point integers), joins them with its own histograms and picks each node's
best split exactly as the plaintext reference would over the joined feature list
(active features first). For an active split it sends the node's left-row bitmap; for a
passive split it names the passive histogram slot, and the passive party answers with an
opaque split id and the left-row bitmap. What each side learns: docs/privacy.md.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

import numpy as np

from tandem.crypto.he import PublicHe, SecretHe, dequantise, quantise
from tandem.learn.grower import Tree, grow_tree
from tandem.learn.histogram import build_histogram, histogram_from_sums
from tandem.learn.splitting import SplitParams, best_split, leaf_weight
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.wire import (BoostDone, BoostReady, BoostStart, EncryptedGradients, EncryptedHistograms,
                                   Message, PassivePartitions, PredictBitmaps, PredictRequest, PublicKeyMsg,
                                   SplitDecisions)


def pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(mask.astype(bool)).tobytes()


def unpack_mask(blob: bytes, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8))
    if len(bits) < n or bits[n:].any():
        raise RemoteProtocolError("malformed row bitmap")
    return bits[:n].astype(bool)


@dataclass(frozen=True)
class BoostParams:
    n_trees: int = 50
    max_depth: int = 5
    learning_rate: float = 0.1
    bins: int = 32
    split: SplitParams = field(default_factory=SplitParams)
    first_tree_active_only: bool = False    # tree 0 on the active party's features: no partitions leave it


class Phase(enum.Enum):
    START = "start"
    WAIT_READY = "wait_ready"
    WAIT_HISTOGRAMS = "wait_histograms"
    WAIT_PARTITIONS = "wait_partitions"
    WAIT_GRADIENTS = "wait_gradients"
    DONE = "done"
    ERROR = "error"


@dataclass
class _Node:
    id: int
    rows: np.ndarray
    depth: int
    parent: int = -1
    sibling: int = -1


def sent_child(a_id: int, a_rows: int, b_id: int, b_rows: int) -> int:
    """Of two siblings, the one whose encrypted histogram travels (the smaller; the lower id on a tie).
    The receiver gets the other as parent minus this one, in plaintext."""
    return a_id if (a_rows, a_id) <= (b_rows, b_id) else b_id


class ActiveBoost:
    """The label holder. ``binned`` (n, fa) uint8 own features, ``y`` (n,) 0/1; every row trains.

    After ``DONE``: ``trees_`` (features >= fa are passive slots; ``split_ids_[t][node]`` names
    them for the passive party), ``raw_`` the training scores, ``base_score_``.
    """

    def __init__(self, session: str, binned: np.ndarray, y: np.ndarray, params: BoostParams, he: SecretHe):
        self.session, self.binned, self.y, self.params, self.he = session, binned, y, params, he
        self.train = np.arange(len(y))
        self.missing_bin = params.bins - 1
        self.phase = Phase.START
        p = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        self.base_score_ = float(np.log(p / (1 - p)))
        self.raw_ = np.full(len(y), self.base_score_)
        self.trees_: list[Tree] = []
        self.split_ids_: list[dict[int, str]] = []
        self.n_passive = 0

    def start(self) -> list[Message]:
        self.phase = Phase.WAIT_READY
        mask = np.zeros(len(self.y), dtype=bool)
        mask[self.train] = True
        p = self.params
        return [BoostStart(self.session, len(self.y), p.n_trees, p.max_depth, p.bins, pack_mask(mask))]

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def receive(self, msg: Message) -> list[Message]:
        expected = {Phase.WAIT_READY: BoostReady, Phase.WAIT_HISTOGRAMS: EncryptedHistograms,
                    Phase.WAIT_PARTITIONS: PassivePartitions}.get(self.phase)
        if expected is None or not isinstance(msg, expected):
            return self._fail(f"unexpected {msg.name} while {self.phase.value}")
        if isinstance(msg, BoostReady):
            if msg.n_features < 1:
                return self._fail("passive party has no features")
            self.n_passive = msg.n_features
            return [PublicKeyMsg(self.session, self.he.public_bytes())] + self._next_tree()
        if isinstance(msg, EncryptedHistograms):
            return self._on_histograms(msg)
        return self._on_partitions(msg)

    # --- one tree -----------------------------------------------------------------------------

    def _next_tree(self) -> list[Message]:
        if len(self.trees_) == self.params.n_trees:
            self.phase = Phase.DONE
            return [BoostDone(self.session, len(self.trees_))]
        prob = 1.0 / (1.0 + np.exp(-self.raw_))
        self._g_q, self._h_q = quantise(prob - self.y), quantise(prob * (1 - prob))
        grad = dequantise(self._g_q)
        hess = dequantise(self._h_q)
        if not self.trees_ and self.params.first_tree_active_only:
            return self._local_tree(grad, hess)
        tree = Tree()
        rows = self.train
        tree.add(self.params.learning_rate * leaf_weight(float(grad[rows].sum()), float(hess[rows].sum()),
                                                         self.params.split.l2))
        self.trees_.append(tree)
        self.split_ids_.append({})
        self._frontier = [_Node(0, rows, 0)] if self.params.max_depth > 0 else []
        self._leaf_rows: dict[int, np.ndarray] = {} if self._frontier else {0: rows}
        self._hists: dict[int, np.ndarray] = {}
        self._parent_hists: dict[int, np.ndarray] = {}
        cts = self.he.encrypt_gh(self._g_q, self._h_q)
        out: list[Message] = [EncryptedGradients(self.session, len(self.trees_) - 1, self.he.dump(cts))]
        if not self._frontier:
            return out + self._finish_tree()
        self.phase = Phase.WAIT_HISTOGRAMS
        return out

    def _local_tree(self, grad: np.ndarray, hess: np.ndarray) -> list[Message]:
        """Grow a tree on this party's features alone; nothing is sent for it."""
        p = self.params
        tree, out = grow_tree(self.binned, grad, hess, self.train,
                              build=lambda rows: build_histogram(self.binned, self._g_q, self._h_q, rows, p.bins),
                              missing_bin=self.missing_bin, params=p.split, max_depth=p.max_depth,
                              learning_rate=p.learning_rate)
        self.trees_.append(tree)
        self.split_ids_.append({})
        self.raw_[self.train] += out
        return self._next_tree()

    def _on_histograms(self, msg: EncryptedHistograms) -> list[Message]:
        if msg.tree != len(self.trees_) - 1:
            return self._fail(f"histograms for tree {msg.tree}, expected {len(self.trees_) - 1}")
        expected = [str(n.id) for n in self._sent_nodes() if n.id not in self._hists]
        if msg.nodes != expected[:len(msg.nodes)] or not msg.nodes:
            return self._fail(f"histograms for nodes {msg.nodes}, expected {expected}")
        try:
            g_sum, h_sum = self.he.decrypt_sums(self.he.load(msg.payload))
        except ValueError as exc:
            return self._fail(str(exc))
        per = self.n_passive * self.params.bins
        if len(g_sum) != per * len(msg.nodes):
            return self._fail("histograms have the wrong size")
        for i, node in enumerate(msg.nodes):
            self._hists[int(node)] = histogram_from_sums(g_sum[i * per:(i + 1) * per], h_sum[i * per:(i + 1) * per],
                                                         self.n_passive, self.params.bins)
        if len(self._hists) < len(self._sent_nodes()):
            return []
        for n in self._frontier:                                  # the other sibling: parent minus the sent one
            if n.id not in self._hists:
                self._hists[n.id] = self._parent_hists[n.parent] - self._hists[n.sibling]
        return self._decide()

    def _sent_nodes(self) -> list[_Node]:
        by_id = {n.id: n for n in self._frontier}
        return [n for n in self._frontier if n.parent < 0 or
                sent_child(n.id, len(n.rows), n.sibling, len(by_id[n.sibling].rows)) == n.id]

    def _decide(self) -> list[Message]:
        tree, p = self.trees_[-1], self.params
        fa = self.binned.shape[1]
        nodes, decisions, bitmaps = [], [], []
        self._pending: dict[int, tuple[_Node, object]] = {}
        self._children: list[_Node] = []
        for node in self._frontier:
            own = build_histogram(self.binned, self._g_q, self._h_q, node.rows, p.bins)
            hist = np.concatenate([own, self._hists[node.id]], axis=0)
            split = best_split(hist, self.missing_bin, p.split)
            nodes.append(str(node.id))
            if split is None:
                decisions.append("leaf")
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
                decisions.append("active")
                bitmaps.append(pack_mask(left))
                self._add_children(node, left, li, ri)
            else:
                decisions.append(f"passive:{split.feature - fa}:{split.bin_}:{int(split.missing_left)}")
                self._pending[node.id] = (node, (li, ri))
        out: list[Message] = [SplitDecisions(self.session, len(self.trees_) - 1, nodes, decisions, b"".join(
            frame_blob(b) for b in bitmaps))]
        if self._pending:
            self.phase = Phase.WAIT_PARTITIONS
            return out
        return out + self._next_level()

    def _on_partitions(self, msg: PassivePartitions) -> list[Message]:
        if sorted(int(n) for n in msg.nodes) != sorted(self._pending) or len(msg.split_ids) != len(msg.nodes):
            return self._fail("partitions do not match the passive splits asked for")
        blobs = unframe_blobs(msg.payload, len(msg.nodes))
        for node_id, split_id, blob in zip(msg.nodes, msg.split_ids, blobs):
            node, (li, ri) = self._pending[int(node_id)]
            self.split_ids_[-1][node.id] = split_id
            self._add_children(node, unpack_mask(blob, len(node.rows)), li, ri)
        return self._next_level()

    def _add_children(self, node: _Node, left: np.ndarray, li: int, ri: int) -> None:
        self._children += [_Node(li, node.rows[left], node.depth + 1, node.id, ri),
                           _Node(ri, node.rows[~left], node.depth + 1, node.id, li)]

    def _next_level(self) -> list[Message]:
        self._children.sort(key=lambda n: n.id)
        for n in self._children:
            if n.depth >= self.params.max_depth:
                self._leaf_rows[n.id] = n.rows
        self._frontier = [n for n in self._children if n.depth < self.params.max_depth]
        self._parent_hists, self._hists = self._hists, {}
        if self._frontier:
            self.phase = Phase.WAIT_HISTOGRAMS
            return []
        return self._finish_tree()

    def _finish_tree(self) -> list[Message]:
        tree = self.trees_[-1]
        for leaf, rows in self._leaf_rows.items():
            self.raw_[rows] += tree.value[leaf]
        return self._next_tree()

    def _fail(self, reason: str) -> list[Message]:
        self.phase = Phase.ERROR
        raise RemoteProtocolError(reason)


def frame_blob(blob: bytes) -> bytes:
    return len(blob).to_bytes(4, "big") + blob


def unframe_blobs(payload: bytes, count: int) -> list[bytes]:
    out, i = [], 0
    for _ in range(count):
        if i + 4 > len(payload):
            raise RemoteProtocolError("malformed bitmap list")
        n = int.from_bytes(payload[i:i + 4], "big")
        out.append(payload[i + 4:i + 4 + n])
        i += 4 + n
    if i != len(payload):
        raise RemoteProtocolError("malformed bitmap list")
    return out


class PassiveBoost:
    """A feature holder without labels. ``binned`` (n, fp) uint8; ``thresholds(feature, bin)`` maps a
    histogram slot to its real threshold, kept here under an opaque split id (``splits_``)."""

    def __init__(self, session: str, binned: np.ndarray, thresholds=None):
        self.session, self.binned = session, binned
        self._threshold = thresholds or (lambda f, b: float(b))
        self.phase = Phase.START
        self.splits_: dict[str, tuple[int, float, bool]] = {}     # split id -> (feature, threshold, missing_left)
        self.split_bins_: dict[str, tuple[int, int, bool]] = {}   # split id -> (feature, bin, missing_left)
        self.he: PublicHe | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def start(self) -> list[Message]:
        self.phase = Phase.WAIT_READY
        return []

    def receive(self, msg: Message) -> list[Message]:
        if isinstance(msg, BoostStart) and self.phase is Phase.WAIT_READY:
            if msg.n_rows != len(self.binned):
                return self._fail(f"active party has {msg.n_rows} rows, this party {len(self.binned)}")
            if not 3 <= msg.bins <= 127:
                return self._fail(f"unsupported number of bins {msg.bins}")
            self.bins, self.max_depth, self.n_trees = msg.bins, msg.max_depth, msg.n_trees
            self.missing_bin = msg.bins - 1
            if int(self.binned.max(initial=0)) >= msg.bins:
                return self._fail("this party's features were binned with more bins than agreed")
            self.train = np.flatnonzero(unpack_mask(msg.payload, msg.n_rows))
            self.phase = Phase.WAIT_GRADIENTS
            return [BoostReady(self.session, self.binned.shape[1])]
        if isinstance(msg, PublicKeyMsg) and self.he is None and self.phase is Phase.WAIT_GRADIENTS:
            self.he = PublicHe.from_bytes(msg.payload)
            return []
        if isinstance(msg, EncryptedGradients) and self.phase is Phase.WAIT_GRADIENTS and self.he is not None:
            self.tree = msg.tree
            self.cts = self.he.load(msg.payload)
            if self.cts.rows != len(self.binned):
                return self._fail("gradients do not cover every row")
            self._frontier = [(0, self.train, 0, -1)] if self.max_depth > 0 else []
            self._next_id = 1
            return self._histograms()
        if isinstance(msg, SplitDecisions) and self.phase is Phase.WAIT_HISTOGRAMS:
            return self._on_decisions(msg)
        if isinstance(msg, BoostDone) and self.phase is Phase.WAIT_GRADIENTS:
            self.phase = Phase.DONE
            return []
        return self._fail(f"unexpected {msg.name} while {self.phase.value}")

    def _histograms(self) -> list[Message]:
        """Encrypted histograms of the frontier: the root, and of each pair of siblings only the one
        ``sent_child`` names (the active party derives the other)."""
        out: list[Message] = []
        sizes = {node_id: len(rows) for node_id, rows, _depth, _sibling in self._frontier}
        for node_id, rows, _depth, sibling in self._frontier:
            if sibling >= 0 and sent_child(node_id, sizes[node_id], sibling, sizes[sibling]) != node_id:
                continue
            hist = self.he.bucket_sums(self.cts, rows, self.binned, self.bins)
            out.append(EncryptedHistograms(self.session, self.tree, [str(node_id)], self.he.dump(hist)))
        self.phase = Phase.WAIT_HISTOGRAMS if self._frontier else Phase.WAIT_GRADIENTS
        return out

    def _on_decisions(self, msg: SplitDecisions) -> list[Message]:
        if msg.nodes != [str(n[0]) for n in self._frontier] or len(msg.decisions) != len(msg.nodes):
            return self._fail("split decisions do not match the frontier")
        blobs = iter(unframe_blobs(msg.payload, sum(d == "active" for d in msg.decisions)))
        children, part_nodes, part_ids, part_bits = [], [], [], []
        for (node_id, rows, depth, _), decision in zip(self._frontier, msg.decisions):
            if decision == "leaf":
                continue
            if decision == "active":
                left = unpack_mask(next(blobs), len(rows))
            elif decision.startswith("passive:"):
                try:
                    _, f, b, m = decision.split(":")
                    f, b, m = int(f), int(b), bool(int(m))
                except ValueError:
                    return self._fail(f"malformed split decision {decision!r}")
                if not (0 <= f < self.binned.shape[1] and 0 <= b < self.bins - 1):
                    return self._fail(f"split decision {decision!r} names no slot of this party")
                col = self.binned[rows, f]
                left = np.where(col == self.missing_bin, m, col <= b)
                split_id = secrets.token_hex(8)
                self.splits_[split_id] = (f, self._threshold(f, b), m)
                self.split_bins_[split_id] = (f, b, m)
                part_nodes.append(str(node_id))
                part_ids.append(split_id)
                part_bits.append(pack_mask(left))
            else:
                return self._fail(f"malformed split decision {decision!r}")
            li, ri = self._next_id, self._next_id + 1       # the active party numbers nodes the same way
            self._next_id += 2
            children += [(li, rows[left], depth + 1, ri), (ri, rows[~left], depth + 1, li)]
        out: list[Message] = []
        if part_nodes:
            out.append(PassivePartitions(self.session, self.tree, part_nodes, part_ids,
                                         b"".join(frame_blob(b) for b in part_bits)))
        self._frontier = [c for c in children if c[2] < self.max_depth]
        return out + self._histograms()

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
    return PredictBitmaps(request.session, request.model, b"".join(frame_blob(x) for x in blobs))


def predict_federated(trees: list[Tree], split_ids: list[dict[int, str]], base_score: float, binned: np.ndarray,
                      missing_bin: int, bitmaps: dict[str, np.ndarray]) -> np.ndarray:
    """Raw scores from the active party's binned features and the passive party's go-left bitmaps.

    Nodes whose split id is in ``split_ids[t]`` are passive: their direction comes from
    ``bitmaps[split_id]`` (shape ``(n,)`` bool); the others are the active party's own splits.
    """
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

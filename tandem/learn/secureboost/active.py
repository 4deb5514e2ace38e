"""The active party of SecureBoost (labels and the secret key), as a sans-I/O role."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

import numpy as np

from tandem.crypto.he import HeError, SecretHe, dequantise, encrypted_gh
from tandem.engine import LocalEngine
from tandem.learn.buckets import all_cuts, coarsen
from tandem.learn.grower import grow_tree
from tandem.learn.histogram import build_histogram, histogram_from_sums
from tandem.learn.rounds import BoostParams, gradients, root_value, round_rows, trees_to_keep, validation_score
from tandem.learn.secureboost.predict import predict_federated
from tandem.learn.secureboost.shared import GRADIENT_PART_ROWS, Asked, Decision, Leaf, Resume, Route, State, sent_child
from tandem.learn.splitting import best_split
from tandem.learn.tree import Tree, goes_left, predict_binned
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.framing import frame_blobs, histogram_parts, pack_mask, unframe_blobs, unpack_mask
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

# (party, message) pairs, lazy where encrypting is the work (a tree's gradients come out part by part as they
# are encrypted, so the wire carries one part while the next is encrypted): iterate it once, in order
Outbox = Iterable[tuple[int, Message]]


@dataclass
class _Node:
    id: int
    rows: np.ndarray  # every row routed here (sorted)
    grown: np.ndarray  # of those, the rows this tree grows on
    depth: int
    parent: int = -1
    sibling: int = -1


class ActiveBoost(Role):
    """The label holder. ``sessions``: one session id per passive party; ``binned`` (n, fa) uint8 own
    features, ``y`` (n,) 0/1, ``train`` (n,) bool (the rest are validation rows for early stopping),
    ``categorical`` (fa,) bool: its categorical features (split as sets of category bins).

    After ``DONE``: ``trees_`` (features >= fa are passive slots; ``split_ids_[t][node]`` =
    (party, split id) names them), ``raw_`` the scores of all n rows, ``base_score_``,
    ``scores_`` the validation score after each tree, ``resumed_`` trees taken from a checkpoint,
    ``completed_`` trees finished so far (``checkpoint()`` returns them).
    """

    def __init__(
        self,
        sessions: list[str],
        binned: np.ndarray,
        y: np.ndarray,
        params: BoostParams,
        he: SecretHe,
        train: np.ndarray | None = None,
        resume: Resume | None = None,
        categorical: np.ndarray | None = None,
        engine: LocalEngine | None = None,
    ):
        self.engine = engine  # encrypts the gradients' parts in its workers (None: in this process)
        self.categorical = np.zeros(binned.shape[1], dtype=bool) if categorical is None else np.asarray(categorical)
        self.sessions, self.binned, self.y, self.params, self.he = sessions, binned, y, params, he
        train = np.ones(len(y), dtype=bool) if train is None else train
        self.train_mask, self.train, self.valid = train, np.flatnonzero(train), np.flatnonzero(~train)
        self.n_parties, self.resume = len(sessions), resume
        self.missing_bin = params.bins - 1
        self.state = State.START
        p = np.clip(y[self.train].mean(), 1e-6, 1 - 1e-6)
        self.base_score_ = float(np.log(p / (1 - p)))
        self.raw_ = np.full(len(y), self.base_score_)
        self.trees_: list[Tree] = []
        self.split_ids_: list[dict[int, tuple[int, str]]] = []
        self.scores_: list[float] = []
        self.resumed_ = self.completed_ = 0
        self._ready: dict[int, BoostReady] = {}
        self._waiting: set[int] = set()

    def awaiting(self) -> list[int]:
        """The parties a message is expected from, lowest first."""
        return sorted(self._waiting)

    def start(self) -> Outbox:
        self.state = State.WAIT_READY
        self._waiting = set(range(self.n_parties))
        p, resume = self.params, self.resume
        out: list[tuple[int, Message]] = []
        for k in range(self.n_parties):
            ids = [sid for t in (resume.split_ids if resume else []) for party, sid in t.values() if party == k]
            payload = frame_blobs([pack_mask(self.train_mask), "\n".join(ids).encode()])
            out.append(
                (
                    k,
                    BoostStart(
                        self.sessions[k],
                        len(self.y),
                        p.n_trees,
                        p.max_depth,
                        p.bins,
                        len(resume.trees) if resume else 0,
                        payload,
                    ),
                )
            )
        return out

    def receive(self, party: int, msg: Message) -> Outbox:
        if party not in self._waiting:
            self._fail(self._unexpected(msg, party))
        return self._receive(msg, party)

    def _unexpected(self, msg: Message, *context) -> str:
        return f"unexpected {msg.name} from passive party {context[0]} while {self.state.value}"

    # --- start and resume -----------------------------------------------------------------------

    def _on_ready(self, msg: BoostReady, party: int) -> Outbox:
        if msg.n_features < 1:
            self._fail(f"passive party {party} has no features")
        self._ready[party] = msg
        self._waiting.discard(party)
        if self._waiting:
            return []
        counts = [self._ready[k].n_features for k in range(self.n_parties)]
        self.offsets = np.cumsum([self.binned.shape[1]] + counts)  # passive party k: [offsets[k], offsets[k+1])
        masks = [self.categorical]
        for k in range(self.n_parties):
            mask, positions = np.zeros(counts[k], dtype=bool), self._ready[k].categorical
            if positions != sorted(set(positions)) or not all(0 <= j < counts[k] for j in positions):
                self._fail(f"passive party {party}: malformed categorical feature positions")
            mask[positions] = True
            masks.append(mask)
        self.categorical_all = np.concatenate(masks)  # (fa + every passive party's features,) bool
        if self.resume and all(r.resumable for r in self._ready.values()):
            self._replay(self.resume)
        first = len(self.trees_)
        keys = [(k, PublicKeyMsg(self.sessions[k], first, self.he.public_bytes())) for k in range(self.n_parties)]
        return chain(keys, self._next_tree())

    def _replay(self, resume: Resume) -> None:
        """Take the checkpoint's trees; score every row with them from the parties' bitmaps."""
        masks: dict[tuple[int, str], np.ndarray] = {}
        for k, ready in self._ready.items():
            ids = [sid for t in resume.split_ids for party, sid in t.values() if party == k]
            for sid, blob in zip(ids, unframe_blobs(ready.payload, len(ids)), strict=True):
                masks[(k, sid)] = unpack_mask(blob, len(self.y))
        self.raw_ = predict_federated(
            resume.trees, resume.split_ids, self.base_score_, self.binned, self.missing_bin, masks
        )
        self.trees_, self.split_ids_ = list(resume.trees), list(resume.split_ids)
        self.scores_, self.resumed_ = list(resume.scores), len(resume.trees)
        self.completed_ = self.resumed_

    def checkpoint(self) -> Resume:
        """The completed trees, to continue from after an interruption."""
        c = self.completed_
        return Resume(self.trees_[:c], self.split_ids_[:c], self.scores_[:c], self.params.goss_seed)

    # --- one tree -------------------------------------------------------------------------------

    def _next_tree(self) -> Outbox:
        p = self.params
        keep = None
        if p.early_stopping_rounds and self.scores_:
            keep = trees_to_keep(self.scores_, p.early_stopping_rounds, len(self.trees_) == p.n_trees)
        if keep is not None or len(self.trees_) == p.n_trees:
            keep = len(self.trees_) if keep is None else keep
            self.trees_, self.split_ids_ = self.trees_[:keep], self.split_ids_[:keep]
            self.state = State.DONE
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
        self._hists: dict[tuple[int, int], np.ndarray] = {}  # (party, node) -> (f_k, bins, 2)
        self._parent_hists: dict[tuple[int, int], np.ndarray] = {}
        self._buckets: dict[tuple[int, int], np.ndarray] = {}  # (party, node) -> (f_k, bins) bool
        self._parent_buckets: dict[tuple[int, int], np.ndarray] = {}
        self._expect_histograms()
        return self._gradient_parts(t)

    def _gradient_parts(self, t: int) -> Iterator[tuple[int, Message]]:
        """Tree ``t``'s encrypted gradients in parts of ``GRADIENT_PART_ROWS`` sample rows (the passive party
        sums each part's rows on arrival): encrypted by the engine's workers, all parts submitted at once, or
        without one each part when the caller asks for it."""
        g, h, mask = self._g_q[self._sample], self._h_q[self._sample], pack_mask(self._in_sample)
        parts = max(1, -(-len(g) // GRADIENT_PART_ROWS))
        cuts = [slice(i * GRADIENT_PART_ROWS, (i + 1) * GRADIENT_PART_ROWS) for i in range(parts)]
        if self.engine is not None:  # (an inline engine, workers=0, encrypts them all here and now)
            key = self.he.public_bytes()
            encrypting = [self.engine.submit(encrypted_gh, key, g[c], h[c]) for c in cuts]
            blobs = (f.result() for f in encrypting)
        else:
            blobs = (self.he.dump(self.he.encrypt_gh(g[c], h[c])) for c in cuts)

        def encrypted() -> Iterator[tuple[int, Message]]:
            for i, cts in enumerate(blobs):
                payload = frame_blobs([mask if i == 0 else b"", cts])
                for k in range(self.n_parties):
                    yield k, EncryptedGradients(self.sessions[k], t, payload, i, parts)

        return encrypted()

    def _local_tree(self) -> Outbox:
        """Grow a tree on this party's features alone; nothing is sent for it."""
        p = self.params
        tree, _ = grow_tree(
            self.binned,
            dequantise(self._g_q),
            dequantise(self._h_q),
            self._sample,
            build=lambda rows: build_histogram(self.binned, self._g_q, self._h_q, rows, p.bins),
            missing_bin=self.missing_bin,
            params=p.split,
            max_depth=p.max_depth,
            learning_rate=p.learning_rate,
            categorical=self.categorical,
        )
        self.trees_.append(tree)
        self.split_ids_.append({})
        self.raw_ += predict_binned(tree, self.binned, self.missing_bin)
        self._tree_finished()
        return self._next_tree()

    def _sent_nodes(self) -> list[_Node]:
        by_id = {n.id: n for n in self._frontier}
        return [
            n
            for n in self._frontier
            if n.parent < 0 or sent_child(n.id, len(n.grown), n.sibling, len(by_id[n.sibling].grown)) == n.id
        ]

    def _expect_histograms(self) -> None:
        self.state = State.WAIT_HISTOGRAMS
        self._expected = {k: [n.id for n in self._sent_nodes()] for k in range(self.n_parties)}
        self._by_id = {n.id: n for n in self._frontier}
        self._waiting = set(range(self.n_parties))

    def _on_histograms(self, msg: EncryptedHistograms, party: int) -> Outbox:
        expected = self._expected[party]
        if msg.tree != len(self.trees_) - 1 or msg.nodes != expected:
            self._fail(
                f"passive party {party} sent histograms of tree {msg.tree} nodes {msg.nodes[:8]}, "
                f"expected tree {len(self.trees_) - 1} nodes {expected}"
            )
        n_features = int(self.offsets[party + 1] - self.offsets[party])
        try:
            for node_id, blob in zip(expected, unframe_blobs(msg.payload, len(expected)), strict=True):
                self._take_histogram(party, self._by_id[node_id], blob, n_features)
        except (HeError, RemoteProtocolError) as exc:
            self._fail(f"passive party {party}: {exc}")
        self._waiting.discard(party)
        if self._waiting:
            return []
        for n in self._frontier:  # the other sibling: parent minus the sent one, over the same buckets
            for k in range(self.n_parties):
                if (k, n.id) not in self._hists:
                    parent_hist = coarsen(self._parent_hists[(k, n.parent)], self._buckets[(k, n.id)])
                    self._hists[(k, n.id)] = parent_hist - self._hists[(k, n.sibling)]
        return self._decide()

    def _take_histogram(self, party: int, node: _Node, blob: bytes, n_features: int) -> None:
        """One node's bucket structure and sums from ``party``, checked against its parent's buckets."""
        parent = self._parent_buckets.get((party, node.parent), all_cuts(n_features, self.params.bins))
        buckets, passes = histogram_parts(blob, n_features, self.params.bins)
        if not buckets[:, self.missing_bin - 1].all() or (buckets & ~parent).any():
            raise RemoteProtocolError(f"malformed buckets for node {node.id}")
        g, h = self.he.decrypt_bucket_sums(passes, n_features, self.params.bins, packed=True)
        self._hists[(party, node.id)] = histogram_from_sums(g, h)
        self._buckets[(party, node.id)] = buckets
        if node.sibling >= 0:
            self._buckets[(party, node.sibling)] = buckets

    def _decide(self) -> Outbox:
        tree, p = self.trees_[-1], self.params
        fa = self.binned.shape[1]
        self._decisions: dict[int, Decision] = {}
        self._asks: dict[int, list[tuple[_Node, str, str]]] = {}  # party -> (node, slot, left bins)
        self._children: list[_Node] = []
        for node in self._frontier:
            own = build_histogram(self.binned, self._g_q, self._h_q, node.grown, p.bins)
            hist = np.concatenate([own] + [self._hists[(k, node.id)] for k in range(self.n_parties)], axis=0)
            cuts = np.concatenate(
                [all_cuts(fa, p.bins)] + [self._buckets[(k, node.id)] for k in range(self.n_parties)], axis=0
            )
            split = best_split(hist, self.missing_bin, p.split, cuts=cuts, categorical=self.categorical_all)
            if split is None:
                self._decisions[node.id] = Leaf()
                self._leaf_rows[node.id] = node.rows
                continue
            li, ri = tree.split(node.id, split, hist[0, :, 0].sum(), hist[0, :, 1].sum(), p.learning_rate, p.split.l2)
            if split.feature < fa:
                bins = self.binned[node.rows, split.feature]
                left = goes_left(bins, split.bin_, split.missing_left, self.missing_bin, split.left_bins)
                self._decisions[node.id] = Route(left)
                self._add_children(node, left, li, ri)
            else:
                k = int(np.searchsorted(self.offsets, split.feature, side="right")) - 1
                slot = f"{split.feature - self.offsets[k]}:{split.bin_}:{int(split.missing_left)}"
                self._asks.setdefault(k, []).append((node, slot, ",".join(str(b) for b in split.left_bins)))
                self._decisions[node.id] = Asked(k)
        if not self._asks:
            return self._announce()
        self.state = State.WAIT_PARTITIONS
        self._waiting = set(self._asks)
        t = len(self.trees_) - 1
        return [
            (
                k,
                SplitRequest(
                    self.sessions[k], t, [n.id for n, _, _ in asks], [s for _, s, _ in asks], [c for *_, c in asks]
                ),
            )
            for k, asks in sorted(self._asks.items())
        ]

    def _on_partitions(self, msg: PassivePartitions, party: int) -> Outbox:
        asks = self._asks[party]
        if (
            msg.nodes != [n.id for n, _, _ in asks]
            or len(msg.split_ids) != len(asks)
            or len(set(msg.split_ids)) != len(asks)
        ):
            self._fail(f"passive party {party} answered other splits than asked for")
        for (node, _, _), split_id, blob in zip(
            asks, msg.split_ids, unframe_blobs(msg.payload, len(asks)), strict=True
        ):
            left = unpack_mask(blob, len(node.rows))
            self.split_ids_[-1][node.id] = (party, split_id)
            self._decisions[node.id] = Route(left, party, split_id)
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
                if isinstance(d, Asked):
                    raise LocalProtocolError(f"node {node.id}: announced before passive party {d.owner} answered")
                decisions.append(d.wire(k))
                if isinstance(d, Route) and d.owner != k:
                    bitmaps.append(pack_mask(d.left))
            out.append(
                (
                    k,
                    SplitDecisions(
                        self.sessions[k], t, [n.id for n in self._frontier], decisions, frame_blobs(bitmaps)
                    ),
                )
            )
        return chain(out, self._next_level())

    def _add_children(self, node: _Node, left: np.ndarray, li: int, ri: int) -> None:
        grown_left = self._in_sample[node.rows[left]]
        lrows, rrows = node.rows[left], node.rows[~left]
        self._children += [
            _Node(li, lrows, lrows[grown_left], node.depth + 1, node.id, ri),
            _Node(ri, rrows, rrows[self._in_sample[rrows]], node.depth + 1, node.id, li),
        ]

    def _next_level(self) -> Outbox:
        self._children.sort(key=lambda n: n.id)
        for n in self._children:
            if n.depth >= self.params.max_depth:
                self._leaf_rows[n.id] = n.rows
        self._frontier = [n for n in self._children if n.depth < self.params.max_depth]
        self._parent_hists, self._hists = self._hists, {}
        self._parent_buckets, self._buckets = self._buckets, {}
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

    HANDLERS = {
        (State.WAIT_READY, BoostReady): _on_ready,
        (State.WAIT_HISTOGRAMS, EncryptedHistograms): _on_histograms,
        (State.WAIT_PARTITIONS, PassivePartitions): _on_partitions,
    }

"""Every message type between nodes, by protocol (link/PSI, SecureBoost training and prediction,
insight; the scorecard's in ``wire_scorecard``, re-exported here), each a frozen dataclass registered under
its one-byte code; ``tandem.protocols.message`` defines the frame they travel in and decodes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from tandem.protocols.message import KEY_NAME, NAME, TOKEN, Message, PointMessage, message
from tandem.protocols.wire_scorecard import (  # noqa: F401 - every message type is importable from here
    BinMerge,
    EncryptedLabels,
    GramColumns,
    GramStart,
    GramSums,
    PartialScores,
    PrebinSums,
    ScorecardAccept,
    ScorecardKey,
    ScorecardRequest,
    ScoreRequest,
)

ENTITY_KEY: dict[str, re.Pattern[str]] = {"entity": NAME, "key": NAME}
MODEL: dict[str, re.Pattern[str]] = {"model": re.compile(r"[A-Za-z0-9_-]{0,64}")}  # "": no model id

# --- link job and PSI messages -------------------------------------------------------------


@message(1)
class LinkRequest(Message):
    """Initiator -> responder: link these entities on these keys, in this priority."""

    IDS: ClassVar = {"entities": NAME, "keys": KEY_NAME}

    session: str
    protocol: str  # "psi/2"
    entities: list[str]  # "customers", "sellers"
    keys: list[str]  # flattened "entity:key" in priority order
    count_only: bool
    incremental: bool


@message(2)
class LinkAccept(Message):
    session: str


@message(3)
class KeyStart(Message):
    """Both sides, at the start of one (entity, key) run: a nonce for the salt, the set size, the
    id of the state kept from an earlier run ("" if none; incremental mode only), and what this side
    holds of an interrupted run ("" if nothing; ``psi_resume.Token``: "id.sent.back.received")."""

    IDS: ClassVar = ENTITY_KEY

    session: str
    entity: str
    key: str
    nonce: str  # hex, 16 bytes
    size: int
    state: str
    resume: str = ""


@message(8)
class Delta(PointMessage):
    """Incremental mode: how many new values follow, and (payload) the blinded values of removed ones."""

    IDS: ClassVar = ENTITY_KEY

    session: str
    entity: str
    key: str
    new: int
    payload: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class PointChunk(PointMessage):
    IDS: ClassVar = ENTITY_KEY

    session: str
    entity: str
    key: str
    seq: int
    last: bool
    payload: bytes = field(default=b"", repr=False)


@message(4)
class Blinded(PointChunk):
    """A chunk of the sender's own set, blinded with its secret."""


@message(5)
class Reblinded(PointChunk):
    """The receiver's chunk ``seq`` blinded again with the sender's secret (same order, or sorted in count-only)."""


@message(6)
class KeyDone(Message):
    """Both sides, after matching: the size of the intersection each found (they must agree)."""

    IDS: ClassVar = ENTITY_KEY

    session: str
    entity: str
    key: str
    intersection: int


@message(7)
class Abort(Message):
    """Terminal: the sender stopped; ``reason`` is one line for the other side's operator."""

    session: str
    reason: str


# --- federated boosting (SecureBoost) messages ----------------------------------------------


@message(20)
class BoostStart(Message):
    """Active -> passive: training settings. Payload (framed): the packed bitmap of the training
    rows (the others are validation rows), then the split ids of the trees to resume from,
    one per line (empty for a fresh start)."""

    session: str
    n_rows: int
    n_trees: int
    max_depth: int
    bins: int
    resume_trees: int
    payload: bytes = field(default=b"", repr=False)


@message(21)
class BoostReady(Message):
    """Passive -> active: how many features (histogram slots) it contributes, and whether it holds
    every split asked for in ``BoostStart``; if so the payload has their go-left bitmaps (framed).
    ``categorical``: the positions of its categorical features (split as sets of bins)."""

    session: str
    n_features: int
    resumable: bool
    payload: bytes = field(default=b"", repr=False)
    categorical: list[int] = field(default_factory=list)


@message(22)
class PublicKeyMsg(Message):
    """Active -> passive: the homomorphic public key (the secret key never leaves the active party)
    and the tree training starts at (splits of later trees are dropped)."""

    session: str
    first_tree: int
    payload: bytes = field(default=b"", repr=False)


@message(23)
class EncryptedGradients(Message):
    """Active -> passive, for tree ``tree``, part ``part`` of ``parts`` (0-based, sent in order). Payload
    (framed): the packed bitmap of the rows the tree is grown on (all training rows, or a GOSS sample;
    in part 0 only, empty in the others), then one packed (gradient, hessian) ciphertext per row of
    this part (the parts hold the sample's rows in order, each at least one)."""

    session: str
    tree: int
    payload: bytes = field(default=b"", repr=False)
    part: int = 0
    parts: int = 1


@message(24)
class EncryptedHistograms(Message):
    """Passive -> active: the histograms of one level of tree ``tree``, one for each of ``nodes`` (the
    root, or of each pair of new siblings the one ``sent_child`` names, in frontier order); payload: one
    blob per node (``framing.frame_blobs``) holding its bucket structure and encrypted bucket sums
    (``tandem.protocols.framing.histogram_payload``). One message per level, not per node: over a WAN
    each message costs the sender a round trip."""

    session: str
    tree: int
    nodes: list[int]
    payload: bytes = field(default=b"", repr=False)


@message(31)
class SplitRequest(Message):
    """Active -> the passive party owning the best splits of ``nodes``: each as "FEATURE:BIN:MISSING_LEFT"
    (a slot of that party's histograms; BIN -1 for a categorical feature), with ``left_bins`` per
    node: "" for a numeric split, else the bins going left, ascending, comma-separated ("0,3,5")."""

    session: str
    tree: int
    nodes: list[int]
    slots: list[str]
    left_bins: list[str] = field(default_factory=list)


@message(26)
class PassivePartitions(Message):
    """Passive -> active: for each requested split, an opaque split id and (payload, framed) the
    go-left bitmap of the node's rows."""

    session: str
    tree: int
    nodes: list[int]
    split_ids: list[str]
    payload: bytes = field(default=b"", repr=False)


@message(25)
class SplitDecisions(Message):
    """Active -> every passive party, per frontier node: "leaf", "rows" (the payload has the node's
    go-left bitmap, framed, in order) or "own:SPLIT_ID" (this party's own split)."""

    session: str
    tree: int
    nodes: list[int]
    decisions: list[str]
    payload: bytes = field(default=b"", repr=False)


@message(27)
class BoostDone(Message):
    """Active -> passive: training ended; the model keeps the first ``n_trees`` trees."""

    session: str
    n_trees: int


@message(28)
class PredictRequest(Message):
    """Active -> passive: evaluate passive splits on all ``n_rows`` prediction rows; payload: their
    split ids, one per line."""

    IDS: ClassVar = MODEL

    session: str
    model: str
    n_rows: int
    payload: bytes = field(default=b"", repr=False)

    @property
    def split_ids(self) -> list[str]:
        return self.payload.decode("ascii", "replace").split("\n") if self.payload else []


@message(29)
class PredictBitmaps(Message):
    """Passive -> active: per requested split, the go-left bitmap of the rows (framed, in order)."""

    IDS: ClassVar = MODEL

    session: str
    model: str
    payload: bytes = field(default=b"", repr=False)


@message(30)
class TrainRequest(Message):
    """Initiator (label holder) -> a passive party: link on the id column, then train and evaluate.
    Shares travel in parts per million (integers travel exactly); a GOSS rate of 0 turns it off."""

    IDS: ClassVar = {"model_id": TOKEN}  # the passive party saves its model under this id

    session: str
    protocol: str  # "boost/5"
    model_id: str
    seed: int
    test_fraction_ppm: int
    n_trees: int
    max_depth: int
    bins: int
    learning_rate: float
    l2: float
    min_child_weight: float
    first_tree_active_only: bool
    goss_top_ppm: int
    goss_other_ppm: int
    early_stopping_rounds: int
    validation_fraction_ppm: int


@message(33)
class TrainAccept(Message):
    """A passive party's answer to a ``TrainRequest``: it has the data and speaks the protocol."""

    session: str


@message(32)
class SharedRows(Message):
    """Active -> passive, after linking with every passive party: which of the linked rows (in link-id
    order) every party holds; payload: their packed bitmap."""

    session: str
    n_rows: int
    payload: bytes = field(default=b"", repr=False)


# --- insight: joint aggregates with thresholds and differential privacy (insight/1) -------------


@message(70)
class InsightQuery(Message):
    """Initiator -> responder: run this query (canonical JSON of ``tandem.insight.query.Query``) over the
    linked customers; the initiator's link table has ``n_links`` link ids with this SHA-256 digest."""

    IDS: ClassVar = {"query_id": TOKEN, "party": NAME}

    session: str
    protocol: str  # "insight/1"
    query_id: str
    spec: str
    party: str  # the initiator's side of the catalogue: "bank" or "market"
    n_links: int
    links_digest: str


@message(71)
class InsightAccept(Message):
    """Responder -> initiator: the query passed this side's checks and is charged to its budget."""

    IDS: ClassVar = {"query_id": TOKEN}

    session: str
    query_id: str


@message(72)
class InsightKey(Message):
    """Measure holder -> group holder: a fresh homomorphic public key (payload) for this query."""

    session: str
    n_rows: int
    n_slots: int
    payload: bytes = field(default=b"", repr=False)


@message(73)
class EncryptedMeasures(Message):
    """Measure holder -> group holder: packed ciphertexts of rows ``[first, first + rows)`` in link-id order."""

    session: str
    first: int
    rows: int
    last: bool
    payload: bytes = field(default=b"", repr=False)

    @property
    def records(self) -> int:
        return self.rows


@message(74)
class MaskedSums(Message):
    """Group holder -> measure holder: per group of the query's public label order, the encrypted sums
    plus a fresh encryption of random masks."""

    session: str
    n_groups: int
    payload: bytes = field(default=b"", repr=False)


@message(75)
class NoisySums(Message):
    """Measure holder -> group holder: the masked sums decrypted, plus its noise share; ``n_groups x
    n_slots`` signed 16-byte big-endian integers."""

    session: str
    n_groups: int
    payload: bytes = field(default=b"", repr=False)


@message(76)
class InsightRelease(Message):
    """Group holder -> measure holder: the released groups (positions in the public label order) and their
    figures with both noise shares and no mask; signed 8-byte big-endian integers, one per slot."""

    session: str
    groups: list[int]
    payload: bytes = field(default=b"", repr=False)


@message(77)
class InsightDone(Message):
    """Measure holder -> group holder: the release passed this side's checks."""

    session: str


OPENING = (LinkRequest.CODE, TrainRequest.CODE, ScorecardRequest.CODE, InsightQuery.CODE)  # may open a session

"""What both SecureBoost roles share: the protocol name, states, the sibling rule, split decisions
as they travel in ``SplitDecisions``, and the active party's checkpoint."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from tandem import protocol_versions as versions
from tandem.learn.tree import Tree

PROTOCOL = versions.TRAIN
# Rows per part of a tree's encrypted gradients (~4 MB at OU 2048): the passive party starts the root's bucket
# sums on the first part while the others are still on the wire.
GRADIENT_PART_ROWS = 16_384


class State(enum.Enum):
    START = "start"
    WAIT_READY = "wait_ready"
    WAIT_KEY = "wait_key"
    WAIT_HISTOGRAMS = "wait_histograms"
    WAIT_PARTITIONS = "wait_partitions"
    WAIT_GRADIENTS = "wait_gradients"
    WAIT_GRADIENT_PARTS = "wait_gradient_parts"
    WAIT_DECISIONS = "wait_decisions"
    DONE = "done"
    ERROR = "error"


def sent_child(a_id: int, a_rows: int, b_id: int, b_rows: int) -> int:
    """Of two siblings, the one whose encrypted histogram travels (fewer rows in the tree's sample;
    the lower id on a tie). The receiver gets the other as parent minus this one, in plaintext."""
    return a_id if (a_rows, a_id) <= (b_rows, b_id) else b_id


@dataclass(frozen=True)
class Leaf:
    """The node stays a leaf (wire form ``"leaf"``)."""

    def wire(self, party: int) -> str:
        return "leaf"


@dataclass(frozen=True)
class Asked:
    """The node's best split belongs to passive party ``owner``; its answer is awaited."""

    owner: int


@dataclass(frozen=True)
class Route:
    """The node splits: ``left`` (the node's rows,) bool says which go left. ``owner`` -1 for the
    active party's own split, else the passive party whose split ``split_id`` it is: that party
    reads ``"own:SPLIT_ID"`` and the others ``"rows"`` with the bitmap."""

    left: np.ndarray
    owner: int = -1
    split_id: str = ""

    def wire(self, party: int) -> str:
        return f"own:{self.split_id}" if party == self.owner else "rows"


Decision = Leaf | Asked | Route


@dataclass
class Resume:
    """A checkpoint of the active party: completed trees, their passive split ids
    (``split_ids[t][node] = (party, split id)``) and validation scores."""

    trees: list[Tree]
    split_ids: list[dict[int, tuple[int, str]]]
    scores: list[float] = field(default_factory=list)
    goss_seed: int | None = None  # the label holder's private GOSS seed, so a resumed run draws the same rows

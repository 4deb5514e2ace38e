"""What a training run reports on one side (the node's ``result`` event, the model saved apart).

Every party reports ``node``, ``peer`` (its peers, comma-separated), ``model_path``,
``bytes_sent`` and its row counts; the label holder adds the test metrics, timings and the
test rows' ids, labels and scores (for the report and the bank-alone comparison).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainingResult:
    """``metrics``: ``tandem.learn.metrics.summary`` of the test rows (auc, ks, gini, brier,
    deciles) — label holder only, like the fields after it but the last: ``rows_left_out``, every
    party's count of shifted rows its file held (left out, ``tandem.learn.party_file``)."""

    node: str
    peer: str
    model_path: str
    bytes_sent: int
    n_train: int
    n_test: int
    metrics: dict[str, Any] = field(default_factory=dict)
    n_valid: int = 0
    n_trees: int = 0
    resumed_trees: int = 0
    goss_seed: int | None = None  # the label holder's private GOSS seed (its own record)
    train_seconds: float = 0.0
    setup_seconds: float = 0.0  # of train_seconds: binning and key generation, before the first tree
    seconds_per_tree: float = 0.0  # the rest over the trees grown
    seconds: float = 0.0
    test_ids: list[str] = field(default_factory=list)
    test_scores: list[float] = field(default_factory=list)
    test_labels: list[int] = field(default_factory=list)
    rows_left_out: int = 0  # shifted rows of this party's file left out (tandem.learn.party_file)

    @property
    def is_label_holder(self) -> bool:
        return bool(self.metrics)

    def to_json(self) -> dict[str, Any]:
        """The fields of the node's event: a passive party's result carries no label-holder fields."""
        out = asdict(self)
        if not self.is_label_holder:
            for name in (
                "metrics",
                "n_valid",
                "n_trees",
                "resumed_trees",
                "goss_seed",
                "train_seconds",
                "setup_seconds",
                "seconds_per_tree",
                "seconds",
                "test_ids",
                "test_scores",
                "test_labels",
            ):
                del out[name]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingResult:
        return cls(**{k: v for k, v in data.items() if k != "event"})

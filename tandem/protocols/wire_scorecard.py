"""The scorecard's message types (``scorecard/1``, codes 40-50): the job's request and accept, WoE binning,
the second moments of the WoE design and scoring rows by the passive part. Registered with every other
message type (``tandem.protocols.wire`` re-exports them)."""

from __future__ import annotations

from dataclasses import field
from typing import ClassVar

from tandem.protocols.message import NAME, TOKEN, Message, message

# --- the scorecard (scorecard/1): request, WoE binning, second moments, scoring ----------------


@message(40)
class ScorecardRequest(Message):
    """Initiator (label holder) -> the passive party: link on the id column, then fit a scorecard.
    ``options``: the binning and scorecard options as JSON (``scorecard.job.options_json``); the passive
    party uses only the pre-binning ones, and its own ``min_bin_rows``."""

    IDS: ClassVar = {"model_id": TOKEN}

    session: str
    protocol: str  # "scorecard/1"
    model_id: str
    seed: int
    test_fraction_ppm: int
    options: str


@message(41)
class ScorecardAccept(Message):
    """The passive party's answer to a ``ScorecardRequest``: it has the data and speaks the protocol."""

    session: str


@message(42)
class ScorecardKey(Message):
    """Label holder -> passive: the homomorphic public key (payload) and how many training rows follow."""

    session: str
    n_rows: int
    payload: bytes = field(default=b"", repr=False)


@message(43)
class EncryptedLabels(Message):
    """Label holder -> passive: one packed (event, 1) ciphertext per training row, rows ``[first, first +
    n_rows)`` in shared order; ``last`` on the final chunk."""

    session: str
    seq: int
    first: int
    n_rows: int
    last: bool
    payload: bytes = field(default=b"", repr=False)

    @property
    def records(self) -> int:
        return self.n_rows


@message(44)
class PrebinSums(Message):
    """Passive -> label holder: each feature's pre-bin layout (kind, value and special pre-bin counts; the
    missing pre-bin is last, at ``n_bins - 1``) and the encrypted (events, rows) sum of every pre-bin
    (``framing.bucket_sums_payload`` of ``PublicHe.bucket_sums`` over ``n_bins`` bins)."""

    IDS: ClassVar = {"features": NAME}

    session: str
    features: list[str]  # opaque "f0".. or the passive party's shared names
    kinds: list[str]  # "numeric" | "categorical"
    n_values: list[int]
    n_special: list[int]
    n_bins: int
    payload: bytes = field(default=b"", repr=False)

    @property
    def records(self) -> int:
        return len(self.features) * self.n_bins


@message(45)
class BinMerge(Message):
    """Label holder -> passive: per feature, the final bin of each pre-bin ("0,0,1,2,..."); no counts, no WoE."""

    IDS: ClassVar = {"features": NAME}

    session: str
    features: list[str]
    assignments: list[str]


@message(46)
class GramStart(Message):
    """Label holder -> passive: the passive features the regression uses (``features``, in that party's order),
    how many of the label holder's own WoE columns follow (``n_own``) over how many training rows, and the
    payload: each named feature's WoE per final bin, encrypted (``gram.encode_woe``), features one after the
    other."""

    IDS: ClassVar = {"features": NAME}

    session: str
    features: list[str]
    n_own: int
    n_rows: int
    payload: bytes = field(default=b"", repr=False)


@message(47)
class GramColumns(Message):
    """Label holder -> passive: its own WoE columns of training rows ``[first, first + n_rows)``, encrypted
    and packed several to a ciphertext (``PublicHe.encrypt_slots``)."""

    session: str
    seq: int
    first: int
    n_rows: int
    last: bool
    payload: bytes = field(default=b"", repr=False)

    @property
    def records(self) -> int:
        return self.n_rows


@message(48)
class GramSums(Message):
    """Passive -> label holder: per passive feature and per column it is paired with, the masked encrypted
    sums over that feature's bins and the encrypted masks weighted by the feature's WoE (``gram`` module),
    framed blobs in the order ``gram.pair_order`` gives."""

    session: str
    n_blobs: int
    payload: bytes = field(default=b"", repr=False)


@message(49)
class ScoreRequest(Message):
    """Label holder -> passive: per passive feature its logit contribution per final bin (float64, features
    one after the other) and the bitmap of the shared rows to score; framed as two blobs."""

    IDS: ClassVar = {"features": NAME}

    session: str
    features: list[str]
    n_rows: int
    payload: bytes = field(default=b"", repr=False)


@message(50)
class PartialScores(Message):
    """Passive -> label holder: the passive party's summed logit contribution (float64) of each row asked for,
    in row order."""

    session: str
    n_rows: int
    payload: bytes = field(default=b"", repr=False)

    @property
    def records(self) -> int:
        return self.n_rows

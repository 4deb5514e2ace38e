"""What both scorecard binning roles share: the protocol name, the states and the size limits."""

from __future__ import annotations

import enum

from tandem import protocol_versions as versions

PROTOCOL = versions.SCORECARD
CHUNK_ROWS = 100_000  # labels per EncryptedLabels frame (2048-bit OU: 256 bytes each, ~26 MB)
MAX_FEATURES = 1_000  # features one passive party may bin in one run


class State(enum.Enum):
    START = "start"
    WAIT_KEY = "wait_key"
    WAIT_LABELS = "wait_labels"
    WAIT_SUMS = "wait_sums"
    WAIT_MERGE = "wait_merge"
    DONE = "done"
    ERROR = "error"

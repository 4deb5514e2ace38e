"""The version of each protocol this release speaks, defined here once for every job (each protocol's
module takes its ``PROTOCOL`` from here): what a node tells a peer's ``tandem doctor``, which compares."""

from __future__ import annotations

LINK = "psi/2"  # psi/2: KeyStart carries a resume token
# boost/3: bucket structure with the histogram sums (min_bin_rows); 4: categorical features; 5: gradients in parts
TRAIN = "boost/5"
SCORECARD = "scorecard/1"
INSIGHT = "insight/1"
DECIDE = "decide/1"


def protocol_versions() -> dict[str, str]:
    return {"link": LINK, "train": TRAIN, "scorecard": SCORECARD, "insight": INSIGHT, "decide": DECIDE}

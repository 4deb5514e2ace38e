"""The responder's say over link runs: which modes it accepts from a peer and how often.

``[link.accept]`` in a node config::

    modes = ["link", "count_only", "incremental"]   # what a peer may ask for (default: all three)
    min_interval_minutes = 60                        # since the last run this node accepted from that peer
    runs_per_day = 4                                 # accepted runs per peer in any 24 hours

A refused request ends the session with one line naming the rule (the initiator prints it), and the
responder's log and audit say the same. Accepted runs are remembered per peer in the node's state
folder (``link-accepted.jsonl``), so a restart does not reset the counts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tandem.atomic import append_durably, read_json_lines
from tandem.errors import InputError
from tandem.protocols.errors import ProtocolError

MODES = ("link", "count_only", "incremental")
DAY_S = 86_400.0


class LinkRefused(ProtocolError):
    """A link request this node's ``[link.accept]`` policy does not allow."""


@dataclass(frozen=True)
class AcceptPolicy:
    modes: tuple[str, ...] = MODES
    min_interval_minutes: float = 0.0
    runs_per_day: int = 24

    @classmethod
    def from_section(cls, section: object, path: str | os.PathLike) -> AcceptPolicy:
        """Read and check ``[link.accept]`` (every error names the file and the key)."""
        if not isinstance(section, dict):
            raise InputError(f"{path}: [link.accept] must be a table")
        known = {"modes", "min_interval_minutes", "runs_per_day"}
        extra = sorted(set(section) - known)
        if extra:
            raise InputError(f"{path}: [link.accept] has unknown key '{extra[0]}' (known: {', '.join(sorted(known))})")
        modes = section.get("modes", list(MODES))
        if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes):
            raise InputError(f"{path}: [link.accept] modes must be a non-empty list of {', '.join(MODES)}")
        interval = section.get("min_interval_minutes", 0.0)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            raise InputError(f"{path}: [link.accept] min_interval_minutes must be a number >= 0")
        per_day = section.get("runs_per_day", 24)
        if isinstance(per_day, bool) or not isinstance(per_day, int) or per_day < 1:
            raise InputError(f"{path}: [link.accept] runs_per_day must be a positive integer")
        return cls(tuple(modes), float(interval), per_day)

    def admit(self, peer: str, mode: str, state_dir: Path, now: float | None = None) -> None:
        """Raise ``LinkRefused`` if ``peer`` may not run ``mode`` now; else remember the run."""
        now = time.time() if now is None else now
        if mode not in self.modes:
            raise LinkRefused(
                f"this node's [link.accept] policy refuses {mode} runs from {peer} (accepted: {', '.join(self.modes)})"
            )
        log = state_dir / "link-accepted.jsonl"
        runs = [t for p, t in _accepted(log) if p == peer]
        if runs and now - runs[-1] < self.min_interval_minutes * 60:
            wait = self.min_interval_minutes - (now - runs[-1]) / 60
            raise LinkRefused(
                f"this node's [link.accept] policy allows one run from {peer} every {self.min_interval_minutes:g} "
                f"minutes; try again in {wait:.0f} minutes"
            )
        if sum(now - t < DAY_S for t in runs) >= self.runs_per_day:
            raise LinkRefused(
                f"this node's [link.accept] policy allows {self.runs_per_day} runs from {peer} per 24 hours; "
                "that many were accepted already"
            )
        state_dir.mkdir(parents=True, exist_ok=True)
        append_durably(log, (json.dumps({"peer": peer, "mode": mode, "at": now}) + "\n").encode())


def mode_of(count_only: bool, incremental: bool) -> str:
    return "count_only" if count_only else "incremental" if incremental else "link"


def _accepted(log: Path) -> list[tuple[str, float]]:
    """``(peer, accepted at: epoch seconds)`` of every remembered run, oldest first (damaged lines skipped)."""
    out = []
    for entry in read_json_lines(log):
        try:
            out.append((str(entry["peer"]), float(entry["at"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out

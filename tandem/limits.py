"""A node's caps on what an authenticated peer may make it hold, declared once: name, default, help and check.

They are read from a node config's ``[limits]`` section (``Limits.from_section``); the node hands
``max_records`` to every PSI run (``tandem.protocols.psi.KeyRun``) and the others to its gRPC
server (``tandem.transport.grpc_node``). A node also keeps at most one session per peer waiting
for its turn (it runs one job at a time); that rule is not configurable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from tandem.crypto.psi_group import POINT_BYTES
from tandem.errors import InputError
from tandem.protocols.psi import DEFAULT_CHUNK, MAX_RECORDS
from tandem.transport.grpc_node import MAX_FRAME

MIN_FRAME = 2 * DEFAULT_CHUNK * POINT_BYTES  # a PSI chunk (1 MiB) and its header fit with room to spare


def _option(default: int, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    """The caps, by their ``[limits]`` key; sizes in bytes."""

    max_records: int = _option(
        MAX_RECORDS,
        "Most records a peer may announce for one PSI run (its KeyStart size, or its whole set after an "
        "incremental Delta); above it the run stops.",
    )
    max_frame_bytes: int = _option(
        MAX_FRAME,
        f"Largest frame accepted from a peer ({MIN_FRAME}..{MAX_FRAME}; a training run's encrypted "
        "gradients travel in one frame of 256 bytes per row).",
    )
    inbox_bytes: int = _option(
        2**31,
        "Most bytes of frames waiting in one session's inbox; a frame that does not fit waits (the peer "
        "waits with it) up to timeout_s, then is refused. At least max_frame_bytes and 32 x max_records "
        "(a count-only run returns the peer's whole set at once).",
    )

    @classmethod
    def from_section(cls, section: object, path: str | os.PathLike) -> Limits:
        """Read and check a node config's ``[limits]`` section (every error names the file and key)."""
        known = {f.name for f in fields(cls)}
        if not isinstance(section, dict) or set(section) - known:
            extra = sorted(set(section) - known) if isinstance(section, dict) else ["?"]
            raise InputError(f"{path}: [limits] has unknown key '{extra[0]}' (known: {', '.join(sorted(known))})")
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{path}: [limits] {key} must be a positive integer")
        limits = cls(**section)
        if not MIN_FRAME <= limits.max_frame_bytes <= MAX_FRAME:
            raise InputError(f"{path}: [limits] max_frame_bytes must be between {MIN_FRAME} and {MAX_FRAME}")
        floor = max(limits.max_frame_bytes, POINT_BYTES * limits.max_records)
        if limits.inbox_bytes < floor:
            raise InputError(
                f"{path}: [limits] inbox_bytes must be at least {floor} "
                "(max_frame_bytes, and 32 x max_records: a count-only run returns the peer's whole set at once)"
            )
        return limits

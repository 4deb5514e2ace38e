"""What a link run reports on one side: counts per entity and per key, never rows.

``LinkResult.to_json`` is the node's ``result`` event (without ``"event"``);
``LinkResult.from_json`` reads one back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class KeyCounts:
    """One identifier key of one entity: this side's ``candidates`` (usable, consented values),
    ``matched`` with the peer, values left out as ``invalid`` (reason -> count) or held by
    ``duplicate_records``; ``blinded_sent`` values blinded and sent this run (all of them unless
    ``incremental``); ``seconds`` of this key; ``multiplied`` scalar multiplications this run made on
    this side (own values blinded plus peer values re-blinded; fewer when ``resumed`` from a checkpoint);
    ``phases``: this side's seconds hashing and blinding its own values, re-blinding the peer's, and matching."""

    candidates: int
    matched: int
    invalid: dict[str, int]
    duplicate_records: int
    incremental: bool
    blinded_sent: int
    seconds: float
    multiplied: int = 0
    resumed: bool = False
    phases: dict[str, float] = field(default_factory=dict)  # seconds: hash_blind, reblind, match (see KeyRun)


@dataclass(frozen=True)
class EntityLink:
    """One entity (customers, sellers): ``consented`` records, ``linked`` (``None`` when count-only)."""

    consented: int
    linked: int | None
    keys: dict[str, KeyCounts]


@dataclass(frozen=True)
class LinkResult:
    """One node's side of a link session with ``peer``; ``seconds`` of the protocol,
    ``peak_rss_mib`` of the node and its workers, the X25519 ``backend`` that blinded (mb | openssl)."""

    node: str
    peer: str
    session: str
    count_only: bool
    incremental: bool
    seconds: float
    peak_rss_mib: dict[str, int | list[int]]
    backend: str
    entities: dict[str, EntityLink]
    phases: dict[str, float] = field(default_factory=dict)  # seconds: read (and normalise), link, write

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkResult:
        fields = {k: v for k, v in data.items() if k != "event"}
        entities = {
            name: EntityLink(e["consented"], e["linked"], {k: KeyCounts(**kv) for k, kv in e["keys"].items()})
            for name, e in fields.pop("entities").items()
        }
        return cls(**fields, entities=entities)

    def summary_json(self, seconds: float) -> dict[str, Any]:
        """``tandem link --json``: counts per entity and key, ``seconds`` the whole command took."""
        return {
            "backend": self.backend,
            "count_only": self.count_only,
            "incremental": self.incremental,
            "seconds": seconds,
            "protocol_seconds": self.seconds,
            "phases": self.phases,
            "entities": {
                name: {
                    "linked": e.linked,
                    "consented": e.consented,
                    "keys": {k: kv.matched for k, kv in e.keys.items()},
                    "blinded_sent": {k: kv.blinded_sent for k, kv in e.keys.items()},
                    "multiplied": {k: kv.multiplied for k, kv in e.keys.items()},
                    "resumed": {k: kv.resumed for k, kv in e.keys.items()},
                }
                for name, e in self.entities.items()
            },
        }

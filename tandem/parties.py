"""Who takes part and what they link: the one definition of party and entity names and presets.

A *party* is an organisation running a node (``bank``, ``market``); an *entity* is a kind of
record both parties hold and link on (``customers``, ``sellers``). A node's *preset* says whose
schema its store follows (``store/party_schema.py``) and where each entity's records are in it.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTIES: tuple[str, ...] = ("bank", "market")
ENTITIES: tuple[str, ...] = ("customers", "sellers")


def other(party: str) -> str:
    """The other party of the two (``other("bank") == "market"``); ``ValueError`` for an unknown name."""
    if party not in PARTIES:
        raise ValueError(f"unknown party '{party}' (one of {', '.join(PARTIES)})")
    return PARTIES[1 - PARTIES.index(party)]


@dataclass(frozen=True)
class EntitySource:
    """Where an entity's records live in the party's store."""

    table: str
    id: str
    consent: str
    keys: dict[str, str]  # key name (phone, email, inn) -> column


# preset (a party's schema) -> entity -> where its records are
PRESETS: dict[str, dict[str, EntitySource]] = {
    "bank": {
        "customers": EntitySource("clients", "client_id", "consent_partner", {"phone": "phone", "email": "email"}),
        "sellers": EntitySource("business_clients", "business_id", "consent_partner", {"inn": "inn"}),
    },
    "market": {
        "customers": EntitySource("users", "user_id", "consent_partner", {"phone": "phone", "email": "email"}),
        "sellers": EntitySource("sellers", "seller_id", "consent_partner", {"inn": "inn"}),
    },
}

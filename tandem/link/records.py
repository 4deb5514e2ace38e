"""A party's records for linking: consented rows, identifiers normalised, duplicates set aside."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tandem.errors import InputError
from tandem.ids import normalise_emails, normalise_inns, normalise_phones

NORMALISERS = {"phone": normalise_phones, "email": normalise_emails, "inn": normalise_inns}


@dataclass(frozen=True)
class EntitySource:
    """Where an entity's records live in the party's store."""

    table: str
    id: str
    consent: str
    keys: dict[str, str]          # key name (phone, email, inn) -> column


PRESETS = {
    "bank": {
        "customers": EntitySource("clients", "client_id", "consent_partner", {"phone": "phone", "email": "email"}),
        "sellers": EntitySource("business_clients", "business_id", "consent_partner", {"inn": "inn"}),
    },
    "market": {
        "customers": EntitySource("users", "user_id", "consent_partner", {"phone": "phone", "email": "email"}),
        "sellers": EntitySource("sellers", "seller_id", "consent_partner", {"inn": "inn"}),
    },
}


@dataclass
class KeyReport:
    """Per key: how many consented records had a usable, unique value."""

    usable: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    duplicate_values: int = 0       # values held by more than one record
    duplicate_records: int = 0      # records holding such a value (left out of this key)


@dataclass
class EntityRecords:
    """Consented records of one entity; ``values[key]`` aligns with ``ids`` (``None`` = not usable)."""

    ids: np.ndarray                                    # shape (n,), int64 local ids
    values: dict[str, np.ndarray]                      # key -> shape (n,) object
    total: int
    reports: dict[str, KeyReport]

    def candidates(self, key: str, exclude: set[int]) -> tuple[list[str], np.ndarray]:
        """Values and local ids of records usable on ``key`` and not linked already."""
        vals = self.values[key]
        mask = np.array([v is not None for v in vals], dtype=bool)
        if exclude:
            mask &= ~np.isin(self.ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        return list(vals[mask]), self.ids[mask]


def load_records(store, source: EntitySource, keys: list[str]) -> EntityRecords:
    """Read ``source`` from ``store``; keep consented rows; normalise ``keys``; set duplicates aside."""
    missing = [k for k in keys if k not in source.keys]
    if missing:
        raise InputError(f"{source.table}: no column configured for key(s) {', '.join(missing)}")
    cols = [source.id, source.consent] + [source.keys[k] for k in keys]
    table = store.read_table(source.table, cols)
    consent = np.asarray(table.column(source.consent).to_numpy(zero_copy_only=False), dtype=object)
    keep = np.array([c is True for c in consent], dtype=bool)
    ids = table.column(source.id).to_numpy(zero_copy_only=False)[keep].astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise InputError(f"{store.location}: table '{source.table}' has duplicate ids in column '{source.id}'")
    values, reports = {}, {}
    for key in keys:
        raw = table.column(source.keys[key]).to_pylist()
        raw = [r for r, k in zip(raw, keep) if k]
        normalised, rep = NORMALISERS[key](raw)
        counts = Counter(v for v in normalised if v is not None)
        dup = {v for v, n in counts.items() if n > 1}
        report = KeyReport(invalid=dict(rep.invalid), duplicate_values=len(dup))
        if dup:
            is_dup = np.array([v in dup for v in normalised], dtype=bool)
            report.duplicate_records = int(is_dup.sum())
            normalised[is_dup] = None
        report.usable = int(sum(v is not None for v in normalised))
        values[key], reports[key] = normalised, report
    return EntityRecords(ids=ids, values=values, total=int(keep.sum()), reports=reports)

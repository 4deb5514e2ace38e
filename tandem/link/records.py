"""A party's records for linking: consented rows, identifiers normalised, duplicates set aside."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tandem.errors import InputError
from tandem.ids import normalise_emails, normalise_inns, normalise_phones
from tandem.parties import EntitySource

NORMALISERS = {"phone": normalise_phones, "email": normalise_emails, "inn": normalise_inns}


@dataclass
class KeyReport:
    """Per key: how many consented records had a usable, unique value."""

    usable: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    duplicate_values: int = 0  # values held by more than one record
    duplicate_records: int = 0  # records holding such a value (left out of this key)


@dataclass
class EntityRecords:
    """Consented records of one entity; ``values[key]`` aligns with ``ids`` (``None`` = not usable)."""

    ids: np.ndarray  # shape (n,), int64 local ids
    values: dict[str, np.ndarray]  # key -> shape (n,) object
    total: int
    reports: dict[str, KeyReport]

    def candidates(self, key: str, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values (shape ``(k,)`` object) and local ids of records usable on ``key`` whose id is not in
        ``exclude`` (int64, the records linked already)."""
        vals = self.values[key]
        mask = np.not_equal(vals, np.array(None))
        if len(exclude):
            mask &= ~np.isin(self.ids, exclude)
        return vals[mask], self.ids[mask]


def load_records(store, source: EntitySource, keys: list[str]) -> EntityRecords:
    """Read ``source`` from ``store``; keep consented rows; normalise ``keys``; set duplicates aside."""
    missing = [k for k in keys if k not in source.keys]
    if missing:
        raise InputError(f"{source.table}: no column configured for key(s) {', '.join(missing)}")
    cols = [source.id, source.consent] + [source.keys[k] for k in keys]
    table = store.read_table(source.table, cols)
    keep = _consented(table.column(source.consent))
    ids = table.column(source.id).to_numpy(zero_copy_only=False)[keep].astype(np.int64)
    ordered = np.sort(ids)
    if (ordered[1:] == ordered[:-1]).any():
        raise InputError(f"{store.location}: table '{source.table}' has duplicate ids in column '{source.id}'")
    values, reports = {}, {}
    for key in keys:
        values[key], reports[key] = _unique_values(key, table.column(source.keys[key]).filter(keep))
    return EntityRecords(ids=ids, values=values, total=int(keep.sum()), reports=reports)


def _consented(column: pa.ChunkedArray) -> np.ndarray:
    """Shape ``(n,)`` bool: rows whose consent is exactly ``True`` (null, False or any other value is no)."""
    if pa.types.is_boolean(column.type):
        return pc.fill_null(column, False).to_numpy(zero_copy_only=False).astype(bool)
    return np.array([c is True for c in column.to_pylist()], dtype=bool)


def _unique_values(key: str, column: pa.ChunkedArray) -> tuple[np.ndarray, KeyReport]:
    """Normalise one key's column (shape ``(n,)``); values that several records share become ``None``."""
    normalised, rep = NORMALISERS[key](column)
    usable = np.not_equal(normalised, np.array(None))
    report = KeyReport(invalid=dict(rep.invalid))
    present = normalised[usable]
    if len(set(present)) < len(present):  # the usual case (no duplicates) costs one set
        shared = pd.Series(present, dtype=object).duplicated(keep=False).to_numpy()
        is_dup = np.zeros(len(normalised), dtype=bool)
        is_dup[np.flatnonzero(usable)[shared]] = True
        report.duplicate_values = len(pd.unique(normalised[is_dup]))
        report.duplicate_records = int(is_dup.sum())
        normalised[is_dup] = None
        usable &= ~is_dup
    report.usable = int(usable.sum())
    return normalised, report

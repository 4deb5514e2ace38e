"""One party's side of a query, from its own store: its linked customers in link-id order, and either
their group (the group holder) or their fixed-point measure values (the measure holder)."""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from tandem.errors import InputError, StoreError
from tandem.features.run import run_sql
from tandem.insight import catalog
from tandem.insight.query import FIXED_POINT, Filter, Query
from tandem.store import open_store

MAX_ROWS = 1 << 25  # with values below 2**37 every slot sum stays below 2**62 (tandem.crypto.he)
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass
class PartyRecords:
    """``link_ids`` sorted; ``groups`` ``(n,)`` int64 (``-1``: left out) for the group holder, ``values``
    ``(n, slots)`` int64 for the measure holder (all zero: left out)."""

    link_ids: list[str]
    groups: np.ndarray | None = None
    values: np.ndarray | None = None

    @property
    def digest(self) -> str:
        return links_digest(self.link_ids)


def links_digest(link_ids: list[str]) -> str:
    """SHA-256 of the sorted link ids: equal on both sides iff both link tables hold the same customers."""
    h = hashlib.sha256(b"tandem/insight/links/v1")
    for lid in link_ids:
        h.update(lid.encode() + b"\n")
    return h.hexdigest()


def load_records(store_target: str, party: str, query: Query) -> PartyRecords:
    """This party's records for ``query``: its fields computed by its own SQL, its own filters applied."""
    store = open_store(store_target, read_only="://" not in store_target)
    try:
        if store.columns("link_customers") is None:
            raise InputError(f"{store.location}: no link_customers table; run `tandem link` first")
        table = run_sql(
            store,
            catalog.TABLES[party],
            catalog.SQL[party],
            date.fromisoformat(query.as_of),
            catalog.sql_params(party, query.params),
        )
    finally:
        store.close()
    frame = table.to_pandas()
    if len(frame) > MAX_ROWS:
        raise StoreError(f"{store_target}: {len(frame):,} linked customers; insight sums at most {MAX_ROWS:,}")
    keep = np.ones(len(frame), dtype=bool)
    for f in query.where:
        if catalog.FIELDS[f.field].party == party:
            keep &= _passes(frame[catalog.FIELDS[f.field].name], f)
    out = PartyRecords(frame["link_id"].astype(str).tolist())
    if party == query.group_party:
        out.groups = _group_index(frame, query, keep)
    else:
        out.values = _slot_values(frame, query, keep)
    return out


def _passes(column: pd.Series, f: Filter) -> np.ndarray:
    """Rows meeting ``f``; a missing value meets no condition."""
    present = column.notna().to_numpy()
    if isinstance(f.value, tuple):
        inside = column.isin(f.value).to_numpy()
        return present & (inside if f.op == "in" else ~inside)
    if isinstance(f.value, str):
        equal = (column == f.value).to_numpy(dtype=bool)
        return present & (equal if f.op == "==" else ~equal)
    values = pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return present & _COMPARE[f.op](values, f.value)


def _group_index(frame: pd.DataFrame, query: Query, keep: np.ndarray) -> np.ndarray:
    """Each row's group (mixed radix over the group keys' labels), ``-1`` where filtered out or unlabelled."""
    index, keep = np.zeros(len(frame), dtype=np.int64), keep.copy()
    for f in query.group_fields:
        codes = pd.Categorical(frame[f.name], categories=list(f.labels)).codes.astype(np.int64)
        keep &= codes >= 0
        index = index * len(f.labels) + np.maximum(codes, 0)
    return np.where(keep, index, -1)


def _slot_values(frame: pd.DataFrame, query: Query, keep: np.ndarray) -> np.ndarray:
    """``(n, slots)`` int64: 1 for the count, then each field clamped to its bounds, times ``FIXED_POINT``;
    rows filtered out or without a value in some measure field are all zero."""
    columns, keep = [np.ones(len(frame))], keep.copy()
    for name in query.slots[1:]:
        lo, hi = query.bounds(name)
        raw = pd.to_numeric(frame[catalog.FIELDS[name].name]).to_numpy(dtype=np.float64, na_value=np.nan)
        keep &= ~np.isnan(raw)
        columns.append(np.round(np.clip(np.nan_to_num(raw), lo, hi) * FIXED_POINT))
    values = np.stack(columns, axis=1).astype(np.int64)
    values[~keep] = 0
    return values

"""One party's training table from a file: ids, numeric and categorical features, the label.

Accepted files: delimited text (``,`` ``\\t`` ``;`` ``|``, sniffed or given as ``sep``; ``.gz``
compressed too), read by ``tandem.learn.delimited`` (see there for shifted rows and the measured
cost), and Parquet (``.parquet``, ``.pq``). Column rules, each a one-line ``InputError`` naming the
file, the column and the first offending lines (rows of a Parquet file):

- the id column is read as text, trimmed; it may not be empty or repeat;
- the label holds only 0 and 1 (numbers, ``true``/``false``), in every row;
- a column is numeric when the reader parses it as numbers (integers, floats, decimals; a column
  with no value at all too): float64, NaN for missing; infinite values are refused;
- any other column (text, booleans, dates) is categorical: an object array of trimmed strings,
  ``None`` for missing or empty, booleans as ``"True"``/``"False"``;
- an unnamed column with no value (a header or rows ending with the delimiter) is dropped.

A feature with one value, or none, is accepted here: the model steps decide what to do with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tandem.errors import InputError
from tandem.learn.delimited import SHOWN_LINES, Delimited, n_rows, parse_sep, read_delimited, sep_name, shown

PARQUET_SUFFIXES = (".parquet", ".pq")

# where rows are in the file: positions in the table -> ("line", line numbers) or ("row", 1-based rows)
Locate = Callable[[np.ndarray], tuple[str, list[int]]]


class PartyFileWarning(UserWarning):
    """Rows of a party file were left out (``read_party_file``'s default ``warn``)."""


@dataclass
class PartyData:
    """One party's table: ``ids`` (n,), numeric features ``X`` (n, f) float64 with NaN for missing and
    their ``names``; ``y`` (n,) 0/1 float64 if this party holds the label; ``categorical``: name ->
    (n,) object array of str, ``None`` for missing; ``rows_left_out``: shifted rows of the file not
    read, ``left_out_lines`` their line numbers (1-based, header = 1; empty when unknown)."""

    ids: list[str]
    X: np.ndarray
    names: list[str]
    y: np.ndarray | None = None
    source: str = ""
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    rows_left_out: int = 0
    left_out_lines: list[int] = field(default_factory=list)


def _warn(message: str) -> None:
    warnings.warn(message, PartyFileWarning, stacklevel=4)  # at read_party_file's caller


def read_party_file(
    path: str | Path,
    id_column: str,
    label: str | None = None,
    sep: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> PartyData:
    """Read a delimited or Parquet file; every column but the id and the label is a feature.

    ``sep``: the delimiter of a delimited file (one character, or ``tab``); ``None``: sniffed.
    ``warn`` hears the one line about shifted rows left out (default: a ``PartyFileWarning``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        table = _read_parquet(path)
        return _party_data(table, path, id_column, label, _RowNumbers(), hint="")
    read = read_delimited(path, parse_sep(sep), [id_column], warn or _warn)
    table = read.table.drop_columns([c for c in read.unnamed if read.table[c].null_count == read.table.num_rows])
    columns = ", ".join(repr(c) for c in table.column_names[:3]) + (", ..." if table.num_columns > 3 else "")
    hint = f" (read with the delimiter {sep_name(read.sep)}: columns {columns}; --sep sets it)"
    data = _party_data(table, path, id_column, label, _LineNumbers(read), hint)
    data.rows_left_out, data.left_out_lines = read.rows_left_out, read.left_out_lines
    return data


def features(data: PartyData) -> tuple[np.ndarray, list[str], list[int]]:
    """The feature table a SecureBoost party (and the pooled reference) trains on: numeric
    columns, then categorical ones. Returns ``(X, names, categorical)``: ``X`` (n, f) float64, or
    object (floats, then str / ``None``) when there are categorical columns; their indices."""
    if not data.categorical:
        return data.X, list(data.names), []
    X = np.empty((len(data.ids), len(data.names) + len(data.categorical)), dtype=object)
    X[:, : len(data.names)] = data.X
    for j, column in enumerate(data.categorical.values()):
        X[:, len(data.names) + j] = column
    names = list(data.names) + list(data.categorical)
    return X, names, list(range(len(data.names), len(names)))


class _RowNumbers:
    """Parquet rows, named by their 1-based position."""

    def __call__(self, rows: np.ndarray) -> tuple[str, list[int]]:
        return "row", (rows + 1).tolist()


class _LineNumbers:
    """Rows of a delimited file, named by their line number (by data row where unknown)."""

    def __init__(self, read: Delimited) -> None:
        self.read = read

    def __call__(self, rows: np.ndarray) -> tuple[str, list[int]]:
        lines = self.read.line_numbers(rows)
        return ("line", lines) if lines is not None else ("data row", (rows + 1).tolist())


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    index = (table.schema.pandas_metadata or {}).get("index_columns", [])
    return table.drop_columns([c for c in index if isinstance(c, str) and c in table.column_names])


def _party_data(table: pa.Table, path: Path, id_column: str, label: str | None, where: Locate, hint: str) -> PartyData:
    if id_column not in table.column_names:
        raise InputError(f"{path}: no id column '{id_column}'{hint}")
    if label is not None and label not in table.column_names:
        raise InputError(f"{path}: no label column '{label}'")
    ids = _ids(table[id_column], path, id_column, where)
    y = _label(table[label], path, label, where) if label is not None else None
    names: list[str] = []
    categorical: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name in (id_column, label):
            continue
        if _is_numeric(table[name].type):
            names.append(name)
        else:
            categorical[name] = _categories(table[name], path, name)
    if not names and not categorical:
        raise InputError(f"{path}: no feature columns besides '{id_column}'")
    X = _numeric(table, names)
    infinite = np.isinf(X)
    if infinite.any():
        j = int(np.flatnonzero(infinite.any(axis=0))[0])
        rows = np.flatnonzero(infinite[:, j])
        where_rows = f"{n_rows(len(rows))} {_at(where, rows)}"
        raise InputError(f"{path}: feature column '{names[j]}' holds infinite values in {where_rows}")
    return PartyData(ids, X, names, y, str(path), categorical)


def _numeric(table: pa.Table, names: list[str]) -> np.ndarray:
    """(n, f) float64, NaN for missing, column-major (as pandas' ``to_numpy`` gives it): each column is
    one contiguous copy of its chunks."""
    X = np.empty((table.num_rows, len(names)), order="F")
    for j, name in enumerate(names):
        start = 0
        for chunk in pc.cast(table[name], pa.float64()).chunks:
            X[start : start + len(chunk), j] = chunk.to_numpy(zero_copy_only=False)
            start += len(chunk)
    return X


def _is_numeric(kind: pa.DataType) -> bool:
    types = pa.types
    return types.is_integer(kind) or types.is_floating(kind) or types.is_decimal(kind) or types.is_null(kind)


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Trimmed strings, null for missing or empty."""
    text = pc.utf8_trim_whitespace(column if pa.types.is_string(column.type) else pc.cast(column, pa.string()))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _at(where: Locate, rows: np.ndarray) -> str:
    """``(lines 5, 9, 12, ...)``: where the first rows of ``rows`` are."""
    word, numbers = where(rows[: SHOWN_LINES + 1])
    return shown(numbers, word)


def _ids(column: pa.ChunkedArray, path: Path, id_column: str, where: Locate) -> list[str]:
    ids = _text(column)
    if ids.null_count:
        rows = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
        raise InputError(f"{path}: id column '{id_column}' is empty in {n_rows(len(rows))} {_at(where, rows)}")
    values = ids.to_pylist()
    if not _may_repeat(ids, values):
        return values
    repeated = np.flatnonzero(pd.Series(values).duplicated().to_numpy())
    if len(repeated):
        second = int(repeated[0])
        word, (a, b) = where(np.array([values.index(values[second]), second]))
        raise InputError(
            f"{path}: duplicate ids in column '{id_column}': the first, {values[second]!r}, is on {word}s {a} and {b}"
        )
    return values


def _may_repeat(ids: pa.ChunkedArray, values: list[str]) -> bool:
    """Whether some id may repeat: distinct integers are distinct strings (and are 10x faster to
    check), so only ids that are not all integers, or whose integers repeat, are hashed as strings."""
    try:
        numbers = pc.cast(ids, pa.int64()).to_numpy()
    except pa.ArrowException:
        return len(set(values)) < len(values)
    return pd.Index(numbers).has_duplicates


def _label(column: pa.ChunkedArray, path: Path, label: str, where: Locate) -> np.ndarray:
    """The label as 0/1 float64; refuses other values, then missing ones, naming their rows."""
    if pa.types.is_boolean(column.type) or _is_numeric(column.type):
        values = pc.cast(column, pa.float64()).to_numpy()
        missing = np.isnan(values)
    else:
        text = _text(column)
        missing = text.is_null().to_numpy(zero_copy_only=False)
        values = pd.to_numeric(pd.Series(text.to_numpy(zero_copy_only=False)), errors="coerce").to_numpy(np.float64)
    wrong = np.flatnonzero(~missing & (values != 0) & (values != 1))
    if len(wrong):
        raise InputError(
            f"{path}: label column '{label}' must hold only 0 and 1: {n_rows(len(wrong))} "
            f"{'does' if len(wrong) == 1 else 'do'} not {_at(where, wrong)}"
        )
    empty = np.flatnonzero(missing)
    if len(empty):
        raise InputError(f"{path}: label column '{label}' is empty in {n_rows(len(empty))} {_at(where, empty)}")
    if np.unique(values).size < 2:
        raise InputError(f"{path}: label column '{label}' has only one class")
    return values


def _categories(column: pa.ChunkedArray, path: Path, name: str) -> np.ndarray:
    """(n,) object array of str, ``None`` for missing; booleans as ``"True"``/``"False"``."""
    if pa.types.is_boolean(column.type):
        out = np.where(pc.fill_null(column, False).to_numpy(zero_copy_only=False), "True", "False").astype(object)
        out[column.is_null().to_numpy(zero_copy_only=False)] = None
        return out
    try:
        return _text(column).to_numpy(zero_copy_only=False)
    except pa.ArrowException as exc:
        raise InputError(f"{path}: column '{name}' cannot be read as text ({str(exc).splitlines()[0]})") from None

"""Reading Parquet and CSV files into Arrow, checked against a schema."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tandem.errors import InputError, SchemaError
from tandem.store.schema import TableSpec

_ARROW_CANONICAL = {
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.int16(): "INTEGER",
    pa.int8(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.float32(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
}


def arrow_canonical(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_dictionary(t):
        return arrow_canonical(t.value_type)
    return _ARROW_CANONICAL.get(t, str(t).upper())


def read_file(path: str | os.PathLike, spec: TableSpec | None = None) -> pa.Table:
    """Read ``path`` (``.parquet``/``.pq`` or ``.csv``/``.csv.gz``) as Arrow.

    With ``spec``, every spec column must be present; CSV columns are parsed as the
    spec's types, Parquet columns must already have them (integers may widen).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file does not exist")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            table = pq.read_table(path)
        elif name.endswith((".csv", ".csv.gz")):
            types = {c.name: spec.arrow_schema().field(c.name).type for c in spec.columns} if spec else None
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        else:
            raise InputError(f"{path}: unknown file type; expected .parquet or .csv")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise InputError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    if spec is None:
        return table
    cols = []
    for col in spec.columns:
        if col.name not in table.column_names:
            raise SchemaError(f"{path}: no column '{col.name}' (expected {col.type} for table '{spec.name}')")
        arr = table.column(col.name)
        got = arrow_canonical(arr.type)
        widen = {("INTEGER", "BIGINT"), ("BIGINT", "INTEGER"), ("INTEGER", "DOUBLE"), ("BIGINT", "DOUBLE")}
        if got != col.type and (got, col.type) not in widen:
            raise SchemaError(f"{path}: column '{col.name}' has type {got}, expected {col.type}")
        target = spec.arrow_schema().field(col.name).type
        try:
            cols.append(arr.cast(target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"{path}: column '{col.name}' cannot be read as {col.type}: {exc}") from None
    return pa.table(cols, names=spec.column_names)

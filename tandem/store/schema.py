"""Table schemas a store is checked against, in one portable type vocabulary.

Types are the canonical names ``BIGINT INTEGER DOUBLE VARCHAR BOOLEAN DATE
TIMESTAMP``; each backend's own spelling (PostgreSQL's ``double precision``,
``timestamp without time zone``...) is mapped onto them before comparing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from tandem.errors import SchemaError

CANONICAL_TYPES = ("BIGINT", "INTEGER", "DOUBLE", "VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP")

_ALIASES = {
    "INT8": "BIGINT",
    "LONG": "BIGINT",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "SIGNED": "INTEGER",
    "FLOAT8": "DOUBLE",
    "DOUBLE PRECISION": "DOUBLE",
    "FLOAT": "DOUBLE",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "CHARACTER VARYING": "VARCHAR",
    "BOOL": "BOOLEAN",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP_US": "TIMESTAMP",
}

ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}


def canonical_type(backend_type: str) -> str:
    """Map a backend's type name (``character varying(20)``, ``INT8``) to a canonical name."""
    name = str(backend_type).upper().split("(")[0].strip()
    return _ALIASES.get(name, name)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    doc: str = ""

    def __post_init__(self):
        if self.type not in CANONICAL_TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type}; use one of {CANONICAL_TYPES}")


@dataclass(frozen=True)
class TableSpec:
    """A table: its name, columns in order, and the column(s) that must be unique."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    doc: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in self.columns])

    def ddl(self, quote=lambda s: f'"{s}"', type_names: dict[str, str] | None = None) -> str:
        """``CREATE TABLE`` statement; ``type_names`` maps canonical types to a backend's."""
        type_names = type_names or {}
        cols = ", ".join(
            f"{quote(c.name)} {type_names.get(c.type, c.type)}{'' if c.nullable else ' NOT NULL'}" for c in self.columns
        )
        return f"CREATE TABLE {quote(self.name)} ({cols})"


def check_columns(where: str, spec: TableSpec, actual: dict[str, str] | None) -> None:
    """Raise ``SchemaError`` naming the first table/column/type of ``actual`` that breaks ``spec``.

    ``actual`` maps column name to the backend's type name, or is ``None`` when the
    table does not exist. Extra columns are allowed.
    """
    if actual is None:
        raise SchemaError(f"{where}: table '{spec.name}' is missing")
    lowered = {k.lower(): v for k, v in actual.items()}
    for col in spec.columns:
        if col.name.lower() not in lowered:
            raise SchemaError(f"{where}: table '{spec.name}' has no column '{col.name}' (expected {col.type})")
        got = canonical_type(lowered[col.name.lower()])
        if got != col.type:
            raise SchemaError(f"{where}: column '{spec.name}.{col.name}' has type {got}, expected {col.type}")

"""Versioned link tables: a new link run never silently replaces the ids a running service uses.

Each run that links (not count-only) writes its rows twice: as ``link_<entity>__<version>``, a
table no later run touches, and as ``link_<entity>``, the latest, which new jobs (training,
insight, offers) read. ``link_versions`` lists every kept version, newest last. The version is
derived from the link session's id (``version_of``), the same on both sides, so the two parties
can tell whether they serve the same link ids. A decision service pins the version it started
with and moves to a newer one only when its operators reload it (``POST /v1/admin/reload``).
The newest ``KEEP`` versions are kept.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pyarrow as pa

from tandem.store.schema import Column, TableSpec

KEEP = 3
VERSIONS = TableSpec(
    "link_versions",
    (
        Column("entity", "VARCHAR", False),
        Column("version", "VARCHAR", False, "from the link session's id: the same on both sides"),
        Column("peer", "VARCHAR", False),
        Column("rows", "BIGINT", False),
        Column("linked_at", "TIMESTAMP", False, "UTC"),
    ),
    key=("entity", "version"),
    doc="every kept version of the link tables, newest last",
)


def version_of(session_id: str) -> str:
    """A link run's version: 16 hex digits of a hash of its session id (safe in a table name, whatever
    the peer chose as the id)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def latest_table(entity: str) -> str:
    return f"link_{entity}"


def version_table(entity: str, version: str) -> str:
    return f"link_{entity}__{version}"


def publish(store, entity: str, rows: pa.Table, spec: TableSpec, peer: str, version: str) -> None:
    """Write ``rows`` as version ``version`` of ``entity``'s link table and as the latest; drop the
    versions older than the newest ``KEEP``."""
    store.write_table(version_table(entity, version), rows, spec)
    if store.columns(VERSIONS.name) is None:
        store.create_table(VERSIONS)
    at = datetime.now(UTC).replace(tzinfo=None)
    store.append(
        VERSIONS.name,
        pa.Table.from_pylist(
            [{"entity": entity, "version": version, "peer": peer, "rows": rows.num_rows, "linked_at": at}],
            schema=VERSIONS.arrow_schema(),
        ),
    )
    store.write_table(latest_table(entity), rows, spec)
    for old in versions(store, entity)[:-KEEP]:
        store.drop_table(version_table(entity, old))


def versions(store, entity: str) -> list[str]:
    """The kept versions of ``entity``'s link table, oldest first (empty before the first versioned run)."""
    if store.columns(VERSIONS.name) is None:
        return []
    table = store.read_table(VERSIONS.name, ["entity", "version", "linked_at"])
    found = sorted((at, v) for e, v, at in zip(*(c.to_pylist() for c in table.columns)) if e == entity)
    return [v for _at, v in found if store.columns(version_table(entity, v)) is not None]


def pinned_table(entity: str, version: str | None) -> str:
    """The table of ``version`` (``None``: the link table as it is, for stores linked before versions)."""
    return latest_table(entity) if version is None else version_table(entity, version)


def newest(store, entity: str) -> str | None:
    kept = versions(store, entity)
    return kept[-1] if kept else None

"""A node's insight policy and its privacy-budget ledger, persisted in the node's own store.

The policy is the node's ``[insight]`` section:

    [insight]
    budget = 10.0              # epsilon each partner may spend per period
    refresh = "monthly"        # when the budget refreshes: daily | weekly | monthly | never
    max_epsilon = 2.0          # the most one query may spend
    min_group_size = 50        # the smallest minimum group size this node accepts

(``tandem.insight.job.check_query`` applies the last two.) The ledger is table ``insight_budget`` of the node's
store: one row per query charged (before any figure of it is computed), so a restart, a crash or a failed query
never gives budget back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from tandem.errors import InputError
from tandem.store import open_store
from tandem.store.schema import ARROW_TYPES, Column, TableSpec

REFRESH = ("daily", "weekly", "monthly", "never")
TABLE = TableSpec(
    "insight_budget",
    (
        Column("query_id", "VARCHAR", False),
        Column("peer", "VARCHAR", False),
        Column("period", "VARCHAR", False),
        Column("epsilon", "DOUBLE", False),
        Column("role", "VARCHAR", False, "group holder | measure holder"),
        Column("query", "VARCHAR", False, "canonical JSON"),
        Column("charged_at", "TIMESTAMP", False),
    ),
    key=("query_id",),
    doc="privacy budget spent per partner and period",
)
_TOLERANCE = 1e-9


class BudgetSpent(InputError):
    """A query would spend more of a partner's budget than is left this period."""


@dataclass(frozen=True)
class InsightPolicy:
    budget: float = 10.0
    refresh: str = "monthly"
    max_epsilon: float = 2.0
    min_group_size: int = 50

    @classmethod
    def from_section(cls, section: dict, path: str | os.PathLike) -> InsightPolicy:
        """Read and check a node config's ``[insight]`` section (every error names the file and key)."""
        known = {"budget", "refresh", "max_epsilon", "min_group_size"}
        if not isinstance(section, dict) or set(section) - known:
            extra = sorted(set(section) - known) if isinstance(section, dict) else ["?"]
            raise InputError(f"{path}: [insight] has unknown key '{extra[0]}' (known: {', '.join(sorted(known))})")
        policy = cls(**section)
        for name in ("budget", "max_epsilon"):
            value = getattr(policy, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InputError(f"{path}: [insight] {name} must be a positive number")
        if policy.refresh not in REFRESH:
            raise InputError(f"{path}: [insight] refresh must be one of {', '.join(REFRESH)}")
        if (
            isinstance(policy.min_group_size, bool)
            or not isinstance(policy.min_group_size, int)
            or policy.min_group_size < 1
        ):
            raise InputError(f"{path}: [insight] min_group_size must be a positive integer")
        return policy


def period_of(refresh: str, day: date) -> tuple[str, date | None]:
    """The budget period holding ``day`` and the day the next one starts (``None``: never refreshes)."""
    if refresh == "daily":
        return day.isoformat(), day + timedelta(days=1)
    if refresh == "weekly":
        monday = day - timedelta(days=day.weekday())
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}", monday + timedelta(days=7)
    if refresh == "monthly":
        nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return f"{day.year}-{day.month:02d}", nxt
    return "all time", None


class Ledger:
    """The privacy-budget ledger of one node's store (DuckDB file or SQLAlchemy URL)."""

    def __init__(self, store: str | os.PathLike, policy: InsightPolicy, clock=lambda: datetime.now(UTC)):
        self.store, self.policy, self._clock = str(store), policy, clock

    def rows(self) -> pa.Table:
        """Every charge so far (an empty table before the first)."""
        store = open_store(self.store, read_only="://" not in self.store)
        try:
            return _read(store)
        finally:
            store.close()

    def spent(self, peer: str, rows: pa.Table | None = None) -> tuple[float, str, date | None]:
        """Epsilon spent with ``peer`` in the current period, the period, and the day it refreshes."""
        period, refreshes = period_of(self.policy.refresh, self._clock().date())
        rows = (self.rows() if rows is None else rows).to_pylist()
        return sum(r["epsilon"] for r in rows if r["peer"] == peer and r["period"] == period), period, refreshes

    def check(self, peer: str, epsilon: float, rows: pa.Table | None = None) -> None:
        """Raise ``BudgetSpent`` (one line: spent, budget, when it refreshes) unless ``epsilon`` fits."""
        spent, period, refreshes = self.spent(peer, rows)
        if spent + epsilon > self.policy.budget + _TOLERANCE:
            when = f"; it refreshes on {refreshes.isoformat()}" if refreshes else "; it never refreshes"
            raise BudgetSpent(
                f"privacy budget with {peer} for {period} is spent: {spent:g} of "
                f"{self.policy.budget:g} used, the query asks {epsilon:g}{when}"
            )

    def charge(self, peer: str, query_id: str, epsilon: float, role: str, query: str) -> None:
        """Check, then record the charge durably (the table is replaced atomically with the new row added)."""
        store = open_store(self.store)
        try:
            old = _read(store)
            self.check(peer, epsilon, old)
            if query_id in set(old.column("query_id").to_pylist()):
                raise InputError(f"query id {query_id} was charged before")
            now = self._clock()
            new = pa.table(
                {
                    "query_id": [query_id],
                    "peer": [peer],
                    "period": [period_of(self.policy.refresh, now.date())[0]],
                    "epsilon": [float(epsilon)],
                    "role": [role],
                    "query": [query],
                    "charged_at": [now.replace(tzinfo=None)],
                },
                schema=old.schema,
            )
            store.write_table(TABLE.name, pa.concat_tables([old, new]).combine_chunks(), TABLE)
        finally:
            store.close()


def _read(store) -> pa.Table:
    if store.columns(TABLE.name) is None:
        return pa.table({c.name: pa.array([], ARROW_TYPES[c.type]) for c in TABLE.columns})
    return store.read_table(TABLE.name, TABLE.column_names)

"""Dates and timestamps as numpy ``datetime64`` and their Arrow columns."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

US_PER_DAY = 86_400_000_000


def add_months(d: date, months: int) -> date:
    """First day of the month ``months`` after ``d``'s month."""
    k = d.year * 12 + (d.month - 1) + months
    return date(k // 12, k % 12 + 1, 1)


def dates_to_arrow(days: np.ndarray) -> pa.Array:
    """``datetime64[D]`` (or int days since epoch) -> Arrow ``date32``."""
    return pa.array(np.asarray(days).astype("datetime64[D]").astype(np.int32), pa.date32())


def timestamps_to_arrow(us: np.ndarray) -> pa.Array:
    """Microseconds since epoch (int64) -> Arrow ``timestamp[us]``."""
    return pa.array(np.asarray(us, dtype=np.int64), pa.timestamp("us"))


def day_number(d: date) -> int:
    """Days since 1970-01-01."""
    return int(np.datetime64(d, "D").astype(np.int64))

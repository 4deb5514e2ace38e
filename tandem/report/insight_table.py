"""All insight queries' figures in one CSV or Parquet file, written atomically."""

from __future__ import annotations

import io
from pathlib import Path

from tandem.atomic import write_atomically
from tandem.insight.result import InsightResult


def write_insight_table(path: Path, results: list[InsightResult]) -> None:
    """One row per released group; ``query`` and ``query_id`` columns first tell the queries apart."""
    import pandas as pd

    frames = [r.to_arrow().to_pandas().assign(query=r.query.name, query_id=r.query_id) for r in results]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["query", "query_id"] + [c for c in frame.columns if c not in ("query", "query_id")]]
    buf = io.BytesIO()
    if path.suffix.lower() == ".csv":
        frame.to_csv(buf, index=False)
    else:
        frame.to_parquet(buf, index=False)
    write_atomically(path, buf.getvalue())

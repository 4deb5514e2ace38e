"""The insight report: per query, what was asked, the released figures and one bar chart per measure
with its 95% noise margin. One self-contained HTML file (charts embedded as PNG), written atomically."""

from __future__ import annotations

import html
import os
from pathlib import Path

from tandem.atomic import write_atomically
from tandem.insight.result import InsightResult, shown
from tandem.report.model_report import _fmt, _png, figures, html_page


def _charts(result: InsightResult) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = len(result.query.group_by)
    rows = result.rows()
    labels = [" / ".join(r[:keys]) for r in rows]
    cols = result.columns
    charts = {}
    for measure in ["count"] + [m.label for m in result.measures]:
        i = cols.index(measure)
        fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(rows) + 1.5), 3.6))
        ax.bar(range(len(rows)), [r[i] for r in rows], yerr=[r[i + 1] for r in rows], capsize=3, color="#4a78b5")
        ax.set_xticks(range(len(rows)), labels, rotation=35, ha="right")
        ax.set(title=f"{measure} (±95% noise)", ylabel=measure.split("(")[0])
        charts[f"{result.query.name}: {measure}"] = _png(fig)
    return charts


def _section(result: InsightResult) -> str:
    q = result.query
    facts = {
        "group by": ", ".join(q.group_by),
        "measures": ", ".join(m.label for m in q.measures),
        "filters": "; ".join(f.label for f in q.where) or "none",
        "epsilon spent": q.epsilon,
        "minimum group size": q.min_group_size,
        "noise": "on" if q.noise else "off (test mode)",
        "groups released / suppressed": f"{len(result.groups)} / {result.suppressed}",
        "as of": q.as_of,
        "query id": result.query_id,
    }
    facts_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(shown(v)))}</td>" for v in row) + "</tr>" for row in result.rows()
    )
    figs = figures(_charts(result)) if result.groups else ""
    empty = "" if result.groups else "<p>No group reached the minimum size: nothing was released.</p>"
    return (
        f"<section><h2>{html.escape(q.name)}</h2><table>{facts_html}</table>{empty}"
        f"<table><tr>{head}</tr>{body}</table>{figs}</section>"
    )


def write_insight_report(path: str | os.PathLike, results: list[InsightResult], title: str) -> Path:
    """Write the report for ``results`` (the released figures only; nothing suppressed is shown)."""
    intro = (
        "<p>Figures computed jointly by the bank and the marketplace without either seeing the other's rows: "
        "groups below the minimum size are suppressed, and every figure carries differential-privacy noise "
        "(the ±95% columns; see docs/privacy.md).</p>"
    )
    return write_atomically(path, html_page(title, intro + "".join(_section(r) for r in results)).encode())

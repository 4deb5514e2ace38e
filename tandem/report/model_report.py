"""The model report: ROC, KS, score distributions, lift and calibration, importance by party.

One self-contained HTML file (charts embedded as PNG), written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

from tandem.atomic import write_atomically
from tandem.learn.metrics import deciles, ks_statistic, roc_auc


def _png(fig) -> str:
    """A matplotlib figure as base64 PNG (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_chart(y: np.ndarray, score: np.ndarray) -> str:
    """The ROC curve of scores (n,) (higher = riskier) against labels ``y`` (n,) 0/1, as base64 PNG."""
    plt = pyplot()
    order = np.argsort(-score)
    ys = y[order]
    tpr = np.r_[0, np.cumsum(ys) / ys.sum()]
    fpr = np.r_[0, np.cumsum(1 - ys) / (1 - ys).sum()]
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc(y, score):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    return _png(fig)


def ks_chart(y: np.ndarray, score: np.ndarray) -> str:
    """Both classes' cumulative score distributions and the KS statistic, as base64 PNG."""
    plt = pyplot()
    thresholds = np.sort(score)
    pos = np.searchsorted(np.sort(score[y == 1]), thresholds, side="right") / max(1, (y == 1).sum())
    neg = np.searchsorted(np.sort(score[y == 0]), thresholds, side="right") / max(1, (y == 0).sum())
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(thresholds, neg, label="repaid")
    ax.plot(thresholds, pos, label="defaulted")
    ax.set(xlabel="score (PD)", ylabel="cumulative share", title=f"KS {ks_statistic(y, score):.3f}")
    ax.legend()
    return _png(fig)


def _charts(y: np.ndarray, score: np.ndarray, importance: list[tuple[str, str, float]]) -> dict[str, str]:
    plt = pyplot()
    charts = {"ROC curve": roc_chart(y, score), "KS": ks_chart(y, score)}

    fig, ax = plt.subplots(figsize=(4.2, 4))
    bins = list(np.linspace(0, max(score.max(), 1e-9), 40))
    ax.hist(score[y == 0], bins=bins, alpha=0.6, density=True, label="repaid")
    ax.hist(score[y == 1], bins=bins, alpha=0.6, density=True, label="defaulted")
    ax.set(xlabel="score (PD)", ylabel="density", title="Score distribution")
    ax.legend()
    charts["Score distribution"] = _png(fig)

    table = deciles(y, score)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.bar([d["decile"] for d in table], [d["lift"] for d in table])
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.set(xlabel="decile (riskiest first)", ylabel="lift", title="Lift by decile")
    charts["Lift"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4.2, 4))
    mean = [d["mean_score"] for d in table]
    ax.plot(mean, [d["observed_rate"] for d in table], "o-")
    top = max(mean + [d["observed_rate"] for d in table])
    ax.plot([0, top], [0, top], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="mean predicted PD", ylabel="observed default rate", title="Calibration by decile")
    charts["Calibration"] = _png(fig)

    if importance:
        top = importance[:15][::-1]
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(top) + 1))
        ax.barh([f"{p}: {f}" for p, f, _ in top], [g for _, _, g in top])
        ax.set(xlabel="total split gain", title="Importance by party")
        charts["Importance by party"] = _png(fig)
    return charts


def write_model_report(
    path: str | os.PathLike,
    *,
    title: str,
    metrics: dict,
    y: np.ndarray,
    score: np.ndarray,
    importance: list[tuple[str, str, float]],
) -> Path:
    """Write the report; ``metrics`` is a flat dict of numbers shown in the summary table."""
    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    charts = _charts(y, score, importance)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())
    dec = "".join(
        f"<tr><td>{d['decile']}</td><td>{d['rows']}</td><td>{d['mean_score']:.4f}</td>"
        f"<td>{d['observed_rate']:.4f}</td><td>{d['lift']:.2f}</td><td>{d['cumulative_capture']:.3f}</td></tr>"
        for d in deciles(y, score)
    )
    imp = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{html.escape(f)}</td><td>{g:.2f}</td></tr>" for p, f, g in importance
    )
    body = f"""<h2>Summary (held-out test rows)</h2><table>{rows}</table>
<h2>Charts</h2>{figures(charts)}
<h2>Lift and calibration by decile</h2>
<table><tr><th>decile</th><th>rows</th><th>mean PD</th><th>observed rate</th><th>lift</th>
<th>cumulative capture</th></tr>{dec}</table>
<h2>Importance by party</h2>
<p>Features of a passive party appear as "(not shared)" unless that party chooses to share names.</p>
<table><tr><th>party</th><th>feature</th><th>total gain</th></tr>{imp}</table>"""
    return write_atomically(path, html_page(title, body).encode())


def figures(charts: dict[str, str]) -> str:
    """Charts (name -> base64 PNG) as captioned ``<figure>`` elements."""
    return "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, b64 in charts.items()
    )


def html_page(title: str, body: str) -> str:
    """A whole self-contained report page: the shared style, ``title`` as heading, then ``body``."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}} table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}} th{{text-align:left;background:#f4f4f4}}
figure{{display:inline-block;vertical-align:top;margin:.5rem}} figcaption{{text-align:center;color:#555}}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>"""


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))

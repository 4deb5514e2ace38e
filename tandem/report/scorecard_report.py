"""The scorecard report: one self-contained HTML page (charts embedded as PNG), written atomically.

Sections: the headline metrics of the held-out test rows; every feature's IV and selection status; the
points table (base points and the points of every bin of every selected feature, rounded for display);
each selected feature's bins (rows, event rate, WoE, IV term, points); ROC and KS; calibration by score
band; and, when given, the stability of a later period: the score's PSI and each own feature's CSI with
traffic lights (``stability``). A passive party's features appear under the name the model gives them and
by bin index only (``scorecard_tables``).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from tandem.atomic import write_atomically
from tandem.errors import InputError
from tandem.learn.scorecard.model import check
from tandem.learn.scorecard.points import Scaling
from tandem.learn.scorecard.stability import traffic_light
from tandem.report.model_report import _fmt, _png, figures, html_page, ks_chart, pyplot, roc_chart
from tandem.report.scorecard_tables import calibration_bands, feature_rows, is_own, points_rows

LIGHT_COLOURS = {"green": "#c8e6c9", "amber": "#ffe0b2", "red": "#ffcdd2"}  # traffic-light cell backgrounds
STYLE = "".join(f".light-{k}{{background:{v}}}" for k, v in LIGHT_COLOURS.items()) + (
    "td.text,th.text{text-align:left} .points td{padding:.15rem .5rem} .muted{color:#666}"
)


def _e(v) -> str:
    return html.escape(str(v))


def _table(head: list[str], rows: list[list], cls: str = "") -> str:
    """An HTML table; a cell given as ``(text, css class)`` gets that class, strings align left."""
    out = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, tuple):
                cells.append(f'<td class="{cell[1]}">{_e(cell[0])}</td>')
            elif isinstance(cell, str):
                cells.append(f'<td class="text">{_e(cell)}</td>')
            else:
                cells.append(f"<td>{_fmt(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><tr>{out}</tr>{"".join(body)}</table>'


def _pct(share: float) -> tuple[str, str]:
    """A share as a right-aligned percentage cell, one decimal."""
    return (f"{100 * share:.1f}", "num")


def _light(value: float) -> tuple[str, str]:
    """A stability index as a cell coloured by its traffic light (``stability.traffic_light``)."""
    light = traffic_light(value)
    return (f"{value:.4f} {light}", f"light light-{light}")


def _iv_chart(selection: list[dict], iv_min: float) -> str:
    plt = pyplot()
    rows = selection[:25][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(rows) + 1.2))
    colours = ["#1f77b4" if r["status"] == "selected" else "#bbbbbb" for r in rows]
    ax.barh([r["name"] for r in rows], [r["iv"] for r in rows], color=colours)
    ax.axvline(iv_min, color="grey", linestyle="--", linewidth=0.8, label=f"iv_min {iv_min:g}")
    ax.set(xlabel="information value", title="IV by feature (blue: selected)")
    ax.legend(loc="lower right")
    return _png(fig)


def _bins_chart(name: str, rows: list[dict]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    x = np.arange(len(rows))
    ax.bar(x, [r["woe"] for r in rows], color="#1f77b4")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="bin", ylabel="WoE", title=name)
    ax.set_xticks(x)
    rate = ax.twinx()
    rate.plot(x, [100 * r["event_rate"] for r in rows], "o-", color="#d62728")
    rate.set_ylabel("event rate %", color="#d62728")
    return _png(fig)


def _calibration_chart(bands: list[dict]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4))
    x = np.arange(len(bands))
    ax.bar(x - 0.2, [100 * b["mean_pd"] for b in bands], 0.4, label="predicted PD")
    ax.bar(x + 0.2, [100 * b["observed_rate"] for b in bands], 0.4, label="observed default rate")
    ax.set_xticks(x, [str(b["band"]) for b in bands])
    ax.set(xlabel="score band (fewest points first)", ylabel="%", title="Calibration by score band")
    ax.legend()
    return _png(fig)


def _shift_chart(title: str, table: dict, xlabel: str) -> str:
    plt = pyplot()
    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [100 * r["expected_share"] for r in rows], 0.4, label="development")
    ax.bar(x + 0.2, [100 * r["actual_share"] for r in rows], 0.4, label="later period")
    ax.set_xticks(x)
    ax.set(xlabel=xlabel, ylabel="% of rows", title=f"{title}: {table['psi']:.3f}")
    ax.legend()
    return _png(fig)


def _stability_rows(table: dict) -> list[list]:
    return [
        [r["label"], r["expected"], _pct(r["expected_share"]), r["actual"], _pct(r["actual_share"]), r["psi"]]
        for r in table["rows"]
    ]


STABILITY_HEAD = ["bin", "development rows", "%", "later rows", "%", "index term"]


def _checked_stability(model: dict, stability: dict) -> dict:
    """``stability`` (``{"period": text (optional), "score": table, "features": {name: table}}``, tables as
    ``stability.counts_table`` returns them) if it holds only the label holder's own features."""
    try:
        score, features = stability["score"], dict(stability.get("features", {}))
        for t in [score, *features.values()]:
            if not isinstance(t["rows"], list):
                raise TypeError
            traffic_light(float(t["psi"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError("stability needs a 'score' table and optional 'features' tables (rows, psi)") from None
    passive = {f["name"] for f in model["features"] if not is_own(model, f)}
    theirs = sorted(set(features) & passive)
    if theirs:
        raise InputError(f"stability of features {theirs}: each party reports its own features' stability")
    return {"period": stability.get("period"), "score": score, "features": features}


def _stability(stability: dict) -> str:
    """The stability section of a ``_checked_stability`` dict."""
    score, features = stability["score"], stability["features"]
    period = stability.get("period")
    out = ["<h2 id='stability'>Stability</h2>"]
    out.append(
        f"<p>Later period {_e(period) if period else ''} against the development sample. "
        "Traffic lights: below 0.1 green, 0.1 to 0.25 amber, above 0.25 red.</p>"
    )
    out.append(
        _table(
            ["measure", "index"],
            [["score PSI", _light(score["psi"])]] + [[f"CSI {n}", _light(t["psi"])] for n, t in features.items()],
            "lights",
        )
    )
    charts = {"Score PSI": _shift_chart("score PSI", score, "score band")}
    charts |= {f"CSI {n}": _shift_chart(f"CSI {n}", t, "bin") for n, t in features.items()}
    out.append(figures(charts))
    out.append("<h3>Score bands (deciles of the development score, points)</h3>")
    out.append(_table(STABILITY_HEAD, _stability_rows(score)))
    for name, t in features.items():
        out.append(f"<h3>CSI of {_e(name)}</h3>" + _table(STABILITY_HEAD, _stability_rows(t)))
    return "\n".join(out)


def write_scorecard_report(
    path: str | os.PathLike, model: dict, result: dict, scaling: Scaling, stability: dict | None = None
) -> Path:
    """Write the report of the label holder's model part ``model`` and its job ``result`` (``metrics``,
    ``selection``, ``test_scores`` (PD), ``test_labels``, row counts) with points on ``scaling``;
    ``stability`` as ``_stability`` reads it, or None for no stability section."""
    check(model, "active")
    if stability is not None:
        stability = _checked_stability(model, stability)
    try:
        m, selection = result["metrics"], list(result["selection"])
        pd, y = np.asarray(result["test_scores"], float), np.asarray(result["test_labels"], float)
    except (KeyError, TypeError, ValueError):
        raise InputError("the scorecard result needs metrics, selection, test_scores and test_labels") from None
    owner = {f["name"]: f.get("owner", "") for f in model["features"]}
    summary = {
        "AUC": m["auc"],
        "KS": m["ks"],
        "Gini": m["gini"],
        "Brier score": m.get("brier"),
        "rows (train)": result.get("n_train"),
        "rows (test)": result.get("n_test", len(pd)),
        "features in / selected": f"{result.get('n_features_in', len(selection))} / {len(model['features'])}",
        "points scale": f"{scaling.base_score:g} points at odds {scaling.base_odds:g}:1, {scaling.pdo:g} to double",
        "model id": model.get("model_id", ""),
    }
    parts = [
        "<h2 id='summary'>Summary (held-out test rows)</h2>",
        _table(["measure", "value"], [[k, v if v is not None else "—"] for k, v in summary.items()]),
        "<h2 id='selection'>Information value and selection</h2>",
        "<p class='muted'>Features of another party appear under the name their model part gives them.</p>",
        _table(
            ["feature", "owner", "IV", "status"],
            [[r["name"], owner.get(r["name"], "—"), r["iv"], r["status"]] for r in selection],
        ),
        figures({"IV by feature": _iv_chart(selection, float(model.get("options", {}).get("iv_min", 0.0)))}),
        "<h2 id='points'>Points table</h2>",
        _points(model, scaling),
    ]
    parts.append(_bins(model, scaling))
    bands = calibration_bands(pd, y, scaling)
    parts += [
        "<h2 id='discrimination'>Discrimination</h2>",
        figures({"ROC curve": roc_chart(y, pd), "KS": ks_chart(y, pd)}),
        "<h2 id='calibration'>Calibration by score band</h2>",
        _table(
            ["band", "points", "rows", "mean predicted PD", "observed default rate"],
            [[b["band"], b["label"], b["rows"], b["mean_pd"], b["observed_rate"]] for b in bands],
        ),
        figures({"Calibration by score band": _calibration_chart(bands)}),
    ]
    if stability is not None:
        parts.append(_stability(stability))
    title = f"Scorecard {model.get('model_id', '')} ({model.get('party', '')} + {model.get('peer', '')})"
    page = html_page(title, "\n".join(parts)).replace("</style>", STYLE + "</style>", 1)
    return write_atomically(path, page.encode())


BINS_HEAD = ["bin", "rows", "% rows", "events", "event rate %", "WoE", "IV term", "points"]


def _bins(model: dict, scaling: Scaling) -> str:
    """Each selected feature's bins (a table and a chart each)."""
    bins = feature_rows(model, scaling)
    owner = {f["name"]: f.get("owner", "") for f in model["features"]}
    out = ["<h2 id='bins'>Bins of the selected features</h2>"]
    for name, rows in bins.items():
        cells = [
            [r["label"], r["rows"], _pct(r["share"]), r["events"], _pct(r["event_rate"]), r["woe"], r["iv"],
             round(r["points"])]
            for r in rows
        ]  # fmt: skip
        out.append(f"<h3>{_e(name)} ({_e(owner[name])})</h3>" + _table(BINS_HEAD, cells))
    out.append(figures({f"WoE and event rate: {name}": _bins_chart(name, rows) for name, rows in bins.items()}))
    return "\n".join(out)


def _points(model: dict, scaling: Scaling) -> str:
    """The points table on one page: base points, then every bin of every selected feature."""
    rows = points_rows(model, scaling)
    base, rest = rows[0], rows[1:]
    body = [[base["label"], "", "", base["points"]]]
    last = None
    for r in rest:
        body.append([r["feature"] if r["feature"] != last else "", r["owner"] if r["feature"] != last else "",
                     r["label"], r["points"]])  # fmt: skip
        last = r["feature"]
    return _table(["feature", "owner", "bin", "points"], body, "points")

"""The offer report: uplift on the held-out campaigns (top-1 acceptance, revenue per 1,000 contacts),
the offer mix and what withheld the rest, propensity quality per product.

One self-contained HTML file (charts embedded as PNG), written atomically.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from tandem.atomic import write_atomically
from tandem.report.model_report import _fmt, _png, figures, html_page

COLOURS = {"random, as sent": "#cfcfcf", "random": "#9e9e9e", "bank only": "#5b8fd6", "federated": "#e07b39"}


MIX_COLUMNS = ["product", "credit", "clients offered", "as first offer", "mean propensity", "expected value, RUB"]


def mix_rows(result: dict) -> list[list]:
    """One row per product of an offers run's ``mix``, in ``MIX_COLUMNS`` order (terminal and HTML)."""
    return [
        [
            m["product"],
            "yes" if m["credit"] else "no",
            m["offers"],
            m["first"],
            m["mean_propensity"],
            f"{m['expected_value_rub']:,.0f}",
        ]
        for m in result.get("mix", [])
    ]


def _charts(result: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = {}
    ev = result.get("evaluation") or {}
    strategies = ev.get("strategies", [])
    if strategies:
        colours = [COLOURS.get(s["strategy"], "#777") for s in strategies]
        names = [s["strategy"].replace(", ", ",\n") for s in strategies]
        fig, ax = plt.subplots(figsize=(5.2, 4))
        acc = np.array([s["acceptance"] for s in strategies])
        err = np.array([[a - s["ci95"][0], s["ci95"][1] - a] for a, s in zip(acc, strategies)]).T
        ax.bar(names, acc * 100, yerr=err * 100, capsize=6, color=colours)
        ax.set(ylabel="accepted, % of contacts", title="Top-1 acceptance (held-out wave, 95% CI)")
        charts["Top-1 acceptance"] = _png(fig)

        fig, ax = plt.subplots(figsize=(5.2, 4))
        ax.bar(names, [s["revenue_per_1000"] / 1000 for s in strategies], color=colours)
        ax.set(ylabel="thousand RUB", title="Revenue per 1,000 contacts")
        charts["Revenue per 1,000 contacts"] = _png(fig)

        fig, ax = plt.subplots(figsize=(4.4, 4))
        for name, rows in ev.get("deciles", {}).items():
            ax.plot(
                [d["decile"] for d in rows],
                [d["acceptance"] * 100 for d in rows],
                "o-",
                label=name,
                color=COLOURS.get(name),
            )
        base = next(s for s in strategies if s["strategy"] == "random")
        ax.axhline(base["acceptance"] * 100, color=COLOURS["random"], linestyle="--", label="random")
        ax.set(
            xlabel="decile of the offered product's propensity (highest first)",
            ylabel="accepted, %",
            title="Acceptance by propensity decile",
        )
        ax.legend()
        charts["Acceptance by propensity decile"] = _png(fig)

        products = ev.get("products", [])
        if products:
            fig, ax = plt.subplots(figsize=(5.6, 4))
            x = np.arange(len(products))
            for k, (name, key) in enumerate((("bank only", "auc_bank_only"), ("federated", "auc_federated"))):
                ax.bar(x + (k - 0.5) * 0.38, [p[key] or 0 for p in products], 0.38, label=name, color=COLOURS[name])
            ax.axhline(0.5, color="grey", linewidth=0.8)
            ax.set_xticks(x, [p["product"].replace("_", "\n") for p in products], fontsize=8)
            ax.set(ylabel="AUC", ylim=(0.4, 1.0), title="Propensity AUC per product (held-out wave)")
            ax.legend()
            charts["Propensity AUC per product"] = _png(fig)

    mix = result.get("mix", [])
    if mix:
        fig, ax = plt.subplots(figsize=(5.6, 4))
        labels = [m["product"].replace("_", "\n") for m in mix]
        first = [m["first"] for m in mix]
        ax.bar(labels, first, label="first offer", color="#e07b39")
        ax.bar(
            labels, [m["offers"] - f for m, f in zip(mix, first)], bottom=first, label="further offers", color="#f3c19d"
        )
        ax.tick_params(axis="x", labelsize=8)
        ax.set(ylabel="clients", title="Offer mix")
        ax.legend()
        charts["Offer mix"] = _png(fig)
    withheld = result.get("withheld", {})
    if withheld:
        fig, ax = plt.subplots(figsize=(5.6, 0.45 * len(withheld) + 1.2))
        items = sorted(withheld.items(), key=lambda kv: kv[1])
        ax.barh([k.replace("_", " ") for k, _ in items], [v for _, v in items], color="#5b8fd6")
        ax.set(xlabel="client x product pairs", title="Why the other products were withheld")
        charts["Withheld"] = _png(fig)
    return charts


def _table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    cell = lambda v: "—" if v is None else html.escape(v) if isinstance(v, str) else _fmt(v)  # noqa: E731
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def write_offer_report(path: str | os.PathLike, result: dict, title: str = "Next best offers") -> Path:
    """Write the report of a ``tandem offers`` run (``offers_portfolio``'s result)."""
    ev = result.get("evaluation") or {}
    charts = _charts(result)
    uplift = _table(
        [
            "strategy",
            "contacts replayed",
            "accepted",
            "top-1 acceptance",
            "95% CI",
            "lift vs random",
            "revenue per 1,000 contacts, RUB",
        ],
        [
            [
                s["strategy"],
                s["contacts"],
                s["accepted"],
                f"{s['acceptance']:.2%}",
                f"{s['ci95'][0]:.2%} – {s['ci95'][1]:.2%}",
                f"{s['lift']:.2f}x" if s["lift"] else "—",
                f"{s['revenue_per_1000']:,.0f}",
            ]
            for s in ev.get("strategies", [])
        ],
    )
    per_product = _table(
        ["product", "held-out contacts", "acceptance (random)", "AUC bank only", "AUC federated"],
        [
            [p["product"], p["contacts"], p["acceptance"], p["auc_bank_only"], p["auc_federated"]]
            for p in ev.get("products", [])
        ],
    )
    mix = _table(MIX_COLUMNS, mix_rows(result))
    withheld = _table(["reason", "client x product pairs"], [[k, v] for k, v in result.get("withheld", {}).items()])
    note = html.escape(ev.get("note", "")) if ev.get("note") else ""
    holdout_from = html.escape(str(ev.get("holdout_from", "—")))
    body = f"""<p>{result.get("clients", 0):,} shared clients decided. Held-out campaigns from {holdout_from}:
{ev.get("contacts", 0):,} contacts, each offered one product at random; a strategy is scored on the contacts where
its top-1 offer is the product the client was offered (replay). "Random" is a random product among those the
rules allow the client (solvency, consent, eligibility), as every strategy here obeys them; "random, as sent" is
the whole wave. {note}</p>
<h2>Uplift on the held-out campaigns</h2>{uplift}
<h2>Charts</h2>{figures(charts)}
<h2>Per product</h2>{per_product}
<h2>Offer mix</h2>{mix}
<h2>Withheld</h2>{withheld}"""
    return write_atomically(path, html_page(title, body).encode())

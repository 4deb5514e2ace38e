"""The tables a command prints for each stage's result (on stdout, through ``tandem.console``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tandem.console import console, table
from tandem.report.offer_report import MIX_COLUMNS, mix_rows

if TYPE_CHECKING:
    from tandem.insight.result import InsightResult
    from tandem.learn.result import TrainingResult
    from tandem.link.result import LinkResult


def print_world_summary(s: dict, out: Path) -> None:
    """The summary of ``tandem.world.generate.generate_world``."""
    rows = [[f"bank.{t}", n] for t, n in s["tables"]["bank"].items()]
    rows += [[f"market.{t}", n] for t, n in s["tables"]["market"].items()]
    console.print(
        table(f"World in {out} ({s['persons']:,} persons, seed {s['seed']}, {s['seconds']} s)", ["table", "rows"], rows)
    )
    o, c = s["overlap"], s["consent_rates"]
    console.print(
        table(
            "Overlap, consent and outcomes",
            ["measure", "value"],
            [
                ["bank clients", o["bank_clients"]],
                ["marketplace users", o["market_users"]],
                ["bank clients who use the marketplace", o["shared_persons"]],
                ["  share of bank clients", o["share_of_bank_clients_on_market"]],
                ["consent rate, bank", c["bank"]],
                ["consent rate, marketplace", c["market"]],
                ["shared and both consented", o["both_consented"]],
                ["  of which linkable by phone or e-mail", o["matchable"]],
                [
                    "sellers / at the bank / linkable by INN",
                    f"{o['sellers']:,} / {o['sellers_at_bank']:,} / {o['sellers_matchable']:,}",
                ],
                ["application loans", s["application_loans"]],
                ["default rate (90+ DPD in 12 months)", s["default_rate"]],
            ],
        )
    )
    ids = s["identifiers"]
    console.print(
        table(
            "Identifiers that do not normalise",
            ["field", "valid", "invalid (reasons)"],
            [
                [
                    k.replace("_", " "),
                    f"{v['valid']:,}/{v['total']:,}",
                    ", ".join(f"{n:,} {r}" for r, n in v["invalid"].items()) or "—",
                ]
                for k, v in ids.items()
            ],
        )
    )
    if s.get("auc_joint") is not None:
        console.print(
            table(
                "Plaintext ceiling: LightGBM test AUC, joined by the ground truth",
                ["features", "AUC"],
                [["bank only", s["auc_bank_only"]], ["bank + marketplace", s["auc_joint"]], ["gain", s["auc_gain"]]],
            )
        )


def print_link_results(results: dict[str, LinkResult]) -> None:
    """Counts per entity and key, one table per node."""
    for node_name, r in results.items():
        rows: list[list] = []
        for entity, v in r.entities.items():
            for key, kv in v.keys.items():
                rows.append(
                    [f"{entity} / {key}", kv.candidates, kv.matched, kv.duplicate_records, sum(kv.invalid.values())]
                )
            if v.linked is not None:
                rows.append([f"{entity} linked", v.consented, v.linked, "", ""])
        title = (
            f"{node_name}: {'overlap only' if r.count_only else 'links written'} with {r.peer} (X25519: {r.backend})"
        )
        console.print(table(title, ["entity / key", "candidates", "matched", "duplicates", "invalid"], rows))


def print_training(results: dict[str, TrainingResult], label_party: str, baselines: dict) -> None:
    """The label holder's test metrics beside the pooled baselines, and what each party sent."""
    active = results[label_party]
    m = active.metrics
    console.print(
        table(
            "Federated model (test)",
            ["measure", "value"],
            [
                ["AUC (federated)", m["auc"]],
                ["AUC (same algorithm, pooled)", baselines["auc_plaintext"]],
                ["AUC (XGBoost hist, pooled)", baselines["auc_xgboost"]],
                ["KS", m["ks"]],
                ["Gini", m["gini"]],
                ["rows train / test", f"{active.n_train:,} / {active.n_test:,}"],
                ["seconds per tree", active.seconds_per_tree],
                *[[f"bytes sent by {name}", r.bytes_sent] for name, r in results.items()],
            ],
        )
    )


def print_propensity(result: dict) -> None:
    """``tandem.offers.train.train_propensity``'s test AUC per product."""
    console.print(
        table(
            f"Propensity models, trained on the campaigns before {result['holdout_from']} "
            "(test AUC on held-out contacts of each campaign)",
            ["product", "rows train / test", "AUC", "s per tree"],
            [
                [k, f"{r['n_train']:,} / {r['n_test']:,}", r["metrics"]["auc"], r["seconds_per_tree"]]
                for k, r in result["products"].items()
            ],
        )
    )


def print_offers(result: dict) -> None:
    """``tandem.offers.batch.offers_portfolio``: the offer mix, what was withheld, the uplift."""
    console.print(
        table(
            f"Offer mix: {result['clients']:,} shared clients decided into table {result['table']}",
            MIX_COLUMNS,
            mix_rows(result),
        )
    )
    console.print(
        table(
            "Withheld (client x product pairs)",
            ["reason", "pairs"],
            [[k.replace("_", " "), v] for k, v in result["withheld"].items()],
        )
    )
    credit = result["credit"]
    console.print(
        f"{credit['offers']:,} credit offers, every one with a PD under the policy's cutoff "
        f"{credit['pd_cutoff']} (highest: {credit['pd_max'] if credit['pd_max'] is not None else '—'})"
    )
    ev = result.get("evaluation")
    if ev and ev.get("strategies"):
        console.print(
            table(
                f"Uplift on the held-out campaigns from {ev['holdout_from']} ({ev['contacts']:,} "
                "contacts, one random product each; replayed on the contacts where the strategy's "
                "top-1 offer is the product offered)",
                [
                    "strategy",
                    "contacts replayed",
                    "top-1 acceptance",
                    "95% CI",
                    "lift vs random",
                    "revenue per 1,000 contacts, RUB",
                ],
                [
                    [
                        s["strategy"],
                        s["contacts"],
                        f"{s['acceptance']:.2%}",
                        f"{s['ci95'][0]:.1%} – {s['ci95'][1]:.1%}",
                        f"{s['lift']:.2f}x",
                        f"{s['revenue_per_1000']:,.0f}",
                    ]
                    for s in ev["strategies"]
                ],
            )
        )
    elif ev:
        console.print(ev.get("note", ""))
    if result.get("report"):
        console.print(f"Offer report: [bold]{result['report']}[/]")


def print_insight(r: InsightResult) -> None:
    """One query's released figures."""
    from tandem.insight.result import shown

    q = r.query
    note = (
        f"ε {q.epsilon:g}, groups of at least {q.min_group_size}"
        + ("" if q.noise else ", NO NOISE (test mode)")
        + (f"; {r.suppressed} group(s) suppressed" if r.suppressed else "")
        + (f"; where {'; '.join(f.label for f in q.where)}" if q.where else "")
    )
    headers = [
        "±95%" if c.endswith(" ±95%") else c.replace("bank.", "").replace("market.", "").replace("_", " ")
        for c in r.columns
    ]  # short, and wrappable in a narrow terminal
    console.print(table(f"{q.name} ({note})", headers, [[shown(v) for v in row] for row in r.rows()]))


def print_decide_burst(stats: dict) -> None:
    """``tandem.decide.local.burst``: decisions, PD bands and latency per kind of request."""
    for kind, s in stats.items():
        console.print(
            table(
                f"{s['requests']:,} {kind} requests through the marketplace gateway to the bank",
                ["measure", "value"],
                [
                    *[[f"{d}", f"{n:,} ({n / max(1, s['requests']):.1%})"] for d, n in s["decisions"].items()],
                    ["PD bands", ", ".join(f"{b}: {n:,}" for b, n in s["pd_bands"].items())],
                    ["latency p50 / p95 / p99 (ms)", " / ".join(f"{q:.1f}" for q in s["latency_ms"])],
                    ["errors", s["errors"]],
                ],
            )
        )


def print_scorecard_points(points: list[dict], own: str, top: int = 5) -> None:
    """The points table of the ``top`` own features with the widest points range (the base points first)."""
    spread: dict[str, list[float]] = {}
    for r in points:
        if r.get("owner") == own and r["bin"] is not None:
            spread.setdefault(r["feature"], []).append(r["points_exact"])
    keep = sorted(spread, key=lambda f: -(max(spread[f]) - min(spread[f])))[:top]
    rows = [[r["feature"], r["label"], r["points"]] for r in points if r["feature"] in keep or r.get("bin") is None]
    console.print(table(f"Points of {own}'s top features (PDO scaling)", ["feature", "bin", "points"], rows))

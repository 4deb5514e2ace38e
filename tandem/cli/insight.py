"""`tandem insight run|fields|budget`: joint figures under minimum group sizes and differential privacy."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tandem.cli.common import insight_app
from tandem.console import console, node_progress, progress_bars, table
from tandem.errors import InputError
from tandem.parties import PARTIES
from tandem.printers import print_insight


@insight_app.command("run")
def insight_run(
    world_dir: Path = typer.Option(
        ..., "--world", "-w", help="A linked world folder (`tandem world`, then `tandem link`)."
    ),
    query_files: list[Path] = typer.Option(
        [], "--query", "-q", help="A query file (TOML, [[query]] tables); may be given more than once."
    ),
    group_by: list[str] = typer.Option(
        [], "--group-by", "-g", help="A group key, e.g. bank.income_band (one query from the command line)."
    ),
    measure: list[str] = typer.Option(
        [],
        "--measure",
        "-m",
        help="count, sum(F), mean(F), share(FLAG) or share(PART, WHOLE); fields of the party without the group keys.",
    ),
    where: list[str] = typer.Option(
        [],
        "--where",
        help='A filter on either party\'s field, e.g. "bank.segment == \'premium\'" or "market.orders >= 2".',
    ),
    epsilon: float = typer.Option(1.0, help="Privacy budget the query spends (differential privacy)."),
    min_group_size: int = typer.Option(50, help="Groups with fewer linked customers are never shown."),
    as_of: str | None = typer.Option(None, help="Fields as of this date (default: the world's snapshot)."),
    param: list[str] = typer.Option(
        [], "--param", help="NAME=VALUE, e.g. duty_free_eur=200 (see `tandem insight fields`)."
    ),
    initiator: str = typer.Option("bank", help="The node that asks: bank or market."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the figures here (.csv or .parquet)."),
    report: Path | None = typer.Option(None, help="HTML report (default: WORLD/insight/report.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    budget: float = typer.Option(10.0, help="Development nodes: epsilon per partner and period."),
    refresh: str = typer.Option("monthly", help="Development nodes: daily, weekly, monthly or never."),
    max_epsilon: float = typer.Option(2.0, help="Development nodes: the most one query may spend."),
    timeout: float = typer.Option(60.0, help="Seconds a node waits for its peer before giving up."),
):
    """Ask joint questions of the bank and the marketplace (insight/1).

    Group keys of one party, measures of the other, over their linked customers; groups below the
    minimum size are suppressed and every figure carries differential-privacy noise."""
    from tandem.insight.budget import InsightPolicy
    from tandem.insight.local import insight_world
    from tandem.insight.query import load_queries, parse_query
    from tandem.report.insight_report import write_insight_report
    from tandem.report.insight_table import write_insight_table

    queries = [q for path in query_files for q in load_queries(path)]
    if group_by or measure or where:
        params = {}
        for item in param:
            name, sep, value = item.partition("=")
            try:
                params[name.strip()] = float(value)
            except ValueError:
                raise InputError(f"--param must look like NAME=NUMBER, got '{item}'") from None
        raw = {
            "group_by": group_by,
            "measures": measure or ["count"],
            "where": where,
            "epsilon": epsilon,
            "min_group_size": min_group_size,
            "params": params,
        }
        queries.append(parse_query({**raw, **({"as_of": as_of} if as_of else {})}, "command line"))
    elif param or as_of:
        raise InputError("--param and --as-of belong to a command-line query (--group-by, --measure)")
    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"--out must end in .csv or .parquet, got '{out}'")
    policy = InsightPolicy.from_section(
        {"budget": budget, "refresh": refresh, "max_epsilon": max_epsilon}, "command line"
    )
    with progress_bars(list(PARTIES)) as update:
        results = insight_world(
            world_dir, queries, initiator=initiator, policy=policy, timeout_s=timeout, on_event=node_progress(update)
        )
    if out is not None:
        write_insight_table(out, results)
    page = write_insight_report(
        report or world_dir / "insight" / "report.html", results, f"Insight: {world_dir.name} (bank + marketplace)"
    )
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "query": r.query.name,
                        "query_id": r.query_id,
                        "columns": r.columns,
                        "rows": r.rows(),
                        "suppressed": r.suppressed,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
        return
    for r in results:
        print_insight(r)
    console.print(f"report: {page}" + (f"; figures: {out}" if out else ""))


@insight_app.command("fields")
def insight_fields():
    """List the fields and parameters an insight query may use.

    Group keys with their labels, numbers with the clamping bounds that set the noise, flags."""
    from tandem.insight.catalog import FIELDS, PARAMS

    rows = [
        [
            f.qualified,
            f.kind,
            ", ".join(f.labels) if f.kind == "group" else f"[{f.bounds[0]:g}, {f.bounds[1]:g}] {f.unit}".strip(),
            f.doc,
        ]
        for f in FIELDS.values()
    ]
    console.print(
        table(
            "Insight fields (group keys of one party, measures of the other, filters on either)",
            ["field", "kind", "labels / bounds", "meaning"],
            rows,
            justify_numbers=False,
        )
    )
    console.print(
        table(
            "Parameters ([query.params] or --param NAME=VALUE)",
            ["parameter", "default", "meaning"],
            [[n, d, doc] for n, (d, doc) in PARAMS.items()],
            justify_numbers=False,
        )
    )


@insight_app.command("budget")
def insight_budget(
    target: Path = typer.Argument(..., help="A node config (.toml) or a world folder (its bank node)."),
):
    """Show a node's privacy-budget ledger and what is left per partner this period."""
    from tandem.insight.budget import Ledger
    from tandem.node_config import load_node_config

    if target.is_dir():
        target = target / "nodes" / "bank.toml"
    cfg = load_node_config(target)
    ledger = Ledger(cfg.store, cfg.insight)
    rows = ledger.rows().to_pylist()
    console.print(
        table(
            f"{cfg.name}: insight queries charged",
            ["charged at", "peer", "period", "epsilon", "role", "query id"],
            [[str(r["charged_at"])[:19], r["peer"], r["period"], r["epsilon"], r["role"], r["query_id"]] for r in rows],
        )
    )
    left = []
    for peer in cfg.peers:
        spent, period, refreshes = ledger.spent(peer)
        left.append([peer, period, spent, cfg.insight.budget - spent, refreshes.isoformat() if refreshes else "never"])
    console.print(table("Privacy budget left (epsilon)", ["peer", "period", "spent", "left", "refreshes on"], left))

"""`tandem audit`: a node's audit log."""

from __future__ import annotations

from pathlib import Path

import typer

from tandem.cli.common import app
from tandem.console import console, table


@app.command()
def audit(
    log: Path = typer.Argument(..., help="An audit log (STATE_DIR/audit.jsonl) or a node config (.toml)."),
    last: int = typer.Option(50, help="Show the last N entries (0: all)."),
    verify: bool = typer.Option(
        False, "--verify", help="Check the hash chain: exit 0 if untampered, else 1 naming the first bad line."
    ),
    reconcile: Path | None = typer.Option(
        None,
        help="The peer's audit log of the same period: compare what each side sent with what the other "
        "received, per day and message (exit 1 if they differ).",
    ),
):
    """Print a node's audit log: every message that left (or reached) the node."""
    from tandem.audit import read_audit, verify_audit

    if log.suffix == ".toml":
        from tandem.node_config import load_node_config

        log = load_node_config(log).audit_path
    if verify:
        lines, bad, why = verify_audit(log)
        if bad is not None:
            typer.echo(f"{log}: line {bad} breaks the hash chain: {why}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{log}: {lines} entries, hash chain intact")
        return
    entries, torn = read_audit(log)
    if reconcile is not None:
        _reconcile(log, entries, reconcile)
        return
    shown = entries[-last:] if last else entries
    rows = [
        [e["time"], e["direction"], e["peer"], e["protocol"], e["message"], e["bytes"], e["records"], e["session"][:8]]
        for e in shown
    ]
    console.print(
        table(
            f"{log}: {len(entries)} entries" + (f" ({torn} torn lines skipped)" if torn else ""),
            ["time", "dir", "peer", "protocol", "message", "bytes", "records", "session"],
            rows,
        )
    )
    out_bytes = sum(e["bytes"] for e in entries if e["direction"] == "out")
    console.print(f"sent {out_bytes:,} bytes in {sum(e['direction'] == 'out' for e in entries):,} messages")


def _reconcile(log: Path, entries: list[dict], other: Path) -> None:
    from tandem.audit import read_audit
    from tandem.audit import reconcile as compare

    theirs, _torn = read_audit(other)
    rows = compare(entries, theirs)
    differ = [r for r in rows if r[3] != r[4] or r[5] != r[6]]
    console.print(
        table(
            f"{log} against {other}",
            ["day", "we", "message", "messages (ours)", "messages (theirs)", "records (ours)", "records (theirs)"],
            [[*r[:3], f"{r[3]:,}", f"{r[4]:,}", f"{r[5]:,}", f"{r[6]:,}"] for r in rows],
        )
    )
    if differ:
        day, direction, message = differ[0][:3]
        typer.echo(
            f"{log}: {len(differ)} of {len(rows)} rows differ from {other}, first: {day}, {message} ({direction})",
            err=True,
        )
        raise typer.Exit(1)
    console.print(f"{len(rows)} rows: both logs agree")

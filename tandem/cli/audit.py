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
):
    """Print a node's audit log: every message that left (or reached) the node."""
    from tandem.audit import read_audit, verify_audit

    if log.suffix == ".toml":
        from tandem.node import load_node_config

        log = load_node_config(log).audit_path
    if verify:
        lines, bad, why = verify_audit(log)
        if bad is not None:
            typer.echo(f"{log}: line {bad} breaks the hash chain: {why}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{log}: {lines} entries, hash chain intact")
        return
    entries, torn = read_audit(log)
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

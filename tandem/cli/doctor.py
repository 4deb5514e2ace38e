"""`tandem doctor`: a node's own setup and its path to each peer, checked, with what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tandem.cli.common import app
from tandem.console import console


@app.command()
def doctor(
    config: Path = typer.Option(..., "--config", "-c", help="The node's config (TOML)."),
    peer: list[str] = typer.Option([], "--peer", help="Check only this peer (repeat); default: every peer."),
    timeout_s: float = typer.Option(10.0, "--timeout", help="Seconds to wait for each probe of a peer."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
):
    """Check a node: its certificates (names, expiry), store, state folder, and for each peer whether it
    answers and accepts this node, the round trip, clock skew, protocol versions and bandwidth.
    Exit status 1 if a check fails."""
    from dataclasses import asdict

    from rich.table import Table

    from tandem.doctor import diagnose, exit_code
    from tandem.errors import InputError
    from tandem.node_config import load_node_config

    cfg = load_node_config(config)
    unknown = [p for p in peer if p not in cfg.peers]
    if unknown:
        raise InputError(f"{config}: no [peers.{unknown[0]}] here; peers: {', '.join(cfg.peers) or 'none'}")
    checks = diagnose(cfg, peer or None, timeout_s)
    if as_json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        table = Table("check", "", "found", "to fix", title=f"tandem doctor: node {cfg.name}")
        for c in checks:
            table.add_row(c.what, f"[{colour[c.status]}]{c.status}[/]", c.found, c.fix)
        console.print(table)
    raise typer.Exit(exit_code(checks))

"""`tandem link`: link a world's bank and marketplace between two node processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from tandem.cli.common import BackendOption, app, backend_choice
from tandem.console import console, node_progress, progress_bars
from tandem.parties import PARTIES
from tandem.printers import print_link_results


@app.command("link")
def link_cmd(
    world_dir: Path = typer.Option(..., "--world", "-w", help="A world folder (from `tandem world`)."),
    count_only: bool = typer.Option(False, "--count-only", help="Both sides learn only the size of the overlap."),
    incremental: bool = typer.Option(
        False, "--incremental", help="Keep keys and blinded sets between runs; a later run only processes new records."
    ),
    entities: str = typer.Option("customers,sellers", help="What to link: customers, sellers or both."),
    as_json: bool = typer.Option(False, "--json", help="Print counts per key and time taken as JSON."),
    timeout: float = typer.Option(60.0, help="Seconds a node waits for its peer before giving up."),
    backend: BackendOption = None,
):
    """Link a world's bank and marketplace: two nodes, separate processes, mutual TLS on loopback."""
    from tandem.link.local import link_world

    backend_choice(backend)  # refused here, before any node starts
    started = time.perf_counter()
    with progress_bars(list(PARTIES)) as update:
        results = link_world(
            world_dir,
            entities=entities.split(","),
            count_only=count_only,
            timeout_s=timeout,
            incremental=incremental,
            backend=backend,
            on_event=node_progress(update),
        )
    seconds = round(time.perf_counter() - started, 2)
    if as_json:
        print(json.dumps(results["bank"].summary_json(seconds), indent=2))
    else:
        print_link_results(results)
        console.print(f"done in {seconds} s")

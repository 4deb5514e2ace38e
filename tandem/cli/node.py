"""`tandem node`: a party's node, serving peers or starting a link, training or insight run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from tandem.cli.common import BackendOption, SepOption, app, backend_choice, training_options
from tandem.console import console, err_console, progress_bar
from tandem.crypto.backends import backend_note
from tandem.errors import InputError, TandemError
from tandem.learn.options import DEFAULTS, TrainingOptions
from tandem.link.result import LinkResult
from tandem.printers import print_link_results


@app.command()
@training_options()
def node(
    config: Path = typer.Option(..., "--config", "-c", help="The node's TOML config."),
    link: str | None = typer.Option(None, "--link", help="Start a link run with this peer, then exit."),
    entities: str = typer.Option("customers,sellers", help="What to link: customers, sellers or both."),
    count_only: bool = typer.Option(False, "--count-only", help="Learn only the size of the overlap."),
    incremental: bool = typer.Option(
        False,
        "--incremental",
        help="Keep keys and blinded sets so that the next "
        "run with this peer only processes new records (see docs/privacy.md).",
    ),
    once: bool = typer.Option(False, "--once", help="Serve one session, then exit (status 1 if it failed)."),
    events: bool = typer.Option(False, "--events", help="Print progress and results as JSON lines."),
    data: Path | None = typer.Option(None, help="CSV or Parquet with this party's rows, for training."),
    id_column: str | None = typer.Option(None, "--id", help="The id column of --data."),
    label: str | None = typer.Option(None, help="The label column of --data (the label holder only)."),
    delimiter: SepOption = None,
    train: str | None = typer.Option(
        None, "--train", help="Train with these peers (comma-separated) as the passive parties, then exit."
    ),
    scorecard: str | None = typer.Option(
        None, "--scorecard", help="Fit a scorecard with this peer as the passive party, then exit."
    ),
    scorecard_options: str = typer.Option(
        "", help="The scorecard's binning and fit options as JSON (what `tandem scorecard` passes)."
    ),
    insight: str | None = typer.Option(
        None, "--insight", help="Run the --query files' insight queries with this peer, then exit."
    ),
    query: list[Path] = typer.Option([], "--query", help="An insight query file (TOML), for --insight."),
    sessions: int = typer.Option(0, "--sessions", help="Serve this many sessions, then exit (0: until stopped)."),
    backend: BackendOption = None,
    training: TrainingOptions = DEFAULTS,
):
    """Run a party's node: serve peers over gRPC with mutual TLS, or start a link or training run."""
    from tandem.node import Node, json_events
    from tandem.node_config import load_node_config

    cfg = load_node_config(config)
    chosen = backend_choice(backend)
    if chosen is not None:
        cfg = dataclasses.replace(cfg, link_backend=chosen)
    emit = json_events() if events else None
    train_data = None
    if data is not None:
        from tandem.learn.party_file import read_party_file

        if not id_column:
            raise InputError("--data needs --id COLUMN")
        train_data = read_party_file(
            data, id_column, label, delimiter, warn=lambda line: err_console.print(f"warning: {line}", markup=False)
        )
    n = Node(cfg, emit, train_data)
    try:
        n.start()
        if train:
            training.check()
            n.train(train.split(","), training.request_fields(), training.he, training.key_bits)
            return
        if scorecard:
            from tandem.learn.scorecard.job import default_options_json

            training.check()
            fields = {k: training.request_fields()[k] for k in ("seed", "test_fraction_ppm")}
            n.scorecard(scorecard, {**fields, "options": scorecard_options or default_options_json()},
                        training.he, training.key_bits)  # fmt: skip
            return
        if insight:
            from tandem.insight.query import load_queries

            if not query:
                raise InputError("--insight needs one or more --query FILE")
            n.insight(insight, [q for path in query for q in load_queries(path)])
            return
        if link:
            if events:
                n.link(link, entities.split(","), count_only, incremental)
            else:
                with progress_bar(f"{cfg.name} <-> {link}") as update:

                    def on_event(event: dict) -> None:
                        if event.get("event") == "progress":
                            update(event["what"], event["fraction"])

                    n.events = on_event
                    result = n.link(link, entities.split(","), count_only, incremental)
                print_link_results({cfg.name: result})
            return
        if events:
            _serve(n, 1 if once else sessions)
            return
        note = backend_note(cfg.link_backend, n.backend)
        console.print(
            f"node {cfg.name} listening on port {n.server.port}; X25519 {n.backend} ({note}); Ctrl-C stops it"
        )
        with progress_bar(f"{cfg.name} serving") as update:

            def on_served_event(event: dict) -> None:
                if event.get("event") == "progress":
                    update(event["what"], event["fraction"])
                elif event.get("event") == "result" and "entities" in event:  # a link run this node served
                    update("done", 1.0)
                    print_link_results({cfg.name: LinkResult.from_json(event)})

            n.events = on_served_event
            _serve(n, 1 if once else sessions)
    except TandemError as exc:
        if emit:
            emit({"event": "error", "node": cfg.name, "message": str(exc)})
        raise
    finally:
        n.close()


def _serve(n, limit: int) -> None:
    """Serve until ``limit`` sessions are done (0: until stopped); raise the first session's failure."""
    while not (limit and (n.served >= limit or n.failure)):
        n.finished.wait(0.5)
        n.finished.clear()
    if n.failure:
        raise TandemError(n.failure)

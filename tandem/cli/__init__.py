"""The ``tandem`` command: one module per stage registers its commands on ``common.app``."""

from __future__ import annotations

import importlib
import sys

from rich.markup import escape

from tandem.cli.common import app, insight_app, store_app
from tandem.console import err_console
from tandem.errors import TandemError

# in the order of the flow, which is the order of `tandem --help`
STAGES = (
    "world",
    "store",
    "certs",
    "node",
    "doctor",
    "link",
    "train",
    "scorecard",
    "decide",
    "monitor",
    "offers",
    "audit",
    "insight",
)
for _stage in STAGES:
    importlib.import_module(f"tandem.cli.{_stage}")
app.add_typer(store_app, name="store")
app.add_typer(insight_app, name="insight")


def main() -> None:
    """Entry point: run the app; errors on bad input print one line and exit 2."""
    try:
        app()
    except TandemError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)

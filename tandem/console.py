"""Shared terminal output: rich console, tables and a progress bar for long steps."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


@contextmanager
def progress_bar(title: str) -> Iterator:
    """Yield ``update(step, fraction)`` that drives one bar on stderr (``--json`` output stays clean).

    The bar appears on the first update, so an argument error is not preceded by an empty bar.
    """
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=err_console,
    )
    task = None
    lock = threading.Lock()  # node events may arrive on several reader threads

    def update(step: str, fraction: float) -> None:
        nonlocal task
        with lock:
            if task is None:
                bar.start()
                task = bar.add_task(title, total=1.0, step="")
            bar.update(task, completed=fraction, step=step)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


@contextmanager
def progress_bars(titles: list[str]) -> Iterator:
    """Like ``progress_bar`` with one bar per title; yields ``update(title, step, fraction)``."""
    bar = Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=err_console,
    )
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()  # each node's events arrive on its own reader thread

    def update(title: str, step: str, fraction: float) -> None:
        with lock:
            if not tasks:
                bar.start()
                for t in titles:
                    tasks[t] = bar.add_task(t, total=1.0, step="waiting")
            bar.update(tasks[title], completed=fraction, step=step)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def table(title: str, columns: list[str], rows: list[list], justify_numbers: bool = True) -> Group:
    """A titled table; the title is its own line so that it never wraps to the table's width."""
    t = Table()
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if justify_numbers and i > 0 else "left")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    return Group(Text(title, style="bold"), t)


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def node_progress(update: Callable[[str, str, float], None]) -> Callable[[str, dict], None]:
    """A node-event handler ``(node, event)`` that moves ``progress_bars``' bar of that node."""

    def on_event(node: str, event: dict) -> None:
        if event.get("event") == "progress":
            update(node, event["what"], event["fraction"])

    return on_event


def tree_progress(
    update: Callable[[str, float], None], start: float, span: float, steps: tuple[str, ...] = ("tree",)
) -> Callable[[str, dict], None]:
    """A node-event handler that moves ``progress_bar`` from ``start`` over ``span`` as a training job's steps
    (``steps``: the prefixes of its progress events; a boosted model's are its trees) go by."""

    def on_event(node: str, event: dict) -> None:
        if event.get("event") == "progress" and event["what"].startswith(steps):
            update(event["what"], start + span * event["fraction"])

    return on_event

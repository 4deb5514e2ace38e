"""What the stage commands share: the Typer apps, argument checks and the training options."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from tandem.crypto.backends import BACKEND_HELP, check_backend, choose_backend
from tandem.errors import InputError
from tandem.learn.options import DEFAULTS, HELP, NAMES, TrainingOptions
from tandem.parties import PARTIES

app = typer.Typer(
    help="Tandem: a bank and a marketplace working on their shared customers without sharing raw rows.\n\n"
    "Start with `tandem demo`, or `tandem world` to make a synthetic bank + marketplace world.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
store_app = typer.Typer(
    help="Check a party store, import files into it, copy it to another database.", no_args_is_help=True
)
insight_app = typer.Typer(
    help="Joint figures over both parties' data with minimum group sizes and differential "
    "privacy: ask them, list the fields they may use, read a node's privacy budget.",
    no_args_is_help=True,
)


# ``--backend`` of every command that links (one definition); unset, each node keeps its ``[link] backend``
BackendOption = Annotated[
    str | None, typer.Option("--backend", help=f"{BACKEND_HELP} Default: the node config's \\[link] backend (auto).")
]


# ``--sep`` of every command that reads party files (one definition); unset, each file's delimiter is sniffed
SepOption = Annotated[
    str | None,
    typer.Option(
        "--sep",
        help="Field delimiter of delimited (CSV-like) party files: one character, or 'tab'. "
        "Default: sniffed per file among , tab ; | from its first 64 KiB. Parquet files ignore it.",
    ),
]


def backend_choice(value: str | None) -> str | None:
    """``--backend``'s value, checked: ``InputError`` for an unknown name, ``BackendUnavailable`` (one line
    saying why and what to use) for ``mb`` where it cannot run; ``None`` stays ``None``."""
    if value is not None:
        choose_backend(check_backend(value))
    return value


def party_name(value: str) -> str:
    """``value`` if it names a party, else ``InputError`` naming ``--party``."""
    if value not in PARTIES:
        raise InputError(f"--party must be one of {', '.join(PARTIES)}, got '{value}'")
    return value


def is_url(target: str) -> bool:
    """A SQLAlchemy URL (opened read-write) rather than a DuckDB file."""
    return "://" in target and not target.startswith("duckdb://")


def parse_date(text: str, option: str) -> date:
    """``YYYY-MM-DD``, else ``InputError`` naming ``option`` (e.g. ``--as-of``)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} must be a date like 2019-01-01, got '{text}'") from None


def training_options(
    names: tuple[str, ...] = NAMES, defaults: Mapping[str, Any] | None = None
) -> Callable[[Callable], Callable]:
    """Give a command the training options ``names`` (all by default), generated from
    ``TrainingOptions``: they take the place of its ``training`` parameter in the option list,
    and the command is called with ``training``, the ``TrainingOptions`` of ``defaults`` (over
    ``DEFAULTS``) and the values given, to ``check()`` where it uses them."""
    defaults = dict(defaults or {})
    hints = typing.get_type_hints(TrainingOptions)
    declared = {f.name: f.metadata["flag"] for f in dataclasses.fields(TrainingOptions)}  # e.g. --goss, no --no-goss

    def option(name: str) -> inspect.Parameter:
        flag = declared[name]
        info = typer.Option(flag, help=HELP[name]) if flag else typer.Option(help=HELP[name])
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[hints[name], info],
            default=defaults.get(name, getattr(DEFAULTS, name)),
        )

    def wrap(command: Callable) -> Callable:
        params: list[inspect.Parameter] = []
        for p in inspect.signature(command, eval_str=True).parameters.values():
            params += [option(n) for n in names] if p.name == "training" else [p.replace(kind=p.KEYWORD_ONLY)]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in names}
            return command(**kwargs, training=TrainingOptions.from_args({**defaults, **given}))

        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        del run.__wrapped__  # typer reads the signature above, not the command's
        return run

    return wrap


def party_files(party: list[str], label: str) -> tuple[dict[str, Path], str, str]:
    """``--party NAME=FILE`` (repeated) and ``--label NAME:COLUMN`` -> (name -> file, label party, label column)."""
    files = {}
    for item in party:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--party must look like NAME=FILE, got '{item}'")
        files[name] = Path(file)
    label_party, sep, label_column = label.partition(":")
    if not sep or not label_column:
        raise InputError(f"--label must look like NAME:COLUMN, got '{label}'")
    return files, label_party, label_column

"""The party store: `tandem store check|import|copy`, `tandem features`, `tandem ids`."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import typer

from tandem.atomic import write_atomically
from tandem.cli.common import app, is_url, parse_date, party_name, store_app
from tandem.console import console, progress_bar, table
from tandem.errors import InputError


@store_app.command("check")
def store_check(
    target: str = typer.Argument(..., help="DuckDB file or SQLAlchemy URL."),
    party: str = typer.Option(..., help="Whose schema to check against: bank or market."),
):
    """Check that a store has every table and column its party needs, with the right types."""
    from tandem.store import open_store
    from tandem.store.base import check_schema
    from tandem.store.party_schema import TABLES

    store = open_store(target, read_only=not is_url(target))
    try:
        check_schema(store, TABLES[party_name(party)])
        rows = [
            [spec.name, store.query(f'SELECT count(*) AS n FROM "{spec.name}"').column(0)[0].as_py()]
            for spec in TABLES[party]
        ]
    finally:
        store.close()
    console.print(table(f"{target}: schema OK for {party}", ["table", "rows"], rows))


@store_app.command("import")
def store_import(
    target: str = typer.Argument(..., help="DuckDB file or SQLAlchemy URL to import into."),
    file: Path = typer.Argument(..., help="Parquet or CSV file."),
    table_name: str = typer.Option(..., "--table", help="Table to (re)place."),
    party: str | None = typer.Option(None, help="Check the file against this party's schema for the table."),
):
    """Import a Parquet or CSV file as a table (replaces the table atomically)."""
    from tandem.store import open_store
    from tandem.store.base import import_file
    from tandem.store.party_schema import spec

    table_spec = None
    if party is not None:
        try:
            table_spec = spec(party_name(party), table_name)
        except KeyError:
            raise InputError(f"--table: {party} has no table '{table_name}'") from None
    store = open_store(target, create=True)
    try:
        n = import_file(store, file, table_name, table_spec)
    finally:
        store.close()
    console.print(f"imported {n:,} rows from {file} into {target} table '{table_name}'")


@store_app.command("copy")
def store_copy(
    source: str = typer.Argument(..., help="Store to copy from."),
    dest: str = typer.Argument(..., help="Store to copy into (DuckDB file or SQLAlchemy URL)."),
    party: str = typer.Option(..., help="Whose tables to copy: bank or market."),
):
    """Copy a party's tables from one store to another, in chunks (e.g. a world into PostgreSQL)."""
    from tandem.store import open_store
    from tandem.store.base import check_schema
    from tandem.store.party_schema import TABLES

    specs = TABLES[party_name(party)]
    src = open_store(source, read_only=not is_url(source))
    dst = open_store(dest, create=True)
    try:
        check_schema(src, specs)
        with progress_bar("copy") as update:
            for i, spec in enumerate(specs):
                update(spec.name, i / len(specs))
                dst.write_table(spec.name, src.iter_batches(spec.name, columns=spec.column_names), spec)
            update("done", 1.0)
    finally:
        src.close()
        dst.close()
    console.print(f"copied {len(specs)} {party} tables from {source} to {dest}")


@app.command()
def features(
    store_target: str = typer.Option(..., "--store", help="The party's store (DuckDB file or SQLAlchemy URL)."),
    party: str = typer.Option(..., help="bank or market."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    as_of: str | None = typer.Option(None, help="Snapshot date (YYYY-MM-DD); data before it is used. Default: today."),
):
    """Build a party's model features for its own customers, from its own store."""

    from tandem.features import bank_features, market_features
    from tandem.store import open_store

    day = parse_date(as_of, "--as-of") if as_of else date.today()
    build = {"bank": bank_features, "market": market_features}[party_name(party)]
    store = open_store(store_target, read_only=not is_url(store_target))
    try:
        result = build(store, day)
    finally:
        store.close()
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(result, buf)
    write_atomically(out, buf.getvalue())
    console.print(f"wrote {result.num_rows:,} rows x {result.num_columns - 1} features to {out}")


@app.command("ids")
def ids_check(
    target: str = typer.Argument(..., help="The party's store."),
    party: str = typer.Option(..., help="bank or market."),
):
    """Normalise the party's phones and e-mails and report what cannot be normalised, and why."""
    from tandem.ids import normalise_emails, normalise_phones
    from tandem.store import open_store

    table_name = {"bank": "clients", "market": "users"}[party_name(party)]
    store = open_store(target, read_only=not is_url(target))
    try:
        data = store.read_table(table_name, ["phone", "email"])
    finally:
        store.close()
    _, phones = normalise_phones(data.column("phone").to_pylist())
    _, emails = normalise_emails(data.column("email").to_pylist())
    rows = []
    for rep in (phones, emails):
        rows.append(
            [
                rep.kind,
                rep.valid,
                rep.n_invalid,
                "; ".join(
                    f"{n:,} {r} (e.g. row {rep.examples[r][0][0]}: {rep.examples[r][0][1]!r})"
                    for r, n in rep.invalid.most_common()
                ),
            ]
        )
    console.print(table(f"{target} {table_name}", ["identifier", "valid", "invalid", "reasons"], rows))

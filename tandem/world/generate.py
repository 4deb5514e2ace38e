"""``generate_world``: persons in chunks -> each party's DuckDB store, the truth, a summary."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tandem.errors import InputError
from tandem.ids import NormalisationReport, normalise_emails, normalise_phones
from tandem.store.duck import DuckStore
from tandem.store.party_schema import BANK_TABLES, MARKET_TABLES
from tandem.world.bank import generate_bank
from tandem.world.campaigns import campaigns_table
from tandem.world.config import MAX_PERSONS, load_config
from tandem.world.market import generate_market
from tandem.world.persons import draw_persons
from tandem.world.risk import calibrate
from tandem.world.sellers import generate_sellers

Progress = Callable[[str, float], None]  # (step description, fraction done 0..1)
TRAITS = ["age", "region", "household", "income", "discipline", "impulsivity", "digital", "stress", "early_strain"]


def generate_world(
    persons: int,
    seed: int,
    out: str | os.PathLike,
    config: str | os.PathLike | None = None,
    progress: Progress | None = None,
    evaluate: bool = True,
) -> dict:
    """Write ``out/bank.duckdb``, ``out/market.duckdb``, ``out/truth.parquet``,
    ``out/truth_sellers.parquet`` and ``out/summary.json``; return the summary.

    Files appear only when everything is written (temp folder, then rename). Same
    ``persons``, ``seed`` and config give the same table contents.
    """
    if not isinstance(persons, (int, np.integer)) or persons <= 0:
        raise InputError(f"--persons must be a positive whole number, got {persons}")
    if persons > MAX_PERSONS:
        raise InputError(f"--persons must be at most {MAX_PERSONS:,}, got {persons:,}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    cfg = load_config(config)
    progress = progress or (lambda step, done: None)
    started = time.perf_counter()
    out = Path(out)
    with _staging(out) as tmp:
        progress("calibrating", 0.01)
        intercepts = calibrate(cfg, seed)
        summary = _write(persons, seed, cfg, intercepts, tmp, progress)
        summary["as_of"] = cfg["time"]["snapshot_date"].isoformat()  # the day the nodes take the data at
        if evaluate:
            from tandem.world.ceiling import ceiling_aucs

            progress("plaintext ceiling (LightGBM)", 0.95)
            summary.update(ceiling_aucs(tmp, seed=seed))
        summary["seconds"] = round(time.perf_counter() - started, 1)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    progress("done", 1.0)
    return summary


@contextmanager
def _staging(out: Path):
    """A temp folder next to (or inside) ``out`` whose files replace ``out``'s on success."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    parent = out if out.exists() else out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tandem-world-", dir=parent))
    except OSError as exc:
        raise InputError(f"{out}: cannot write the world there ({exc.strerror})") from None
    try:
        yield tmp
        if out.exists():
            for f in tmp.iterdir():
                os.replace(f, out / f.name)
            tmp.rmdir()
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(n_persons: int, seed: int, cfg: dict, intercepts: dict, tmp: Path, progress: Progress) -> dict:
    bank = DuckStore(tmp / "bank.duckdb")
    market = DuckStore(tmp / "market.duckdb")
    try:
        for store, specs in ((bank, BANK_TABLES), (market, MARKET_TABLES)):
            for spec in specs:
                store.create_table(spec)
        n_sellers = max(20, n_persons // cfg["population"]["persons_per_seller"])
        sellers = generate_sellers(np.random.default_rng([seed, 0x5E11E7]), n_sellers, cfg, intercepts["business"])
        sellers["by_category"] = {
            c: sellers["seller_id"][sellers["category"] == c] for c in np.unique(sellers["category"])
        }
        for name, table in sellers["market"].items():
            market.append(name, table)
        for name, table in sellers["bank"].items():
            bank.append(name, table)
        bank.append("campaigns", campaigns_table(cfg))
        pq.write_table(sellers["truth"], tmp / "truth_sellers.parquet")

        reports = {
            k: NormalisationReport(kind=k.split("_")[1])
            for k in ("bank_phone", "bank_email", "market_phone", "market_email")
        }
        chunk_size = cfg["population"]["chunk_persons"]
        writer = None
        for chunk, first in enumerate(range(0, n_persons, chunk_size)):
            progress(f"persons {first:,}-{min(first + chunk_size, n_persons):,}", first / n_persons * 0.9)
            rng = np.random.default_rng([seed, chunk + 1])
            people = draw_persons(rng, first, min(chunk_size, n_persons - first), cfg)
            m = generate_market(rng, people, chunk, cfg, sellers)
            b = generate_bank(rng, people, chunk, cfg, intercepts, m["card_orders"], m["behaviour"])
            for name, table in m["tables"].items():
                market.append(name, table)
            for name, table in b["tables"].items():
                bank.append(name, table)
            truth = _truth(people, b, m, reports)
            writer = writer or pq.ParquetWriter(tmp / "truth.parquet", truth.schema)
            writer.write_table(truth)
        if writer is not None:
            writer.close()
        return _summary(n_persons, seed, bank, market, tmp, reports, sellers["truth"])
    finally:
        bank.close()
        market.close()


def _truth(p, b: dict, m: dict, reports: dict) -> pa.Table:
    """One row per person: ids on each side, consent, whether the ids can link them, traits, outcome."""
    frame = pd.DataFrame({"person_id": p.person_id})
    for side, ids, key in (("bank", b["clients"], "client_id"), ("market", m["users"], "user_id")):
        phone, rp = normalise_phones(ids["phone"].to_numpy())
        email, re_ = normalise_emails(ids["email"].to_numpy())
        reports[f"{side}_phone"].merge(rp, row_offset=reports[f"{side}_phone"].total)
        reports[f"{side}_email"].merge(re_, row_offset=reports[f"{side}_email"].total)
        norm = pd.DataFrame(
            {"person_id": ids["person_id"], f"{side}_id": ids[key], f"{side}_phone": phone, f"{side}_email": email}
        )
        frame = frame.merge(norm, on="person_id", how="left")
    both = p.consent_bank & p.consent_market
    same_phone = frame["bank_phone"].notna() & (frame["bank_phone"] == frame["market_phone"])
    same_email = frame["bank_email"].notna() & (frame["bank_email"] == frame["market_email"])
    app = b["application"].set_index("person_id").reindex(p.person_id)
    columns = {
        "person_id": pa.array(p.person_id),
        "bank_client_id": pa.array(frame["bank_id"].astype("Int64"), pa.int64()),
        "market_user_id": pa.array(frame["market_id"].astype("Int64"), pa.int64()),
        "bank_consented": pa.array(p.consent_bank),
        "market_consented": pa.array(p.consent_market),
        "both_consented": pa.array(both),
        "phone_matches": pa.array(same_phone.to_numpy()),
        "email_matches": pa.array(same_email.to_numpy()),
        "matchable": pa.array(both & (same_phone | same_email).to_numpy()),
        "application_loan_id": pa.array(app["loan_id"].astype("Int64"), pa.int64()),
        "true_pd": pa.array(app["true_pd"].to_numpy(), pa.float64(), from_pandas=True),
        "defaulted": pa.array(app["default"].astype("boolean"), pa.bool_()),
    }
    for t in TRAITS:
        columns[t] = pa.array(p.traits[t].to_numpy())
    return pa.table(columns)


def _summary(n_persons, seed, bank: DuckStore, market: DuckStore, tmp: Path, reports: dict, seller_truth) -> dict:
    count = lambda store, t: store.con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: E731
    truth = pq.read_table(
        tmp / "truth.parquet",
        columns=[
            "bank_client_id",
            "market_user_id",
            "bank_consented",
            "market_consented",
            "both_consented",
            "matchable",
        ],
    ).to_pandas()
    is_bank, is_market = truth["bank_client_id"].notna(), truth["market_user_id"].notna()
    app = bank.con.execute("""
        SELECT count(*), avg(CASE WHEN default_90_12m THEN 1.0 ELSE 0.0 END)
        FROM loans WHERE issued_on >= (SELECT max(issued_on) - INTERVAL 60 DAY FROM loans)
    """).fetchone() or (0, None)
    st = seller_truth.to_pandas()
    return {
        "persons": n_persons,
        "seed": seed,
        "tables": {
            "bank": {s.name: count(bank, s.name) for s in BANK_TABLES},
            "market": {s.name: count(market, s.name) for s in MARKET_TABLES},
        },
        "overlap": {
            "bank_clients": int(is_bank.sum()),
            "market_users": int(is_market.sum()),
            "shared_persons": int((is_bank & is_market).sum()),
            "share_of_bank_clients_on_market": round(float((is_bank & is_market).sum() / max(1, is_bank.sum())), 4),
            "both_consented": int(truth["both_consented"].sum()),
            "matchable": int(truth["matchable"].sum()),
            "sellers": len(st),
            "sellers_at_bank": int(st["business_id"].notna().sum()),
            "sellers_matchable": int(st["matchable"].sum()),
        },
        "consent_rates": {
            "bank": round(float(truth.loc[is_bank, "bank_consented"].mean()), 4),
            "market": round(float(truth.loc[is_market, "market_consented"].mean()), 4),
        },
        "application_loans": int(app[0]),
        "default_rate": round(float(app[1] or 0.0), 4),
        "identifiers": {k: r.as_dict() for k, r in reports.items()},
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

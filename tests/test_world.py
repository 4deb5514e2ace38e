import json
import re

import duckdb
import pyarrow.parquet as pq
import pytest
from helpers import run_cli

from tandem.ids import normalise_emails, normalise_phones
from tandem.store.party_schema import BANK_TABLES, MARKET_TABLES
from tandem.world.generate import generate_world


def _tables(path, specs):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {s.name: con.sql(f'SELECT * FROM "{s.name}"').to_arrow_table() for s in specs}
    finally:
        con.close()


def test_cli_world_is_reproducible_and_seed_dependent(tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        run_cli("world", "--persons", "5000", "--seed", seed, "--out", str(tmp_path / name), "--no-ceiling",
                check=True)
    for f in ("bank.duckdb", "market.duckdb", "truth.parquet", "truth_sellers.parquet", "summary.json"):
        assert (tmp_path / "a" / f).is_file()
    for party, specs in (("bank", BANK_TABLES), ("market", MARKET_TABLES)):
        a = _tables(tmp_path / "a" / f"{party}.duckdb", specs)
        b = _tables(tmp_path / "b" / f"{party}.duckdb", specs)
        c = _tables(tmp_path / "c" / f"{party}.duckdb", specs)
        for name in a:
            assert a[name].num_rows > 0, name
            assert a[name].equals(b[name]), f"{party}.{name} differs between two runs with the same seed"
        assert not a["clients" if party == "bank" else "users"].equals(c["clients" if party == "bank" else "users"])
    assert pq.read_table(tmp_path / "a" / "truth.parquet").equals(pq.read_table(tmp_path / "b" / "truth.parquet"))
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["persons"] == 5000 and summary["tables"]["bank"]["clients"] > 0


def test_truth_has_one_row_per_person_and_links_ids(small_world):
    truth = pq.read_table(small_world / "truth.parquet").to_pandas()
    assert len(truth) == 6000 and truth["person_id"].is_unique
    for col in ("person_id", "bank_client_id", "market_user_id", "both_consented", "matchable", "income",
                "discipline", "impulsivity", "digital", "household", "region", "age"):
        assert col in truth.columns
    con_b = duckdb.connect(str(small_world / "bank.duckdb"), read_only=True)
    con_m = duckdb.connect(str(small_world / "market.duckdb"), read_only=True)
    clients = con_b.sql("SELECT client_id, phone, email, consent_partner FROM clients").to_df()
    users = con_m.sql("SELECT user_id, phone, email, consent_partner FROM users").to_df()
    assert set(truth["bank_client_id"].dropna().astype(int)) == set(clients["client_id"])
    assert set(truth["market_user_id"].dropna().astype(int)) == set(users["user_id"])
    both = truth.dropna(subset=["bank_client_id", "market_user_id"])
    joined = (both.merge(clients, left_on="bank_client_id", right_on="client_id")
              .merge(users, left_on="market_user_id", right_on="user_id", suffixes=("_b", "_m")))
    # matchable is recomputed here from the raw identifiers with tandem.ids and the consents
    pb, _ = normalise_phones(joined["phone_b"].tolist())
    pm, _ = normalise_phones(joined["phone_m"].tolist())
    eb, _ = normalise_emails(joined["email_b"].tolist())
    em, _ = normalise_emails(joined["email_m"].tolist())
    same = ((pb == pm) & (pb != None)) | ((eb == em) & (eb != None))  # noqa: E711
    consent = joined["consent_partner_b"].to_numpy() & joined["consent_partner_m"].to_numpy()
    assert (joined["matchable"].to_numpy() == (same & consent)).all()
    assert (joined["both_consented"].to_numpy() == consent).all()
    assert not truth.loc[truth["bank_client_id"].isna() | truth["market_user_id"].isna(), "matchable"].any()
    assert 0.9 < joined.loc[consent, "matchable"].mean() < 1.0     # most link, some identifiers are too messy


def test_identifiers_are_written_differently_on_the_two_sides(small_world):
    con_b = duckdb.connect(str(small_world / "bank.duckdb"), read_only=True)
    con_m = duckdb.connect(str(small_world / "market.duckdb"), read_only=True)
    bank_phones = [r[0] for r in con_b.execute("SELECT phone FROM clients").fetchall()]
    market_phones = [r[0] for r in con_m.execute("SELECT phone FROM users").fetchall()]
    assert all(re.fullmatch(r"(8|\+7)9\d{9}", p) for p in bank_phones)
    assert sum(bool(re.fullmatch(r"\+7 \(\d{3}\) \d{3}-\d{2}-\d{2}", p)) for p in market_phones) > len(market_phones) / 4
    bank_emails = [r[0] for r in con_b.execute("SELECT email FROM clients WHERE email IS NOT NULL").fetchall()]
    market_emails = [r[0] for r in con_m.execute("SELECT email FROM users WHERE email IS NOT NULL").fetchall()]
    assert all(e == e.lower() for e in bank_emails)
    assert sum(e != e.lower() for e in market_emails) > len(market_emails) / 3
    _, report = normalise_phones(market_phones)
    assert 0 < report.n_invalid < 0.02 * len(market_phones)       # a few unusable numbers, reported
    phones_b = set(normalise_phones(bank_phones)[0])
    assert len(phones_b) == len(bank_phones)                       # distinct people, distinct numbers


def test_default_label_matches_the_payment_history(small_world):
    con = duckdb.connect(str(small_world / "bank.duckdb"), read_only=True)
    mismatches = con.execute("""
        SELECT count(*) FROM loans l JOIN (SELECT loan_id, max(dpd) AS m, count(*) AS n FROM loan_payments
                                          GROUP BY loan_id) p USING (loan_id)
        WHERE (p.m >= 90) <> l.default_90_12m OR p.n <> 12
    """).fetchone()[0]
    assert mismatches == 0
    products = {r[0] for r in con.execute("SELECT DISTINCT product FROM loans").fetchall()}
    assert products == {"consumer", "card", "installment", "mortgage"}
    marketplace = con.execute("SELECT count(*) FROM card_transactions WHERE merchant = 'Marketplace' "
                          "AND mcc = 5399 AND channel = 'online'").fetchone()[0]
    assert marketplace > 0


def test_overlap_consent_and_sellers(small_world):
    s = json.loads((small_world / "summary.json").read_text())
    assert 0.55 <= s["overlap"]["share_of_bank_clients_on_market"] <= 0.65
    assert abs(s["consent_rates"]["bank"] - s["consent_rates"]["market"]) > 0.03
    assert 0 < s["overlap"]["sellers_matchable"] < s["overlap"]["sellers_at_bank"] < s["overlap"]["sellers"]
    sellers = pq.read_table(small_world / "truth_sellers.parquet").to_pandas()
    assert sellers["seller_id"].is_unique and sellers["inn"].is_unique


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    import tandem.world.generate as gen

    def explode(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(gen, "_summary", explode)
    with pytest.raises(RuntimeError):
        generate_world(500, 1, tmp_path / "new", evaluate=False)
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []
    # an existing world is kept whole when a rerun fails
    monkeypatch.undo()
    generate_world(500, 1, tmp_path / "old", evaluate=False)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "old").iterdir()}
    monkeypatch.setattr(gen, "_summary", explode)
    with pytest.raises(RuntimeError):
        generate_world(500, 2, tmp_path / "old", evaluate=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "old").iterdir()} == before


def test_chunking_keeps_every_person_and_unique_ids(tmp_path):
    cfg = tmp_path / "small-chunks.toml"
    cfg.write_text("[population]\nchunk_persons = 700\n")
    generate_world(3000, 5, tmp_path / "w", config=cfg, evaluate=False)
    truth = pq.read_table(tmp_path / "w" / "truth.parquet").to_pandas()
    assert sorted(truth["person_id"]) == list(range(3000))
    con = duckdb.connect(str(tmp_path / "w" / "bank.duckdb"), read_only=True)
    for table, key in (("clients", "client_id"), ("loans", "loan_id"), ("card_transactions", "txn_id")):
        n, distinct = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone()
        assert n == distinct > 0


def test_a_world_default_rate_and_value_of_joining(tmp_path_factory):
    """Calibration on a 40,000-person world (seed 7: 0.089 and +0.026 AUC). The acceptance at the
    demo's size, +0.03 AUC on 100,000 persons, is bench/world_gain.py's (90 s here: too slow for the suite)."""
    summary = generate_world(40_000, 7, tmp_path_factory.mktemp("demo") / "world")
    assert 0.04 <= summary["default_rate"] <= 0.12
    assert summary["auc_joint"] - summary["auc_bank_only"] >= 0.02
    assert summary["seconds"] > 0


def test_campaigns_contact_only_consenting_clients_and_the_last_wave_offers_a_random_product(small_world):
    con = duckdb.connect(str(small_world / "bank.duckdb"), read_only=True)
    clients = con.execute("SELECT count(*) FROM clients").fetchall()[0][0]
    prefs = con.sql("SELECT * FROM contact_preferences").df()
    assert len(prefs) == clients and prefs["client_id"].is_unique
    assert 0.8 < prefs["marketing_consent"].mean() < 0.9 and 0.02 < prefs["do_not_disturb_until"].notna().mean() < 0.06
    contacts = con.sql("""SELECT c.*, m.product, m.sent_on, p.marketing_consent FROM campaign_contacts c
                          JOIN campaigns m USING (campaign_id) JOIN contact_preferences p USING (client_id)""").df()
    con.close()
    assert contacts["marketing_consent"].all()
    wave = contacts[contacts["sent_on"] == contacts["sent_on"].max()]
    assert wave["client_id"].is_unique and wave["product"].nunique() == 5
    assert (wave["product"].value_counts(normalize=True).between(0.15, 0.25)).all()
    historic = contacts[contacts["sent_on"] < contacts["sent_on"].max()]
    assert set(historic["product"]) == set(wave["product"])
    per_product = historic.groupby("product").size() / prefs["marketing_consent"].sum()
    assert per_product.between(0.35, 0.45).all()
    assert 0.02 < historic["responded"].mean() < 0.12


def test_the_world_speaks_the_party_schema_and_records_its_day(small_world):
    """The simulator follows the product's public vocabulary (insight groups by it), and its summary
    records the day its data is taken at, which the dev cluster writes into each node's config."""
    from tandem.devcluster import world_as_of
    from tandem.insight import catalog
    from tandem.store.party_schema import CATEGORIES, REGIONS
    from tandem.world.catalog import CATEGORY_NAMES
    from tandem.world.config import load_config

    cfg = load_config()
    assert tuple(cfg["regions"]["names"]) == REGIONS and tuple(CATEGORY_NAMES) == CATEGORIES
    assert catalog.PARAMS["duty_free_eur"][0] == cfg["market"]["duty_free_threshold_eur"]
    assert catalog.PARAMS["eur_rub"][0] == cfg["market"]["eur_rub"]
    day = cfg["time"]["snapshot_date"]
    assert json.loads((small_world / "summary.json").read_text())["as_of"] == day.isoformat()
    assert world_as_of(small_world) == day
    con = duckdb.connect(str(small_world / "market.duckdb"), read_only=True)
    try:
        used = {r[0] for r in con.execute("SELECT DISTINCT region FROM users UNION SELECT DISTINCT category "
                                          "FROM order_items").fetchall()}
    finally:
        con.close()
    assert used <= set(REGIONS) | set(CATEGORIES)


def test_a_node_without_as_of_takes_today(small_world, tmp_path):
    from datetime import date

    from tandem.devcluster import node_configs, world_as_of
    from tandem.node_config import load_node_config

    assert world_as_of(tmp_path) is None                       # no summary.json: nothing recorded
    paths = node_configs(tmp_path / "nodes", {"bank": "../bank.duckdb"}, {"bank": "bank"}, 5.0)
    assert load_node_config(paths["bank"]).as_of == date.today()
    dated = node_configs(tmp_path / "dated", {"bank": "../bank.duckdb"}, {"bank": "bank"}, 5.0, as_of=date(2019, 1, 1))
    assert load_node_config(dated["bank"]).as_of == date(2019, 1, 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(dated["bank"].read_text().replace('as_of = "2019-01-01"', 'as_of = "soon"'))
    with pytest.raises(Exception, match=r"\[node\] as_of must be a date"):
        load_node_config(bad)


def test_only_the_demo_the_world_command_and_tests_import_the_world():
    """The product does not depend on its simulator (issue 12, item 5)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "tandem"
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("world/") or rel == "demo.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"^\s*(from tandem\.world[\s.]|import tandem\.world|from tandem import world)", line):
                found.append(f"{rel}:{n}")
    # the `tandem world` command is the only other importer
    assert all(f.startswith("cli/world.py:") for f in found), found

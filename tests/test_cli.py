"""Bad input: one clear line naming the problem, non-zero exit, no traceback, nothing half-written."""

import os
import shutil

import duckdb
import pytest
from helpers import one_line_error, run_cli


def test_help_reads_well():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("world", "demo", "store", "features", "ids"):
        assert command in proc.stdout


@pytest.mark.parametrize("persons", ["-5", "0"])
def test_world_rejects_non_positive_persons(tmp_path, persons):
    one_line_error(run_cli("world", "--persons", persons, "--out", str(tmp_path / "w")), "--persons", persons)
    assert not (tmp_path / "w").exists()


def test_world_rejects_an_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(run_cli("world", "--persons", "100", "--out", str(tmp_path / "file")), "not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = run_cli("world", "--persons", "100", "--out", str(locked / "w"))
        if os.geteuid() == 0:         # root ignores permission bits: the world is written
            assert proc.returncode == 0, proc.stderr
            assert (locked / "w" / "bank.duckdb").is_file()
            shutil.rmtree(locked / "w")
        else:
            one_line_error(proc, "cannot write the world there")
            assert not (locked / "w").exists()
        # a path under a file is unwritable for everyone, root included
        proc = run_cli("world", "--persons", "100", "--out", str(tmp_path / "file" / "w"))
        one_line_error(proc, "cannot write the world there")
    finally:
        locked.chmod(0o700)


def test_world_rejects_a_bad_config(tmp_path):
    cfg = tmp_path / "w.toml"
    cfg.write_text("[loans]\ndefault_rat = 0.1\n")
    one_line_error(run_cli("world", "--persons", "100", "--out", str(tmp_path / "w"), "--config", str(cfg)),
                    "w.toml", "unknown key 'default_rat' in [loans]")
    cfg.write_text("[loans\n")
    one_line_error(run_cli("world", "--persons", "100", "--out", str(tmp_path / "w"), "--config", str(cfg)),
                    "not valid TOML")
    assert not (tmp_path / "w").exists()


def test_store_check_passes_a_good_store_and_names_what_is_wrong(small_world, tmp_path):
    ok = run_cli("store", "check", str(small_world / "bank.duckdb"), "--party", "bank")
    assert ok.returncode == 0 and "schema OK" in ok.stdout
    one_line_error(run_cli("store", "check", str(small_world / "bank.duckdb"), "--party", "market"),
                    "table 'users' is missing")
    bad = tmp_path / "bank.duckdb"
    shutil.copy(small_world / "bank.duckdb", bad)
    con = duckdb.connect(str(bad))
    con.execute("ALTER TABLE loans ALTER COLUMN amount TYPE VARCHAR")
    con.execute("ALTER TABLE clients DROP COLUMN email")
    con.close()
    one_line_error(run_cli("store", "check", str(bad), "--party", "bank"),
                    "bank.duckdb", "table 'clients' has no column 'email'")
    con = duckdb.connect(str(bad))
    con.execute("ALTER TABLE clients ADD COLUMN email VARCHAR")
    con.close()
    one_line_error(run_cli("store", "check", str(bad), "--party", "bank"),
                    "column 'loans.amount' has type VARCHAR, expected DOUBLE")


def test_truncated_and_missing_store_files(small_world, tmp_path):
    data = (small_world / "market.duckdb").read_bytes()
    (tmp_path / "cut.duckdb").write_bytes(data[: len(data) // 2])
    one_line_error(run_cli("store", "check", str(tmp_path / "cut.duckdb"), "--party", "market"),
                    "cut.duckdb: cannot open as a DuckDB store")
    one_line_error(run_cli("store", "check", str(tmp_path / "none.duckdb"), "--party", "market"),
                    "none.duckdb: store file does not exist")
    one_line_error(run_cli("features", "--store", str(tmp_path / "cut.duckdb"), "--party", "market",
                            "--out", str(tmp_path / "f.parquet")), "cannot open")
    assert not (tmp_path / "f.parquet").exists()


def test_features_command_writes_parquet(small_world, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "features" / "market.parquet"
    proc = run_cli("features", "--store", str(small_world / "market.duckdb"), "--party", "market", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    t = pq.read_table(out)
    assert t.column_names[0] == "user_id" and "cod_share" in t.column_names and t.num_rows > 1000
    assert [p.name for p in out.parent.iterdir()] == ["market.parquet"]
    one_line_error(run_cli("features", "--store", str(small_world / "market.duckdb"), "--party", "bank",
                            "--out", str(tmp_path / "x.parquet")), "table 'clients' is missing")
    one_line_error(run_cli("features", "--store", str(small_world / "market.duckdb"), "--party", "market",
                            "--as-of", "yesterday", "--out", str(tmp_path / "x.parquet")), "--as-of")


def test_store_import_checks_the_file_against_the_party_schema(tmp_path):
    store = tmp_path / "mine.duckdb"
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,phone,email,registered_on,region,consent_partner\n"
                   "1,+7 916 123 45 67,a@b.ru,2018-01-01,Moscow,true\n")
    ok = run_cli("store", "import", str(store), str(csv), "--table", "users", "--party", "market")
    assert ok.returncode == 0, ok.stderr
    csv.write_text("user_id,phone,email,registered_on,region\n1,x,y,2018-01-01,Moscow\n")
    one_line_error(run_cli("store", "import", str(store), str(csv), "--table", "users", "--party", "market"),
                    "users.csv")
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 1     # the good import is intact
    con.close()


def test_ids_command_reports_reasons(small_world):
    proc = run_cli("ids", str(small_world / "market.duckdb"), "--party", "market")
    assert proc.returncode == 0, proc.stderr
    assert "not a valid number for its country" in proc.stdout and "empty" in proc.stdout


def test_a_bad_date_names_the_option_it_was_given(tmp_path):
    one_line_error(run_cli("propensity", "--world", str(tmp_path), "--holdout-from", "soon"),
                    "--holdout-from must be a date like 2019-01-01, got 'soon'")

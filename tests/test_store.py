from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tandem.errors import InputError, SchemaError, StoreError
from tandem.store import Column, TableSpec, open_store
from tandem.store.base import check_schema, import_file

SPEC = TableSpec("people", (Column("id", "BIGINT", False), Column("name", "VARCHAR"), Column("score", "DOUBLE"),
                            Column("born", "DATE"), Column("active", "BOOLEAN")), key=("id",))
ROWS = pa.table({"id": [1, 2, 3], "name": ["a", None, ""], "score": [0.5, None, 2.0],
                 "born": pa.array([date(1990, 1, 2), None, date(2001, 12, 31)], pa.date32()),
                 "active": [True, False, None]})


@pytest.fixture
def store(store_target):
    """The empty store of ``store_target`` (DuckDB, then PostgreSQL), opened."""
    s = open_store(store_target, create=True)
    yield s
    s.close()


def test_round_trip_keeps_values_nulls_and_types(store):
    assert store.write_table("people", ROWS, SPEC) == 3
    check_schema(store, [SPEC])
    back = store.read_table("people").sort_by("id")
    assert back.column_names == SPEC.column_names
    assert back.to_pylist() == ROWS.to_pylist()


def test_chunked_write_and_batched_read(store):
    chunks = [ROWS.slice(0, 2), ROWS.slice(2)]
    assert store.write_table("people", iter(chunks), SPEC) == 3
    batches = list(store.iter_batches("people", batch_size=2, columns=["id", "name"]))
    assert sum(b.num_rows for b in batches) == 3
    assert sorted(r["id"] for b in batches for r in b.to_pylist()) == [1, 2, 3]


def test_failed_write_keeps_the_old_table(store):
    store.write_table("people", ROWS, SPEC)
    bad = pa.table({"id": [7], "name": ["x"]})          # lacks the spec's other columns
    with pytest.raises((StoreError, KeyError)):
        store.write_table("people", bad, SPEC)
    assert store.read_table("people").num_rows == 3
    assert "people__tandem_tmp" not in store.table_names()


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t.drop_columns(["score"]), "table 'people' has no column 'score' (expected DOUBLE)"),
    (lambda t: t.set_column(2, "score", pa.array(["high", None, "low"])), "column 'people.score' has type VARCHAR, expected DOUBLE"),
])
def test_schema_check_names_table_column_and_type(store, mutate, message):
    store.write_table("people", mutate(ROWS))
    with pytest.raises(SchemaError) as err:
        check_schema(store, [SPEC])
    assert message in str(err.value)
    assert store.location.split("/")[-1] in str(err.value) or "postgresql" in str(err.value)


def test_schema_check_reports_a_missing_table(store):
    with pytest.raises(SchemaError, match="table 'people' is missing"):
        check_schema(store, [SPEC])


def test_reading_a_missing_table_is_a_clear_error(store):
    with pytest.raises(StoreError, match="table 'nope' is missing"):
        store.read_table("nope")


def test_import_parquet_and_csv(store, tmp_path):
    pq.write_table(ROWS, tmp_path / "people.parquet")
    assert import_file(store, tmp_path / "people.parquet", "people", SPEC) == 3
    assert store.read_table("people").sort_by("id").column("name").to_pylist() == ["a", None, ""]
    (tmp_path / "people.csv").write_text("id,name,score,born,active\n5,eve,1.5,1999-05-01,true\n6,bob,,,false\n")
    assert import_file(store, tmp_path / "people.csv", "people", SPEC) == 2
    assert store.read_table("people").sort_by("id").column("id").to_pylist() == [5, 6]


def test_import_rejects_wrong_types_and_missing_columns(store, tmp_path):
    (tmp_path / "bad.csv").write_text("id,name,score,born,active\n5,eve,high,1999-05-01,true\n")
    with pytest.raises(InputError, match="bad.csv: cannot read"):
        import_file(store, tmp_path / "bad.csv", "people", SPEC)
    pq.write_table(ROWS.drop_columns(["born"]), tmp_path / "nob.parquet")
    with pytest.raises(SchemaError, match="nob.parquet: no column 'born'"):
        import_file(store, tmp_path / "nob.parquet", "people", SPEC)
    pq.write_table(ROWS.set_column(0, "id", pa.array(["1", "2", "3"])), tmp_path / "strid.parquet")
    with pytest.raises(SchemaError, match="column 'id' has type VARCHAR, expected BIGINT"):
        import_file(store, tmp_path / "strid.parquet", "people", SPEC)
    with pytest.raises(InputError, match="does not exist"):
        import_file(store, tmp_path / "none.parquet", "people", SPEC)
    assert "people" not in store.table_names()


def test_duckdb_files_that_are_missing_truncated_or_not_duckdb(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing.duckdb")
    good = tmp_path / "good.duckdb"
    s = open_store(good, create=True)
    s.write_table("people", ROWS, SPEC)
    s.close()
    data = good.read_bytes()
    (tmp_path / "cut.duckdb").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.duckdb").write_text("id,name\n1,a\n")
    for name in ("cut.duckdb", "text.duckdb"):
        with pytest.raises(StoreError, match=f"{name}: cannot open as a DuckDB store"):
            open_store(tmp_path / name, read_only=True)


def test_unreachable_database_url_is_one_clear_error():
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")

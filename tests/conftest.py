import os
import subprocess
from pathlib import Path
from typing import NoReturn

import duckdb
import pytest
import sqlalchemy as sa

from tandem.crypto.key_size import SMALL_TEST_KEYS
from tandem.world.generate import generate_world

# 1024-bit homomorphic keys keep the trainings of the suite fast (nodes it starts inherit this);
# tests/test_options.py checks that without it a node refuses them.
os.environ[SMALL_TEST_KEYS] = "1"

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A 6,000-person world (no ceiling): the shared input of fast tests. Treat as read-only."""
    out = tmp_path_factory.mktemp("small") / "world"
    generate_world(6000, 11, out, evaluate=False)
    return out


def _unavailable(reason: str) -> NoReturn:
    """A service a test needs is missing: skip (printing the reason) outside CI, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


def _script(name: str, command: str, failure: str) -> subprocess.CompletedProcess:
    """Run one of the project's service scripts; if it fails, skip (with the reason) outside CI, fail in CI."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / name), command], capture_output=True, text=True)
    if proc.returncode != 0:
        _unavailable(f"{failure}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
    return proc


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server started by the project's script; skipped (with the reason) only outside CI."""
    proc = _script("postgres.sh", "start", "cannot start PostgreSQL")
    url, datadir = proc.stdout.strip().splitlines()[-1].split()
    yield url
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", datadir], capture_output=True)


@pytest.fixture(params=["duckdb", "postgres"])
def store_target(request, tmp_path) -> str:
    """An empty party store, once as a DuckDB file and once as a PostgreSQL database (emptied)."""
    if request.param == "duckdb":
        path = tmp_path / "party.duckdb"
        duckdb.connect(str(path)).close()
        return str(path)
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)  # each test starts from an empty database
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a real Chromium, installed by the project's script if missing; skipped (with the
    reason) only outside CI."""
    proc = _script("browser.sh", "install", "no browser")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def make_lab():
    """``make_lab(link="wan", loss=0.0)`` -> an open ``tandem.netlab.Lab`` (a network namespace of the
    test's own); skipped (with the reason) only outside CI. On teardown every lab is closed, and the
    test fails if it left a process running in one or a namespace behind."""
    from tandem.netlab import Lab, LabUnavailable

    _script("netlab.sh", "install", "no network lab")
    labs = []

    def make(link: str = "wan", loss: float = 0.0):
        lab = Lab(link, loss)
        try:
            lab.open()
        except LabUnavailable as exc:
            _unavailable(str(exc))
        labs.append(lab)
        return lab

    yield make
    stray = {lab.ns: lab.close() for lab in labs}
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(stray.values()), f"processes left running in the lab: {stray}"
    assert not any(lab.ns in left for lab in labs), left

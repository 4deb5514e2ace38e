"""Link: the responder has a say (its [link.accept] policy), and a new run never silently replaces
the link ids a running service uses (versioned link tables)."""

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pytest
from helpers import one_error_line

from tandem.devcluster import write_configs
from tandem.errors import InputError
from tandem.link import versions
from tandem.link.accept import AcceptPolicy, LinkRefused
from tandem.link.node_job import LINK_TABLE
from tandem.node_config import load_node_config
from tandem.store import open_store


def _node(config, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tandem.cli", "node", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(configs, *bank_args) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The marketplace serves one session; the bank asks it for a link run."""
    market = _node(configs["market"], "--once", "--events")
    assert json.loads(market.stdout.readline())["event"] == "ready"
    bank = _node(configs["bank"], "--link", "market", "--entities", "customers", *bank_args)
    b_out, b_err = bank.communicate(timeout=120)
    m_out, m_err = market.communicate(timeout=60)
    return (subprocess.CompletedProcess(bank.args, bank.returncode, b_out, b_err),
            subprocess.CompletedProcess(market.args, market.returncode, m_out, m_err))


def test_the_responder_refuses_a_mode_its_policy_does_not_allow(small_world, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(small_world, world)
    configs = write_configs(world, timeout_s=20)
    with configs["market"].open("a") as f:
        f.write('\n[link.accept]\nmodes = ["count_only"]\n')
    bank, market = _run(configs)                                  # a full link: not in the accepted modes
    assert bank.returncode != 0 and market.returncode != 0
    one_error_line(bank.stderr, "[link.accept] policy refuses link runs from bank")
    assert "policy refuses link runs" in market.stdout                      # the responder's own log says it too
    store = open_store(world / "market.duckdb", read_only=True)
    assert store.columns("link_customers") is None and store.columns("link_versions") is None   # nothing written
    store.close()


def test_the_accept_policy_counts_per_peer_and_survives_a_restart(tmp_path):
    policy = AcceptPolicy(min_interval_minutes=10, runs_per_day=2)
    t = 1_000_000.0
    policy.admit("bank", "link", tmp_path, now=t)
    with pytest.raises(LinkRefused, match="every 10 minutes; try again in 5 minutes"):
        policy.admit("bank", "link", tmp_path, now=t + 300)
    policy.admit("telco", "link", tmp_path, now=t + 300)          # another peer has its own count
    policy.admit("bank", "incremental", tmp_path, now=t + 700)
    with pytest.raises(LinkRefused, match="allows 2 runs from bank per 24 hours"):
        AcceptPolicy(runs_per_day=2).admit("bank", "link", tmp_path, now=t + 1400)    # a new process: same log
    AcceptPolicy(runs_per_day=2).admit("bank", "link", tmp_path, now=t + 86_401)     # a day later


@pytest.mark.parametrize("section, message", [
    ({"modes": ["everything"]}, "modes must be a non-empty list of link, count_only, incremental"),
    ({"modes": []}, "modes must be a non-empty list"),
    ({"runs_per_day": 0}, "runs_per_day must be a positive integer"),
    ({"min_interval_minutes": -1}, "min_interval_minutes must be a number >= 0"),
    ({"often": 1}, "has unknown key 'often'"),
])
def test_bad_accept_policies_name_the_file_and_key(tmp_path, section, message):
    cfg = tmp_path / "node.toml"
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in section.items())
    cfg.write_text('[node]\nname = "market"\nlisten = "127.0.0.1:1"\nstore = "m.duckdb"\n\n'
                   '[tls]\nca = "ca.pem"\ncert = "c.pem"\nkey = "c.key"\n\n[link.accept]\n' + body + "\n")
    with pytest.raises(InputError, match=f"{cfg}: \\[link.accept\\] {message}"):
        load_node_config(cfg)


def _rows(first_id: int, n: int) -> pa.Table:
    return pa.table({"link_id": [f"{i:032x}" for i in range(first_id, first_id + n)],
                     "local_id": list(range(n)), "matched_on": ["phone"] * n})


def test_a_new_run_leaves_the_pinned_version_alone_and_old_versions_are_pruned(store_target):
    store = open_store(store_target, create=True)
    spec = LINK_TABLE["customers"]
    try:
        assert versions.newest(store, "customers") is None
        assert versions.pinned_table("customers", None) == "link_customers"   # stores linked before versions
        runs = [versions.version_of(f"session-{k}") for k in range(5)]
        versions.publish(store, "customers", _rows(0, 5), spec, "bank", runs[0])
        pinned = versions.newest(store, "customers")                 # what a service pins at start
        versions.publish(store, "customers", _rows(100, 3), spec, "bank", runs[1])    # a relink under it
        assert pinned == runs[0] and versions.newest(store, "customers") == runs[1]
        served = store.read_table(versions.pinned_table("customers", pinned)).column("link_id").to_pylist()
        assert served == [f"{i:032x}" for i in range(5)]             # the service still reads its own run's ids
        assert store.read_table("link_customers").column("link_id").to_pylist()[0] == f"{100:032x}"   # new jobs: new
        for k in (2, 3, 4):
            versions.publish(store, "customers", _rows(100 * k, 3), spec, "bank", runs[k])
        assert versions.versions(store, "customers") == runs[-versions.KEEP:]          # the newest three are kept
        assert store.columns(versions.version_table("customers", runs[0])) is None
        assert all(c.isalnum() for c in versions.version_of("../x; DROP TABLE t"))    # whatever id the peer chose
    finally:
        store.close()

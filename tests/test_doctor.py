"""`tandem doctor`: a node's own setup and its path to its peer, over the real transport."""

import json
import shutil
import subprocess
import sys
import time

import pytest

from helpers import run_cli
from tandem.audit import read_audit
from tandem.crypto import pki
from tandem.devcluster import write_configs


@pytest.fixture
def nodes(small_world, tmp_path):
    """The small world's node configs (copied: the doctor writes into the state folders) and a serving market."""
    world = tmp_path / "world"
    shutil.copytree(small_world, world)
    configs = write_configs(world, timeout_s=10)
    market = subprocess.Popen([sys.executable, "-m", "tandem.cli", "node", "--config", str(configs["market"]),
                               "--events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and '"ready"' not in market.stdout.readline():
        pass
    yield world, configs
    market.kill()
    market.wait(10)


def _checks(config):
    proc = run_cli("doctor", "--config", str(config), "--json")
    return proc.returncode, {c["what"]: c for c in json.loads(proc.stdout)}


def test_a_healthy_node_and_its_path_to_the_peer_pass_and_the_probes_are_audited(nodes):
    world, configs = nodes
    code, checks = _checks(configs["bank"])
    assert code == 0, checks
    for what in ("certificate", "CA for market", "store", "state folder", "market: reach", "market: round trip",
                 "market: clock", "market: protocols", "market: bandwidth"):
        assert checks[what]["status"] == "ok", checks[what]
    assert float(checks["market: round trip"]["found"].split()[0]) < 200          # ms, on loopback
    assert abs(float(checks["market: clock"]["found"].split()[0])) < 1             # same host, same clock
    assert "link psi/2" in checks["market: protocols"]["found"]
    assert "Mbit/s up" in checks["market: bandwidth"]["found"]
    seen, _ = read_audit(world / "nodes" / "state-market" / "audit.jsonl")
    probes = [e for e in seen if e["protocol"] == "doctor"]
    assert {e["message"] for e in probes} == {"Probe", "Probe answer"} and {e["peer"] for e in probes} == {"bank"}
    mine, _ = read_audit(world / "nodes" / "state-bank" / "doctor-audit.jsonl")
    assert len(mine) == len(probes)                       # each probe out and each answer in, on both sides


def test_a_certificate_expiring_within_30_days_shows_and_a_dead_peer_fails(nodes):
    world, configs = nodes
    pki.issue_node(world / "nodes" / "certs" / "bank", "bank", days=12)
    code, checks = _checks(configs["bank"])
    assert code == 0 and checks["certificate"]["status"] == "warn"
    assert "(12 days)" in checks["certificate"]["found"] or "(11 days)" in checks["certificate"]["found"]
    assert "renew" in checks["certificate"]["fix"]
    text = configs["bank"].read_text()
    port = text.split("[peers.market]\naddress = \"127.0.0.1:")[1].split('"')[0]
    configs["bank"].write_text(text.replace(f"127.0.0.1:{port}", "127.0.0.1:9"))   # nobody listens there
    code, checks = _checks(configs["bank"])
    assert code == 1 and checks["market: reach"]["status"] == "fail"
    assert "unreachable" in checks["market: reach"]["found"]

"""Linking over the network lab (tandem/netlab.py): both nodes in a network namespace of the test's own,
with a WAN's latency and bandwidth between them, loss, and a partition in the middle of a run.

TIMEOUT_S, the nodes' ``timeout_s``: 10 s. It is shorter than the 20 s partition, so a node waiting for its
partitioned peer gives up (one error line) and the test exercises the rerun that resumes; it is far longer
than anything the wan profile or its loss holds (20 ms round trips, 200 ms holds) makes a node wait, so
those runs never time out; and it keeps the partition test at ~30 s.
"""

import json
import shutil
import subprocess
import sys
import time

import duckdb
import pytest
from helpers import one_error_line, run_cli

from tandem.devcluster import write_configs

TIMEOUT_S = 10
PARTITION_S = 20

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def world(small_world, tmp_path):
    """A private copy of the small world (a link writes its tables into the stores)."""
    dst = tmp_path / "world"
    shutil.copytree(small_world, dst)
    return dst


def _pairs(world):
    """The linked customers as {(bank local id, market local id, key)}; None if a side has no link table."""
    tables = {}
    for party in ("bank", "market"):
        con = duckdb.connect(str(world / f"{party}.duckdb"), read_only=True)
        try:
            names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            tables[party] = con.execute("SELECT * FROM link_customers").df() if "link_customers" in names else None
        finally:
            con.close()
    if tables["bank"] is None or tables["market"] is None:
        assert tables["bank"] is None and tables["market"] is None, "a link table on one side only"
        return None
    pairs = tables["bank"].merge(tables["market"], on="link_id", suffixes=("_b", "_m"))
    assert len(pairs) == len(tables["bank"]) == len(tables["market"])
    return set(zip(pairs["local_id_b"], pairs["local_id_m"], pairs["matched_on_b"]))


@pytest.fixture(scope="module")
def loopback(small_world, tmp_path_factory):
    """The same link on plain loopback (no lab): its pairs and wall time."""
    world = tmp_path_factory.mktemp("loopback") / "world"
    shutil.copytree(small_world, world)
    began = time.monotonic()
    proc = run_cli("link", "--world", str(world), "--json", "--entities", "customers")
    wall = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    pairs = _pairs(world)
    assert pairs and json.loads(proc.stdout)["entities"]["customers"]["linked"] == len(pairs)
    return pairs, wall


def _configs(world, lab, chunk=None):
    configs = write_configs(world, timeout_s=TIMEOUT_S)
    if chunk:
        for path in configs.values():  # openssl: slow enough that the partition lands mid-run
            path.write_text(path.read_text() + f'\n[link]\nchunk = {chunk}\nbackend = "openssl"\n')
    lab.wire(configs)
    return configs


def _link(lab, configs, on_event=lambda name, event: None):
    """One customers link between node processes in ``lab``; -> (bank, market) finished NodeProcesses."""
    market = lab.node("market", ["--config", str(configs["market"]), "--once"], on_event)
    assert market.ready.wait(60) and market.proc.poll() is None, market.error()
    bank = lab.node("bank", ["--config", str(configs["bank"]), "--link", "market", "--entities", "customers"],
                    on_event)
    bank.wait(timeout=90)
    market.wait(timeout=TIMEOUT_S + 30)
    return bank, market


def _keys(proc):
    return proc.result()["entities"]["customers"]["keys"]


def _closed(lab, *procs):
    """Every node ended; the lab leaves no process and no namespace behind."""
    assert all(p.proc.poll() is not None for p in procs)
    assert lab.pids() <= lab.proxy_pids()                   # only the lab's own proxies
    assert not lab.close()
    assert lab.ns not in _namespaces()


def _namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_a_link_over_wan_links_what_loopback_links(make_lab, world, loopback):
    lab = make_lab("wan")
    configs = _configs(world, lab)
    began = time.monotonic()
    bank, market = _link(lab, configs)
    wall = time.monotonic() - began
    assert (bank.proc.returncode, market.proc.returncode) == (0, 0), (bank.error(), market.error())
    pairs, loop_wall = loopback
    assert _pairs(world) == pairs                                           # the same links, both sides
    assert bank.result()["entities"]["customers"]["linked"] == len(pairs)
    print(f"link of 6,000 persons: loopback {loop_wall:.1f} s, wan {wall:.1f} s")
    assert wall < 60
    _closed(lab, bank, market)


def test_a_link_over_wan_with_loss_still_links_the_same(make_lab, world, loopback):
    lab = make_lab("wan", loss=0.01)
    configs = _configs(world, lab)
    began = time.monotonic()
    bank, market = _link(lab, configs)
    wall = time.monotonic() - began
    assert (bank.proc.returncode, market.proc.returncode) == (0, 0), (bank.error(), market.error())
    assert _pairs(world) == loopback[0]
    assert lab.losses() > 0                                                 # chunks were held as lost
    print(f"link over wan with 1% loss: {wall:.1f} s, {lab.losses()} chunks held")
    assert wall < 60
    _closed(lab, bank, market)


def test_a_partition_mid_link_ends_cleanly_and_the_rerun_resumes(make_lab, world, loopback):
    lab = make_lab("wan")
    configs = _configs(world, lab, chunk=100)
    cut = []

    def on_event(name, event):
        if name == "market" and event["event"] == "progress" and 0.3 <= event["fraction"] < 0.9 and not cut:
            cut.append((event["what"], event["fraction"], lab.partition(PARTITION_S)))

    began = time.monotonic()
    bank, market = _link(lab, configs, on_event)
    assert cut, "the market reported no progress from 30% to 90%"
    what, fraction, part = cut[0]
    key = what.split("/")[1]
    if bank.proc.returncode == 0:                                          # the transport rode it out
        assert market.proc.returncode == 0 and _pairs(world) == loopback[0]
        print(f"partition: the run succeeded in {time.monotonic() - began:.1f} s")
        _closed(lab, bank, market)
        return
    assert time.monotonic() - part.started < PARTITION_S + TIMEOUT_S + 10
    line = one_error_line(bank.stderr(), "market")
    assert market.proc.returncode != 0
    print(f"bank: {line}\nmarket: {one_error_line(market.stderr(), 'bank')}")
    assert _pairs(world) is None                                           # nothing half-written
    assert part.wait(PARTITION_S + 5)
    failed = time.monotonic() - began
    bank, market = _link(lab, configs)
    assert (bank.proc.returncode, market.proc.returncode) == (0, 0), (bank.error(), market.error())
    assert _keys(bank)[key]["resumed"] and _keys(market)[key]["resumed"]
    assert _pairs(world) == loopback[0]
    print(f"partition at {fraction:.0%} of customers/{key}: failed in {failed:.1f} s (partition included), "
          f"rerun {time.monotonic() - began - failed:.1f} s")
    _closed(lab, bank, market)


_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("up", flush=True)
c, _ = s.accept(); f = c.makefile("rb")
while (op := f.read(1)):
    if op == b"p": c.sendall(b"p")
    elif op == b"u": f.read(int(f.readline())); c.sendall(b"k")
    elif op == b"d": c.sendall(b"x" * int(f.readline()))
"""

_CLIENT = """
import json, socket, statistics, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); f = c.makefile("rb"); n = int(sys.argv[2])
def timed(send, expect):
    t = time.monotonic(); c.sendall(send); f.read(expect); return time.monotonic() - t
rtt = statistics.median(timed(b"p", 1) for _ in range(5))
up = timed(b"u%d\\n" % n + b"x" * n, 1)
down = timed(b"d%d\\n" % n, n)
print(json.dumps({"rtt": rtt, "up_mbit": n * 8 / 1e6 / up, "down_mbit": n * 8 / 1e6 / down}))
"""


def test_the_lab_gives_the_profiles_latency_and_bandwidth_each_way(make_lab):
    """Over `slow` (10 Mbit, 50 ms one way): a round trip through the proxy takes 100 ms, and 2.5 MB go
    at about 10 Mbit/s each way (the tbf's 128 KiB bucket lets a little more through at once)."""
    lab = make_lab("slow")
    server = lab.popen([sys.executable, "-c", _SERVER, "7000"], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "up"
    port = lab.proxy(7000)
    client = lab.popen([sys.executable, "-c", _CLIENT, str(port), str(2_500_000)], stdout=subprocess.PIPE, text=True)
    out, _ = client.communicate(timeout=30)
    server.kill()
    server.wait()
    got = json.loads(out)
    print(f"slow profile measured: {got}")
    assert 0.095 <= got["rtt"] <= 0.2
    assert 7 <= got["up_mbit"] <= 12 and 7 <= got["down_mbit"] <= 12
    assert lab.pids() <= lab.proxy_pids()
    assert not lab.close() and lab.ns not in _namespaces()

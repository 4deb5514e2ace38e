"""No process is left behind: a node's worker pool ends with the node, however the node ends."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tandem.devcluster import write_configs

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")


def _stat(pid):
    """(state, ppid, cpu ticks) of ``pid``, or None once it is gone (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else (fields[0], int(fields[1]), int(fields[11]) + int(fields[12]))


def _descendants(root):
    """Every live process below ``root``, children first."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[1], []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_ready(proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if json.loads(line)["event"] == "ready":
            return
    raise AssertionError(f"no ready event; stderr: {proc.stderr.read()}")


def _settled(pids, timeout=60):
    """Wait until every one of ``pids`` has stopped using CPU (done starting up, idle in the pool)."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        now = [_stat(p) for p in pids]
        if now == last:
            return
        last = now
        time.sleep(1.0)
    raise AssertionError(f"workers {pids} never settled")


def _gone_within(pids, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        alive = [p for p in pids if _stat(p) is not None]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.fixture
def node_config(small_world, tmp_path):
    world = tmp_path / "world"
    shutil.copytree(small_world, world)
    config = write_configs(world, timeout_s=10)["market"]
    lines = [("workers = 2" if line.startswith("workers =") else line) for line in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")
    return config


def _end(pids):
    """Kill what a failed test left behind (only the pids it found under its own child)."""
    for pid in pids:
        if _stat(pid) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_stopped_or_killed_node_leaves_no_process_behind(node_config, how):
    node = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "node", "--config", str(node_config), "--events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal of its own
    )
    workers = []
    try:
        _wait_ready(node)
        workers = _descendants(node.pid)
        assert len(workers) >= 2, workers  # the two pool workers (and multiprocessing's resource tracker)
        _settled(workers)
        if how == "Ctrl-C":
            os.killpg(node.pid, signal.SIGINT)  # the terminal sends it to the whole group
        else:
            node.send_signal(getattr(signal, how))
        node.wait(timeout=30)
        left = _gone_within(workers, 10)
        assert not left, f"left behind after {how}: {[(p, _stat(p)) for p in left]}"
    finally:
        node.kill()
        node.wait()
        _end(workers)


def test_a_program_using_an_engine_leaves_no_process_behind():
    """One that closes its engine, one that exits without closing it, one that is killed."""
    start = (
        "import os, sys; from tandem.engine import LocalEngine\n"
        "e = LocalEngine(2); e.warm_up(); assert e.map(abs, [-1, -2]) == [1, 2]\n"
        "print('up', flush=True); sys.stdin.readline()\n"
    )
    for tail in ("e.close()\n", "sys.exit(0)\n", "os.kill(os.getpid(), 9)\n"):
        proc = subprocess.Popen(
            [sys.executable, "-c", start + tail], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        pids = []
        try:
            assert proc.stdout.readline() == "up\n"
            pids = _descendants(proc.pid)
            assert len(pids) >= 2, pids
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
            left = _gone_within(pids, 10)
            assert not left, f"{tail.strip()}: left {left}"
        finally:
            proc.kill()
            proc.wait()
            _end(pids)

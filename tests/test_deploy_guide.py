"""docs/deploy.md, run: every command block in the guide's order, inside a network lab on the `wan` profile,
with `/srv/tandem` in a temporary folder, the hosts on 127.0.0.1 and free ports (the guide's 7001/7002)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
BLOCK = re.compile(r"```(bash|toml|ini)\n(.*?)```", re.S)


def _blocks():
    """(kind, tag, body) of each fenced block, in order; the tag is the block's first line (a comment)."""
    out = []
    for kind, body in BLOCK.findall(GUIDE.read_text()):
        first, _, rest = body.partition("\n")
        out.append((kind, first.lstrip("# ").strip(), rest))
    return out


def _training_files(folder: dict, n: int = 1200):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 4))
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - 1.2 * X[:, 2])))).astype(int)
    ids = [f"C{i}" for i in range(n)]
    pd.DataFrame({"cid": ids, "income": X[:, 0], "debt": X[:, 1], "default": y}).to_csv(
        folder["bank"] / "train.csv", index=False)
    pd.DataFrame({"cid": ids, "returns": X[:, 2], "cod": X[:, 3]}).to_parquet(folder["market"] / "train.parquet")


def _wait_port(lab, port: int, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        probe = lab.popen([sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.wait(10) == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} within {timeout} s")


def test_the_deployment_guide_runs_as_written(small_world, tmp_path, make_lab):
    lab = make_lab("wan")
    root = tmp_path / "srv" / "tandem"
    folder = {party: root / party for party in ("bank", "market")}
    for party, path in folder.items():
        path.mkdir(parents=True)
        shutil.copy(small_world / f"{party}.duckdb", path / f"{party}.duckdb")
    _training_files(folder)
    ports = {"bank": 20001 + np.random.default_rng().integers(0, 9000), "market": 0}
    ports["market"] = ports["bank"] + 1

    def local(text: str) -> str:
        text = text.replace("/srv/tandem", str(root)).replace("/opt/tandem/bin/tandem", f"{sys.executable} -m tandem.cli")
        for party, default in (("bank", 7001), ("market", 7002)):
            text = text.replace(f"0.0.0.0:{default}", f"127.0.0.1:{ports[party]}")
            text = text.replace(f"{party}.example.net:{default}", f"127.0.0.1:{ports[party]}")
            text = text.replace(f"--dport {default}", f"--dport {ports[party]}")
        return text

    prelude = f'tandem() {{ "{sys.executable}" -m tandem.cli "$@"; }}\n'
    service, outputs, wired = None, [], False
    try:
        for kind, tag, body in _blocks():
            body = local(body)
            if kind == "toml":
                (folder[tag.split(".")[0]] / tag).write_text(body)
                continue
            if kind == "ini":
                command = next(line.split("=", 1)[1] for line in body.splitlines() if line.startswith("ExecStart="))
                workdir = next(line.split("=", 1)[1] for line in body.splitlines() if line.startswith("WorkingDirectory="))
                service = lab.popen(shlex.split(command), cwd=workdir, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
                _wait_port(lab, ports["market"])
                continue
            party = tag.split(":")[0]
            if not wired and all((folder[p] / f"{p}.toml").exists() for p in folder):
                lab.wire({p: folder[p] / f"{p}.toml" for p in folder})   # the partner's address -> a wan proxy
                wired = True
            other = "market" if party == "bank" else "bank"
            for exported in folder[other].glob("*-ca.pem"):                 # what the partner sent us
                (folder[party] / "incoming").mkdir(exist_ok=True)
                shutil.copy(exported, folder[party] / "incoming" / exported.name)
            proc = subprocess.run([*lab.prefix, "bash", "-e", "-c", prelude + body], cwd=folder[party],
                                  capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
            assert proc.returncode == 0, f"block '{tag}' failed:\n{body}\n{proc.stdout}\n{proc.stderr}"
            outputs.append((tag, body, proc.stdout))
        assert service is not None and service.poll() is None, service.stderr.read() if service else "no service"
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
    ran = "\n".join(body for _, body, _ in outputs)
    for command in ("certs init", "certs export", "certs trust", "doctor", "--count-only", "--train", "audit"):
        assert command in ran                                   # the guide still shows each step
    doctor = next(out for _, body, out in outputs if "doctor" in body)
    assert "market: bandwidth" in doctor and " fail " not in doctor
    for party in folder:                                        # the link wrote each side's table
        con = duckdb.connect(str(folder[party] / f"{party}.duckdb"), read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM link_customers").fetchone()[0] > 0
        finally:
            con.close()
    audit = next(out for _, body, out in outputs if "tandem audit" in body)
    assert "entries" in audit and "boost/5" in audit, audit                    # the newest lines: the training
    from tandem.audit import read_audit

    entries, torn = read_audit(folder["market"] / "state" / "audit.jsonl")
    assert torn == 0 and {"doctor", "psi/2", "boost/5"} <= {e["protocol"] for e in entries}

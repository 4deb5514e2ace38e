"""Both decision services on one machine (the demo, the tests and the benchmark): train the models
on a linked world, write each node's ``[decide]`` config, start ``tandem serve`` for both.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tandem.demo import TRAIN_ARGS as TRAIN  # one set of training settings for the demo and tests
from tandem.errors import TandemError
from tandem.parties import ENTITIES, PARTIES, other
from tandem.transport.ports import free_port


def train_models(world: Path, entities=ENTITIES, args: dict | None = None) -> dict[str, dict]:
    """Export each party's rows of a linked world and train a federated model per entity.

    Returns entity -> the label holder's training result (with ``model_path``) and the
    other party's under ``"market"``."""
    from tandem.demo import export_training_files
    from tandem.learn.local import train_local
    from tandem.learn.options import TrainingOptions

    out = {}
    for entity in entities:
        files = export_training_files(world, entity)
        results = train_local(
            files,
            "link_id",
            "bank",
            "default",
            TrainingOptions.from_args(args or TRAIN),
            world / "train" / f"{entity}-nodes",
        )
        out[entity] = {**results["bank"].to_json(), "market": results["market"].to_json()}
    return out


def write_decide_configs(
    world: Path, models: dict[str, dict], refresh_s: float = 0, extra: dict[str, float] | None = None
) -> tuple[dict[str, Path], str]:
    """``world/nodes/decide-{bank,market}.toml`` beside the link configs (same certificates), and a
    fresh API key for clients (its SHA-256 in ``api-keys.txt``); ``extra``: more ``[decide]`` keys
    (numbers, e.g. the bank's guards). Returns the paths and the key."""
    from tandem.decide.state import key_hash

    nodes = world / "nodes"
    key = secrets.token_urlsafe(24)
    (nodes / "api-keys.txt").write_text(key_hash(key) + "\n")
    ports = {name: (free_port(), free_port()) for name in PARTIES}
    paths = {}
    for name in PARTIES:
        base = (nodes / f"{name}.toml").read_text()
        peer = other(name)
        lines = [
            base.rstrip(),
            "",
            "[decide]",
            f'listen = "127.0.0.1:{ports[name][0]}"',
            f'api_listen = "127.0.0.1:{ports[name][1]}"',
            'api_keys = "api-keys.txt"',
            f"refresh_s = {refresh_s}",
            f'peer = "{peer}"',
            *(f"{k} = {v!r}" for k, v in (extra or {}).items()),
        ]
        for entity, result in models.items():
            path = result["model_path"] if name == "bank" else result["market"]["model_path"]
            lines.append(f'{entity}_model = "{Path(path).resolve()}"')
        text = "\n".join(lines) + "\n"
        text = text.replace(f"[peers.{peer}]\n", f'[peers.{peer}]\ndecide = "127.0.0.1:{ports[peer][0]}"\n')
        paths[name] = nodes / f"decide-{name}.toml"
        paths[name].write_text(text)
    return paths, key


def copy_store(source: str | Path, target: str) -> None:
    """Every table of the store ``source`` written into the store ``target`` (a party moving its DuckDB
    file into PostgreSQL, so that replicas of its service share it)."""
    from tandem.store import open_store

    src, dst = open_store(source, read_only=True), open_store(target, create=True)
    try:
        for name in src.table_names():
            dst.write_table(name, src.iter_batches(name))
    finally:
        src.close()
        dst.close()


def replica_configs(config: Path, count: int, store: str | None = None, peers: list[str] | None = None) -> list[Path]:
    """``count`` replicas of the ``[decide]`` config ``config`` beside it (``decide-bank-r0.toml``, ...): each
    its own listeners and state folder; ``store``: one store for all of them (a shared PostgreSQL ledger);
    ``peers``: replica i's peer decide address (a gateway replica i in front of bank replica i)."""
    import tomllib

    raw = tomllib.loads(config.read_text())
    peer = raw["decide"].get("peer")
    out = []
    for i in range(count):
        name = f"{config.stem}-r{i}"
        keys = {
            ("node", "state_dir"): f"state-{name}",
            ("decide", "listen"): f"127.0.0.1:{free_port()}",
            ("decide", "api_listen"): f"127.0.0.1:{free_port()}",
        }
        if store is not None:
            keys["node", "store"] = store
        if peers is not None and peer:
            keys[f"peers.{peer}", "decide"] = peers[i]
        path = config.with_name(name + ".toml")
        path.write_text(_with_keys(config.read_text(), keys))
        out.append(path)
    return out


def _with_keys(text: str, keys: dict[tuple[str, str], str]) -> str:
    """TOML ``text`` with the string values of ``(section, key)`` replaced (each key present already)."""
    section, lines = "", []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped.strip("[]")
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        lines.append(f"{key} = {json.dumps(keys[section, key])}" if (section, key) in keys else line)
    return "\n".join(lines) + "\n"


class Service:
    """A ``tandem serve`` child process; ``api`` is its API-key listener's base URL; ``prefix``: a command
    it runs under (the network lab's ``ip netns exec NS``)."""

    def __init__(self, config: Path, prefix: Sequence[str] = ()):
        import tomllib

        self.config = config
        self.api = "https://" + tomllib.loads(config.read_text())["decide"]["api_listen"]
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tandem.cli", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready = threading.Event()
        self._stderr: list[str] = []
        out, err = self.proc.stdout, self.proc.stderr
        if out is None or err is None:  # never: both are pipes
            raise RuntimeError("tandem serve started without its output pipes")
        threading.Thread(target=lambda: self._read(out), daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(err), daemon=True).start()

    def _read(self, out: IO[str]) -> None:
        for line in out:
            try:
                if json.loads(line).get("event") == "ready":
                    self.ready.set()
            except json.JSONDecodeError:
                continue
        self.ready.set()

    def wait_ready(self, timeout: float = 120) -> Service:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            lines = [line.strip() for line in self._stderr if line.strip()]
            raise TandemError(f"{self.config.name}: the service did not start ({lines[-1] if lines else 'no output'})")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def burst(
    world: Path, api: str, key: str, checkouts: int = 400, sellers: int = 60, workers: int = 8
) -> dict[str, dict]:
    """Send checkouts (random shared users, amounts 1k-60k RUB) and seller applications to the
    marketplace gateway from ``workers`` threads; return decisions, PD bands (the answers carry no
    PD), latency percentiles."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import duckdb
    import numpy as np

    from tandem.transport.http_client import ApiClient

    con = duckdb.connect(str(world / "market.duckdb"), read_only=True)
    try:
        users = [r[0] for r in con.execute("SELECT local_id FROM link_customers").fetchall()]
        shops = [r[0] for r in con.execute("SELECT local_id FROM link_sellers").fetchall()]
    finally:
        con.close()
    rng = np.random.default_rng(1)
    run = secrets.token_hex(4)
    jobs = [
        (
            "/v1/checkout",
            {
                "request_id": f"demo-{run}-{i:06d}",
                "user_id": int(rng.choice(users)),
                "order": {
                    "amount": float(round(rng.uniform(1000, 60000), 2)),
                    "currency": "RUB",
                    "categories": ["electronics"],
                },
            },
        )
        for i in range(checkouts)
    ]
    jobs += [
        ("/v1/sellers/credit-line", {"request_id": f"demo-{run}-s{i:05d}", "seller_id": int(rng.choice(shops))})
        for i in range(sellers if shops else 0)
    ]
    local = threading.local()

    def send(job):
        if not hasattr(local, "client"):
            local.client = ApiClient(key)
        started = time.perf_counter()
        status, answer = local.client.post(api + job[0], job[1])
        return job[0], answer if status == 200 else None, time.perf_counter() - started

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(send, jobs))
    out = {}
    for path, kind in (("/v1/checkout", "checkout"), ("/v1/sellers/credit-line", "seller")):
        mine = [r for r in results if r[0] == path]
        ok = [r[1] for r in mine if r[1] is not None]
        if not mine:
            continue
        bands = sorted({d["pd_band"] for d in ok})
        out[kind] = {
            "requests": len(mine),
            "errors": len(mine) - len(ok),
            "decisions": {d: sum(r["decision"] == d for r in ok) for d in ("approve", "refer", "decline")},
            "pd_bands": {b: sum(d["pd_band"] == b for d in ok) for b in bands},
            "latency_ms": [float(q) * 1000 for q in np.quantile([r[2] for r in mine], [0.5, 0.95, 0.99])],
        }
    return out

"""``tandem link --world DIR``: a bank node and a marketplace node as separate processes on loopback.

Development certificates are made on the fly (a CA and one certificate per node, in
``DIR/nodes/certs``); each node gets a TOML config in ``DIR/nodes``; the marketplace node
serves one session, the bank node initiates it; both write their link tables.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from tandem.crypto.tls import make_ca, make_node_cert
from tandem.errors import InputError, TandemError
from tandem.link.result import LinkResult

NODES = ("bank", "market")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_configs(world: Path, timeout_s: float = 60.0) -> dict[str, Path]:
    """Certificates and one config per node under ``world/nodes``; returns node -> config path."""
    for party in NODES:
        if not (world / f"{party}.duckdb").is_file():
            raise InputError(f"{world}: no {party}.duckdb here (make one with `tandem world`)")
    return node_configs(world / "nodes", {p: f"../{p}.duckdb" for p in NODES}, {p: p for p in NODES}, timeout_s)


def node_configs(folder: Path, stores: dict[str, str], presets: dict[str, str], timeout_s: float) -> dict[str, Path]:
    """Development certificates and a config per node (each node lists all others as peers)."""
    certs = folder / "certs"
    try:
        certs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write node configs ({exc.strerror})") from None
    if not (certs / "ca.pem").exists() or not (certs / "ca.key").exists():
        make_ca(certs)
    for party in stores:
        if not (certs / f"{party}.pem").exists():
            make_node_cert(certs, party, certs / "ca.pem", certs / "ca.key")
    ports = {p: free_port() for p in stores}
    # every node gets a worker per core: while one node waits for its peer (start-up, the last chunks,
    # matching), the peer's workers take the idle cores instead of one core idling
    workers = os.cpu_count() or 2
    paths = {}
    for party, store in stores.items():
        lines = ["[node]", f'name = "{party}"', f'preset = "{presets[party]}"', f'listen = "127.0.0.1:{ports[party]}"',
                 f'store = "{store}"', f'state_dir = "state-{party}"', f"timeout_s = {timeout_s}",
                 f"workers = {workers}", "",
                 "[tls]", 'ca = "certs/ca.pem"', f'cert = "certs/{party}.pem"', f'key = "certs/{party}.key"', ""]
        for other in stores:
            if other != party:
                lines += [f"[peers.{other}]", f'address = "127.0.0.1:{ports[other]}"', ""]
        paths[party] = folder / f"{party}.toml"
        paths[party].write_text("\n".join(lines))
    return paths


class NodeProcess:
    """A ``tandem node`` child process whose JSON events are read on a thread."""

    def __init__(self, name: str, args: list[str], on_event: Callable[[str, dict], None]):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "tandem.cli", "node", *args, "--events"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.ready = threading.Event()
        self._on_event = on_event
        self._stderr: list[str] = []
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.events.append(event)
            if event.get("event") == "ready":
                self.ready.set()
            self._on_event(self.name, event)
        self.ready.set()

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for t in self._threads:
            t.join(timeout=2)
        return code

    def error(self) -> str:
        for e in self.events:
            if e.get("event") == "error":
                return e["message"]
        lines = [l.strip() for l in self._stderr if l.strip()]
        return lines[-1].removeprefix("error: ") if lines else f"exited with status {self.proc.returncode}"

    def result(self) -> dict | None:
        return next((e for e in self.events if e.get("event") == "result"), None)

    def result_event(self) -> dict:
        """The result event of a node that exited 0 (which always sends one)."""
        event = self.result()
        if event is None:
            raise TandemError(f"{self.name} node exited without a result")
        return event


def failure(name: str, proc: "NodeProcess", other_name: str, other: "NodeProcess") -> str:
    """One line for a failed run: the initiator's error, and the other node's if it failed too
    (its reason is often the real one: the initiator then only saw its messages refused)."""
    try:
        other.proc.wait(timeout=5)          # it has usually stopped with its own error by now
    except Exception:  # noqa: BLE001 - still running: it waits for a session that will not come
        pass
    if other.proc.poll() is None:
        other.proc.kill()
        return f"{name} node: {proc.error()}"
    other.wait(timeout=5)
    if other.proc.returncode != 0:
        return f"{name} node: {proc.error()} ({other_name} node: {other.error()})"
    return f"{name} node: {proc.error()}"


def link_world(world: Path, *, entities: list[str], count_only: bool, timeout_s: float = 60.0,
               incremental: bool = False,
               on_event: Callable[[str, dict], None] = lambda n, e: None) -> dict[str, LinkResult]:
    """Run both nodes; return each node's result. Raise ``TandemError`` with the failing node's message."""
    configs = write_configs(world, timeout_s)
    market = NodeProcess("market", ["--config", str(configs["market"]), "--once"], on_event)
    try:
        if not market.ready.wait(60) or market.proc.poll() is not None:
            raise TandemError(f"market node did not start: {market.error()}")
        args = ["--config", str(configs["bank"]), "--link", "market", "--entities", ",".join(entities)]
        args += ["--count-only"] if count_only else []
        args += ["--incremental"] if incremental else []
        bank = NodeProcess("bank", args, on_event)
        if bank.wait(timeout=24 * 3600) != 0:
            raise TandemError(failure("bank", bank, "market", market))
        if market.wait(timeout=timeout_s + 30) != 0:
            raise TandemError(f"market node: {market.error()}")
        return {name: LinkResult.from_json(node.result_event()) for name, node in (("bank", bank), ("market", market))}
    finally:
        if market.proc.poll() is None:
            market.proc.kill()

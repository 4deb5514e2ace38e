"""Both parties' nodes on one machine: the development cluster every stage's ``--world`` run,
the demo, the benchmarks and the tests share.

Development certificates are made on the fly (a CA and one certificate per node, in
``FOLDER/certs``); each node gets a TOML config in ``FOLDER``; ``run_pair`` starts the serving
nodes as child processes, then the initiating one, and turns a failure into one line naming
the node at fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from tandem.crypto import pki
from tandem.errors import InputError, TandemError
from tandem.parties import PARTIES
from tandem.transport.ports import free_port

OnEvent = Callable[[str, dict], object]  # (node name, one of its JSON events)


def no_events(name: str, event: dict) -> None:
    """The default ``on_event``: ignore."""


def world_as_of(world: Path) -> date | None:
    """The day a world folder's data is taken at (``as_of`` in its ``summary.json``); ``None`` if unrecorded."""
    try:
        value = json.loads((world / "summary.json").read_text()).get("as_of")
    except (OSError, ValueError):
        return None
    return date.fromisoformat(value) if isinstance(value, str) else None


def write_configs(world: Path, timeout_s: float = 60.0) -> dict[str, Path]:
    """Certificates and one config per party under ``world/nodes`` (stores ``world/{party}.duckdb``,
    ``as_of`` the world's); returns party -> config path."""
    for party in PARTIES:
        if not (world / f"{party}.duckdb").is_file():
            raise InputError(f"{world}: no {party}.duckdb here (make one with `tandem world`)")
    return node_configs(
        world / "nodes",
        {p: f"../{p}.duckdb" for p in PARTIES},
        {p: p for p in PARTIES},
        timeout_s,
        as_of=world_as_of(world),
    )


def node_configs(
    folder: Path, stores: dict[str, str], presets: dict[str, str], timeout_s: float, as_of: date | None = None
) -> dict[str, Path]:
    """Development certificates and a config per node (each node lists all others as peers).
    ``stores``/``presets``: node -> store path (relative to ``folder``) / preset; ``as_of``: the
    nodes' ``[node] as_of`` (``None``: left out, so today).

    Each node is its own organisation, as in a deployment: ``certs/NODE/`` holds its own CA, its
    certificate and (``peers/``) the CA certificates of the others, each trusted for that peer only."""
    certs = folder / "certs"
    try:
        certs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write node configs ({exc.strerror})") from None
    for party in stores:
        if not (certs / party / f"{party}.pem").exists():
            pki.init(certs / party, f"{party.capitalize()} (development)", party)
    for party in stores:
        for other in stores:
            if other != party and not pki.peer_ca(certs / party, other).exists():
                pki.trust(certs / party, other, certs / other / "ca.pem")
    ports = {p: free_port() for p in stores}
    # every node gets a worker per core: while one node waits for its peer (start-up, the last chunks,
    # matching), the peer's workers take the idle cores instead of one core idling
    workers = os.cpu_count() or 2
    paths = {}
    for party, store in stores.items():
        lines = [
            "[node]",
            f'name = "{party}"',
            f'preset = "{presets[party]}"',
            f'listen = "127.0.0.1:{ports[party]}"',
            f'store = "{store}"',
            f'state_dir = "state-{party}"',
            f"timeout_s = {timeout_s}",
            f"workers = {workers}",
        ]
        lines += [f'as_of = "{as_of.isoformat()}"'] if as_of is not None else []
        lines += ["", "[tls]", f'cert = "certs/{party}/{party}.pem"', f'key = "certs/{party}/{party}.key"', ""]
        for other in stores:
            if other != party:
                address, ca = f"127.0.0.1:{ports[other]}", f"certs/{party}/peers/{other}.pem"
                lines += [f"[peers.{other}]", f'address = "{address}"', f'ca = "{ca}"', ""]
        paths[party] = folder / f"{party}.toml"
        paths[party].write_text("\n".join(lines))
    return paths


class NodeProcess:
    """A ``tandem node`` child process whose JSON events are read on a thread."""

    def __init__(self, name: str, args: list[str], on_event: OnEvent = no_events, prefix: Sequence[str] = ()):
        """``prefix``: a command the node runs under (the network lab's `ip netns exec NS`)."""
        self.name = name
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tandem.cli", "node", *args, "--events"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict] = []
        self.ready = threading.Event()
        self._on_event = on_event
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr or ()), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
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

    def stderr(self) -> str:
        """What the node wrote to stderr so far."""
        return "".join(self._stderr)

    def error(self) -> str:
        for e in self.events:
            if e.get("event") == "error":
                return str(e["message"])
        # multiprocessing's resource tracker warns at the exit of a node that died: the line before is the cause
        lines = [line.strip() for line in self._stderr if line.strip() and "resource_tracker" not in line]
        return lines[-1].removeprefix("error: ") if lines else f"exited with status {self.proc.returncode}"

    def result(self) -> dict:
        """The node's (first) result event; ``TandemError`` if it finished without one."""
        found = self.results()
        if not found:
            raise TandemError(f"{self.name} node: finished without a result ({self.error()})")
        return found[0]

    def results(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "result"]


def failure(name: str, proc: NodeProcess, other_name: str, other: NodeProcess) -> str:
    """One line for a failed run: the initiator's error, and the other node's if it failed too
    (its reason is often the real one: the initiator then only saw its messages refused)."""
    try:
        other.proc.wait(timeout=5)  # it has usually stopped with its own error by now
    except Exception:  # noqa: BLE001 - still running: it waits for a session that will not come
        pass
    if other.proc.poll() is None:
        other.proc.kill()
        return f"{name} node: {proc.error()}"
    other.wait(timeout=5)
    if other.proc.returncode != 0:
        return f"{name} node: {proc.error()} ({other_name} node: {other.error()})"
    return f"{name} node: {proc.error()}"


@contextmanager
def serving(
    configs: dict[str, Path], args: dict[str, list[str]], on_event: OnEvent = no_events
) -> Iterator[dict[str, NodeProcess]]:
    """Start a serving node per entry of ``args`` (node -> arguments after ``--config``), wait until
    each is ready; on exit kill those still running."""
    procs: dict[str, NodeProcess] = {}
    try:
        for name, extra in args.items():
            procs[name] = NodeProcess(name, ["--config", str(configs[name]), *extra], on_event)
        for name, proc in procs.items():
            if not proc.ready.wait(60) or proc.proc.poll() is not None:
                raise TandemError(f"{name} node did not start: {proc.error()}")
        yield procs
    finally:
        for proc in procs.values():
            if proc.proc.poll() is None:
                proc.proc.kill()


def run_pair(
    configs: dict[str, Path],
    initiator: str,
    initiator_args: list[str],
    servers: dict[str, list[str]],
    timeout_s: float,
    on_event: OnEvent = no_events,
) -> dict[str, NodeProcess]:
    """Serve ``servers`` (node -> its arguments), run ``initiator`` with ``initiator_args`` to its end,
    then let the servers finish; return every node's finished process (events, results).
    Raise ``TandemError`` with the failing node's message (and its peer's, when that failed too)."""
    with serving(configs, servers, on_event) as procs:
        active = NodeProcess(initiator, ["--config", str(configs[initiator]), *initiator_args], on_event)
        if active.wait(timeout=24 * 3600) != 0:
            first = next((p for p, s in procs.items() if s.proc.poll() not in (None, 0)), next(iter(procs)))
            raise TandemError(failure(initiator, active, first, procs[first]))
        for name, proc in procs.items():
            if proc.wait(timeout=timeout_s + 30) != 0:
                raise TandemError(f"{name} node: {proc.error()}")
        return {initiator: active, **procs}

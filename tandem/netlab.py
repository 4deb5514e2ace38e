"""A network lab for tests and benchmarks (dev tooling, like ``devcluster``): both parties' nodes in a
network namespace of their own, over 127.0.0.1, with a WAN's bandwidth, latency, loss and partitions.

    with Lab("wan", loss=0.01) as lab:
        configs = write_configs(world, timeout_s=10)
        lab.wire(configs)                       # a delay proxy in front of each node; peers point at it
        market = lab.node("market", ["--config", str(configs["market"]), "--once"])
        ...
        with lab.partition(20):                 # or lab.partition(20) alone: healed by a timer
            ...

- **Namespace**: ``ip netns add tandem-lab-<random>`` with only ``lo`` (up); every process of the lab
  runs inside it (``ip netns exec``), so no packet leaves it and no address outside 127.0.0.0/8 is used.
  ``close`` kills what still runs in it and deletes it, also when the test failed.
- **Latency and loss**: ``tandem.netlab_proxy`` in front of each node (listening on a port of its own,
  forwarding to the node's ``listen``) delays every chunk by the profile's one-way delay in each
  direction; ``loss`` is the chance per packet (1448 bytes) that its chunk is held a further 200 ms, as a
  TCP retransmission would.
  This kernel has no ``netem``, hence the proxy.
- **Bandwidth**: ``tc`` on the namespace's ``lo``: an ``htb`` root used only to classify (``prio`` is
  not in this kernel either), with ``u32`` port filters sending each direction of each proxied
  connection (to the proxy: ``dport``; from it: ``sport``) to a class of its own with a ``tbf`` leaf at
  the profile's rate. So each direction has its own bandwidth; the proxy-to-node hop is not shaped.
- **Partitions**: ``partition(seconds)`` drops every packet to and from the proxied ports (iptables
  ``INPUT`` DROP, so senders see silence, not an error) for that long.

The shaping sits on the sender's side of the proxy and the proxy acknowledges at once, so TCP below
gRPC does not see the round trip; gRPC's own flow control (HTTP/2 windows, its pings) does. The proxy
(Python) adds ~1 ms each way of its own: measured round trips are ~3 ms (lan), ~21.5 ms (wan) and
~101 ms (slow); measured rates 0.92-0.98 Gbit, 98 Mbit and 10.0 Mbit/s each way.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tandem.devcluster import NodeProcess, OnEvent, no_events
from tandem.errors import InputError, TandemError

NS_PREFIX = "tandem-lab-"


@dataclass(frozen=True)
class Profile:
    """A link: ``mbit`` bandwidth per direction (Mbit/s), ``delay_s`` one-way latency (seconds)."""

    name: str
    mbit: float
    delay_s: float


PROFILES = {p.name: p for p in (Profile("lan", 1000, 0.00025), Profile("wan", 100, 0.010), Profile("slow", 10, 0.050))}


class LabUnavailable(TandemError):
    """A lab cannot be made on this machine (no root, no ``ip netns``, no ``tc`` or no iptables)."""


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise InputError(f"unknown network profile '{name}'; use {', '.join(PROFILES)}")
    return PROFILES[name]


def _run(argv: Sequence[str], what: str) -> str:
    """Run a lab command; ``LabUnavailable`` naming ``what`` failed, with the command's last error line."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabUnavailable(f"{what}: {exc}") from None
    if proc.returncode != 0:
        lines = [x for x in (proc.stderr or proc.stdout).strip().splitlines() if x.strip()]
        raise LabUnavailable(f"{what}: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return proc.stdout


def _shape_burst_limit(mbit: float) -> tuple[int, int]:
    """A tbf's bucket and queue (bytes) for ``mbit``: the bucket holds two 64 KiB (GSO) packets or 1 ms
    of the rate, the queue 250 ms of it (at least 1 MiB, so TCP's small queues never overflow it)."""
    rate = mbit * 1e6 / 8
    return max(2 * 65536, int(rate * 0.001)), max(1 << 20, int(rate * 0.25))


def listen_port(config: Path, section: str = "node") -> int:
    """The port of a node config's ``[SECTION] listen`` (``127.0.0.1:PORT``)."""
    try:
        listen = tomllib.loads(config.read_text())[section]["listen"]
        host, port = listen.rsplit(":", 1)
        if host != "127.0.0.1":
            raise ValueError(host)
        return int(port)
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        where = f"{config}: [{section}] listen"
        raise InputError(f"{where} is not 127.0.0.1:PORT (the lab runs on loopback only)") from None


def point_peers(config: Path, addresses: dict[str, str], key: str = "address") -> None:
    """Rewrite the ``KEY = ...`` line (``address``: the node's; ``decide``: its decision service's) of each
    ``[peers.NAME]`` of ``config`` named in ``addresses``; every other line is kept as it is."""
    section, out = "", []
    for line in config.read_text().splitlines():
        head = re.fullmatch(r"\s*\[([^\]]+)\]\s*", line)
        if head:
            section = head.group(1).strip()
        peer = section.removeprefix("peers.") if section.startswith("peers.") else None
        if peer in addresses and re.match(rf"\s*{key}\s*=", line):
            line = f'{key} = "{addresses[peer]}"'
        out.append(line)
    config.write_text("\n".join(out) + "\n")


class Lab:
    """One network namespace with the ``profile``'s link (a name of ``PROFILES`` or a ``Profile``) and
    ``loss`` (0..1, per packet of the proxied chunks); see the module docstring. Use as a context manager."""

    def __init__(self, link: str | Profile = "wan", loss: float = 0.0, seed: int = 0):
        if not 0 <= loss <= 1:
            raise InputError(f"loss must be from 0 to 1, not {loss}")
        self.profile = profile(link) if isinstance(link, str) else link
        self.loss, self.seed = loss, seed
        self.ns = NS_PREFIX + secrets.token_hex(4)
        self.prefix = ["ip", "netns", "exec", self.ns]
        self.proxied: dict[int, int] = {}  # proxy port -> the port it forwards to
        self._proxies: list[subprocess.Popen[str]] = []
        self._losses = 0
        self.proxy_errors: deque[str] = deque(maxlen=50)  # the proxies' last stderr lines
        self._classes = 0
        self._iptables = ""
        self._partitions: list[Partition] = []
        self._lock = threading.Lock()
        self._made = False
        self._reserved: set[int] = set()  # ports of the lab's nodes (not to be given to a proxy)

    # --- making and removing the namespace -----------------------------------------------------

    def __enter__(self) -> Lab:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """Make the namespace and the shaping root; ``LabUnavailable`` (one line) where that cannot be done."""
        if shutil.which("ip") is None:
            raise LabUnavailable("cannot make a network namespace: no `ip` command (iproute2)")
        _run(["ip", "netns", "add", self.ns], "cannot make a network namespace (ip netns add; needs root)")
        self._made = True
        try:
            _run(["ip", "-n", self.ns, "link", "set", "lo", "up"], f"{self.ns}: cannot bring lo up")
            self._tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0")
            self._iptables = self._find_iptables()
        except BaseException:
            self.close()
            raise

    def _tc(self, *args: str) -> None:
        _run([*self.prefix, "tc", *args], f"{self.ns}: tc {' '.join(args[:2])} failed")

    def _find_iptables(self) -> str:
        for name in ("iptables", "iptables-legacy"):
            if shutil.which(name):
                try:
                    _run([*self.prefix, name, "-w", "-L", "INPUT", "-n"], name)
                    return name
                except LabUnavailable:
                    continue
        raise LabUnavailable(
            f"{self.ns}: no working iptables in the namespace (install it: bash scripts/netlab.sh install)"
        )

    def pids(self) -> set[int]:
        """The processes now running inside the namespace."""
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True, timeout=30).stdout
        return {int(x) for x in out.split()}

    def close(self) -> set[int]:
        """Heal partitions, stop the proxies, kill whatever else still runs in the namespace and delete
        it; return the pids of those others (processes a caller left behind; empty when all ended)."""
        for part in list(self._partitions):
            part.heal()
        for proc in self._proxies:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._proxies.clear()
        stray: set[int] = set()
        if self._made:
            stray = self.pids()
            for pid in stray:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
            self._made = False
        return stray

    # --- running things inside ---------------------------------------------------------------------

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside the namespace (``subprocess.Popen`` arguments pass through)."""
        return subprocess.Popen([*self.prefix, *argv], **kwargs)

    def node(self, name: str, args: list[str], on_event: OnEvent = no_events) -> NodeProcess:
        """A ``tandem node ARGS --events`` inside the namespace."""
        return NodeProcess(name, args, on_event, prefix=self.prefix)

    def proxy(self, target: int, port: int | None = None) -> int:
        """Start a delay proxy to ``127.0.0.1:target`` and shape both its directions; return its port."""
        if port is None:
            port = self._free_port()
        args = {"--listen": port, "--to": target, "--delay": self.profile.delay_s, "--loss": self.loss}
        args["--seed"] = self.seed + len(self._proxies)
        proc = self.popen(
            [sys.executable, "-m", "tandem.netlab_proxy", *(str(x) for kv in args.items() for x in kv)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._proxies.append(proc)
        first = proc.stdout.readline() if proc.stdout else ""
        if first.strip() != "listening":
            proc.kill()
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise LabUnavailable(f"{self.ns}: the delay proxy on port {port} did not start: {err[-1] if err else '?'}")
        threading.Thread(target=self._count_losses, args=(proc,), daemon=True).start()
        # its stderr is read to the end, so that a chatty proxy never blocks on a full pipe
        threading.Thread(target=lambda: self.proxy_errors.extend(proc.stderr or ()), daemon=True).start()
        self.proxied[port] = target
        for match in ("dport", "sport"):
            self._shape(match, port)
        return port

    def _count_losses(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout or ():
            if line.startswith("lost"):
                with self._lock:
                    self._losses += 1

    def proxy_pids(self) -> set[int]:
        """The pids of the lab's delay proxies."""
        return {p.pid for p in self._proxies}

    def losses(self) -> int:
        """Chunks the proxies have held as lost so far."""
        with self._lock:
            return self._losses

    def _free_port(self) -> int:
        """A port for a proxy: the namespace is empty, so any port nothing of the lab uses (below Linux's
        ephemeral range, so no outgoing connection holds it)."""
        used = set(self.proxied) | set(self.proxied.values()) | self._reserved
        while True:
            port = 20000 + secrets.randbelow(12000)
            if port not in used:
                return port

    def _shape(self, match: str, port: int) -> None:
        self._classes += 1
        minor = f"{self._classes + 9:x}"
        burst, limit = _shape_burst_limit(self.profile.mbit)
        self._tc("class", "add", "dev", "lo", "parent", "1:", "classid", f"1:{minor}", "htb", "rate", "40gbit")
        self._tc("qdisc", "add", "dev", "lo", "parent", f"1:{minor}", "handle", f"{minor}:", "tbf",
                 "rate", f"{self.profile.mbit:g}mbit", "burst", str(burst), "limit", str(limit))  # fmt: skip
        self._tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                 "match", "ip", match, str(port), "0xffff", "flowid", f"1:{minor}")  # fmt: skip

    def wire(self, configs: dict[str, Path], section: str = "node") -> dict[str, int]:
        """Put a delay proxy in front of each node of ``configs`` (node -> config path) and point every
        other node's ``[peers.NODE] address`` at it; return node -> its proxy's port. ``section="decide"``:
        the decision services' peer listeners instead (``[decide] listen``, ``[peers.NODE] decide``)."""
        key = "address" if section == "node" else section
        listens = {name: listen_port(path, section) for name, path in configs.items()}
        self._reserved |= set(listens.values())
        fronts = {name: self.proxy(port) for name, port in listens.items()}
        for name, path in configs.items():
            point_peers(path, {other: f"127.0.0.1:{port}" for other, port in fronts.items() if other != name}, key)
        return fronts

    # --- partitions --------------------------------------------------------------------------------

    def partition(self, seconds: float) -> Partition:
        """Cut every proxied connection, both ways, for ``seconds`` (healed by a timer, by ``heal``, on
        leaving a ``with`` block or on ``close``)."""
        part = Partition(self, seconds)
        self._partitions.append(part)
        return part

    def _rules(self) -> list[list[str]]:
        ports = [(m, p) for p in self.proxied for m in ("dport", "sport")]
        return [["INPUT", "-p", "tcp", f"--{m}", str(p), "-j", "DROP"] for m, p in ports]

    def _iptables_all(self, op: str) -> None:
        for rule in self._rules():
            _run([*self.prefix, self._iptables, "-w", op, *rule], f"{self.ns}: {self._iptables} {op} failed")


class Partition:
    """A network cut made by ``Lab.partition``: ``started``/``ended`` (``time.monotonic``), ``wait``, ``heal``."""

    def __init__(self, lab: Lab, seconds: float):
        self._lab, self._healed, self._lock = lab, threading.Event(), threading.Lock()
        lab._iptables_all("-I")
        self.started = time.monotonic()
        self.ended: float | None = None
        self._timer = threading.Timer(seconds, self.heal)
        self._timer.daemon = True
        self._timer.start()

    def heal(self) -> None:
        with self._lock:
            if self._healed.is_set():
                return
            self._timer.cancel()
            try:
                self._lab._iptables_all("-D")
            finally:
                self.ended = time.monotonic()
                self._healed.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until healed; ``True`` if it is."""
        return self._healed.wait(timeout)

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.heal()

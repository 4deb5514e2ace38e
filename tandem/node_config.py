"""A node's config file (TOML): what it is, where its store and certificates are, its peers and the
policies it holds its peers to (``[link.accept]``, ``[insight]``, ``[limits]``, ``[train]``)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tandem.crypto.backends import DEFAULT_BACKEND, check_backend
from tandem.errors import InputError
from tandem.insight.budget import InsightPolicy
from tandem.learn.buckets import MIN_BIN_ROWS
from tandem.limits import Limits
from tandem.link.accept import AcceptPolicy
from tandem.parties import ENTITIES, PRESETS, EntitySource
from tandem.protocols.psi import DEFAULT_CHUNK
from tandem.transport.base import KEEPALIVE_S
from tandem.transport.trust import TlsFiles


@dataclass(frozen=True)
class NodeConfig:
    """A node's settings; paths are resolved against the config file's folder."""

    name: str
    listen: str
    store: str
    state_dir: Path
    tls: TlsFiles
    peers: dict[str, str]  # name -> address
    sources: dict[str, EntitySource]  # entity -> where its records are
    keys: dict[str, list[str]]  # entity -> key priority
    timeout_s: float = 60.0
    workers: int | None = None
    path: Path = field(default=Path("."))
    preset: str = "bank"
    insight: InsightPolicy = field(default_factory=InsightPolicy)
    link_accept: AcceptPolicy = field(default_factory=AcceptPolicy)  # what peers may ask of this node
    as_of: date = field(default_factory=date.today)  # the day features and insight fields are taken at
    limits: Limits = field(default_factory=Limits)  # caps on what a peer may make this node hold
    link_chunk: int = DEFAULT_CHUNK  # [link] chunk: points per PSI message (and per checkpointed chunk)
    min_bin_rows: int = MIN_BIN_ROWS  # as a passive party in training: the fewest rows a bucket sum it sends covers
    share_names: bool = False  # as a passive party in a scorecard: the label holder sees its feature names, not f0..
    link_backend: str = DEFAULT_BACKEND  # [link] backend: the X25519 that blinds PSI values (auto | mb | openssl)
    # [peers.NAME] timeout_s / keepalive_s: how long a session waits for that peer (default [node] timeout_s),
    # and how often a waiting session checks that the peer is alive (default KEEPALIVE_S)
    peer_timeout_s: dict[str, float] = field(default_factory=dict)
    peer_keepalive_s: dict[str, float] = field(default_factory=dict)

    def timeout_for(self, peer: str) -> float:
        return self.peer_timeout_s.get(peer, self.timeout_s)

    def keepalive_for(self, peer: str) -> float:
        return self.peer_keepalive_s.get(peer, KEEPALIVE_S)

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"


def load_node_config(path: str | os.PathLike) -> NodeConfig:
    """Read and check a node's TOML config; every error names the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read node config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    base = path.parent

    def need(section: str, key: str, kind=str):
        value = raw.get(section, {}).get(key)
        if not isinstance(value, kind):
            raise InputError(f"{path}: [{section}] {key} is missing or not a {kind.__name__}")
        return value

    def resolve(p: str) -> Path:
        return (base / p).resolve() if not os.path.isabs(p) else Path(p)

    node = raw.get("node", {})
    preset = node.get("preset", "bank")
    if preset not in PRESETS:
        raise InputError(f"{path}: [node] preset must be one of {', '.join(PRESETS)}")
    peers = raw.get("peers", {})
    if not isinstance(peers, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("address"), str) for v in peers.values()
    ):
        raise InputError(f'{path}: each [peers.NAME] needs an address = "host:port"')
    link = raw.get("link", {})
    keys = {e: list(link.get(f"{e}_keys", list(PRESETS[preset][e].keys))) for e in ENTITIES}
    for e, ks in keys.items():
        unknown = [k for k in ks if k not in PRESETS[preset][e].keys]
        if unknown:
            raise InputError(f"{path}: [link] {e}_keys has unknown key(s) {', '.join(unknown)}")
    link_backend = check_backend(link.get("backend", DEFAULT_BACKEND), f"{path}: [link] backend")
    store = need("node", "store")
    chunk = link.get("chunk", DEFAULT_CHUNK)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 1 <= chunk <= DEFAULT_CHUNK:
        raise InputError(f"{path}: [link] chunk must be an integer from 1 to {DEFAULT_CHUNK} (points per message)")
    min_bin_rows = raw.get("train", {}).get("min_bin_rows", MIN_BIN_ROWS)
    if not isinstance(min_bin_rows, int) or isinstance(min_bin_rows, bool) or min_bin_rows < 1:
        raise InputError(f"{path}: [train] min_bin_rows must be an integer >= 1 (1: no merging)")
    share_names = raw.get("train", {}).get("share_names", False)
    if not isinstance(share_names, bool):
        raise InputError(f"{path}: [train] share_names must be true or false")
    try:
        as_of = date.fromisoformat(str(node["as_of"])) if "as_of" in node else date.today()
    except ValueError:
        raise InputError(f"{path}: [node] as_of must be a date like 2019-01-01") from None
    return NodeConfig(
        name=need("node", "name"),
        listen=need("node", "listen"),
        store=store if "://" in store else str(resolve(store)),
        state_dir=resolve(node.get("state_dir", f"state-{node.get('name', 'node')}")),
        tls=_tls_files(raw, path, resolve, need),
        peers={n: v["address"] for n, v in peers.items()},
        sources=dict(PRESETS[preset]),
        keys=keys,
        timeout_s=float(node.get("timeout_s", 60)),
        workers=node.get("workers"),
        path=path,
        preset=preset,
        insight=InsightPolicy.from_section(raw.get("insight", {}), path),
        link_accept=AcceptPolicy.from_section(link.get("accept", {}), path),
        link_chunk=chunk,
        as_of=as_of,
        limits=Limits.from_section(raw.get("limits", {}), path),
        min_bin_rows=min_bin_rows,
        share_names=share_names,
        link_backend=link_backend,
        peer_timeout_s=_per_peer(peers, "timeout_s", path),
        peer_keepalive_s=_per_peer(peers, "keepalive_s", path),
    )


def _tls_files(raw: dict, path: Path, resolve, need) -> TlsFiles:
    """``[tls] cert, key`` (and ``ca``, trusted for every peer without its own) and per peer
    ``[peers.NAME] ca`` (the CA trusted for that peer) and ``pin`` (``sha256:HEX`` of its node certificate)."""
    tls, peers = raw.get("tls", {}), raw.get("peers", {})
    default = tls.get("ca")
    if default is not None and not isinstance(default, str):
        raise InputError(f"{path}: [tls] ca must be a path")
    peer_cas, pins = {}, {}
    for name, section in peers.items():
        ca, pin = section.get("ca"), section.get("pin")
        if ca is None and default is None:
            raise InputError(
                f"{path}: [peers.{name}] has no ca and there is no [tls] ca: set the CA this node trusts for {name} "
                f"(tandem certs trust FILE --peer {name})"
            )
        if ca is not None:
            if not isinstance(ca, str):
                raise InputError(f"{path}: [peers.{name}] ca must be a path")
            peer_cas[name] = resolve(ca)
        if pin is not None:
            if not (isinstance(pin, str) and pin.startswith("sha256:") and len(pin) == 71):
                raise InputError(f"{path}: [peers.{name}] pin must be sha256: and 64 hex digits (tandem certs show)")
            pins[name] = pin.lower()
    return TlsFiles(
        resolve(default) if default else None,
        resolve(need("tls", "cert")),
        resolve(need("tls", "key")),
        peer_cas,
        pins,
    )


def _per_peer(peers: dict, key: str, path: Path) -> dict[str, float]:
    """``[peers.NAME] KEY`` (seconds, > 0) of each peer that sets it."""
    out = {}
    for name, section in peers.items():
        value = section.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InputError(f"{path}: [peers.{name}] {key} must be a number of seconds > 0")
        out[name] = float(value)
    return out

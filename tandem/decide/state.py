"""What a decision service holds in memory: its config, feature tables and loaded model versions.

Feature tables are rebuilt from the party's own store every ``refresh_s`` seconds on a
background thread and swapped in whole; model files are read again on ``reload()``, and
the previous version of each model stays loaded, so a new version goes live while
requests for the old one are still answered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from tandem.decide.scorers import load_scorer
from tandem.decide.scoring import ActiveScorer, PassiveScorer
from tandem.errors import InputError
from tandem.features.rows import rows
from tandem.link import versions as link_versions
from tandem.node_config import NodeConfig, load_node_config
from tandem.parties import ENTITIES

KINDS = {"customers": "installments", "sellers": "seller_credit_line"}
POLICY_COLUMNS = {
    ("active", "customers"): ("income_median", "debt_service"),
    ("active", "sellers"): ("business_debt",),
    ("passive", "customers"): (),
    ("passive", "sellers"): ("gmv_recent_3m", "gmv_trend"),
}


# The harvesting guards of the bank's decision service (``[decide]`` keys, numbers >= 0; 0 turns one off):
# name -> (default, help). Defaults leave the demo and the benchmark well inside them.
GUARDS: dict[str, tuple[float, str]] = {
    "window_s": (86400.0, "seconds a link id's evaluation is reused for any new request id of that link id"),
    "peer_rate": (2000.0, "decision requests per second the mutual-TLS peer may send (one second's burst)"),
    "peer_daily_checkouts": (100000.0, "the checkouts per day the partner declares (with sellers' requests)"),
    "peer_daily_factor": (2.0, "decision requests per day allowed: peer_daily_checkouts x this"),
    "peer_new_links_per_minute": (
        600.0,
        "new records the peer may look up at checkout per minute, each key's lookup of a record counting once "
        "(a minute's burst)",
    ),
}


@dataclass(frozen=True)
class DecideConfig:
    """The ``[decide]`` section of a node config (paths resolved against the config's folder)."""

    node: NodeConfig
    listen: str  # mutual TLS, for the other node
    api_listen: str | None  # TLS + API key, for other clients
    api_keys: Path | None  # SHA-256 hex of each key, one per line
    models: dict[str, Path]  # entity -> this party's model file
    peer: str | None  # the other node's name (its [peers.NAME] decide address)
    peer_address: str | None
    policy: Path | None
    as_of: date
    refresh_s: float = 600.0
    rate_limit: float = 0.0  # requests per second per API key (0: no limit)
    scorers: tuple[Path, ...] = ()  # plugin files registering more model formats
    admin_keys: Path | None = None  # SHA-256 hex of each operator key (X-Admin-Key), one per line
    guards: tuple[tuple[str, float], ...] = tuple((k, v[0]) for k, v in GUARDS.items())  # GUARDS' values

    def guard(self, name: str) -> float:
        return dict(self.guards)[name]

    @property
    def peer_daily(self) -> int:
        """Decision requests per UTC day the peer may send (0: no cap)."""
        return int(self.guard("peer_daily_checkouts") * self.guard("peer_daily_factor"))


def load_decide_config(path: str | os.PathLike) -> DecideConfig:
    node = load_node_config(path)
    raw = tomllib.loads(Path(path).read_text())
    d = raw.get("decide")
    if not isinstance(d, dict):
        raise InputError(f"{path}: no [decide] section")

    def to_path(key: str, value: object) -> Path:
        if not isinstance(value, str):
            raise InputError(f"{path}: [decide] {key} must be a path")
        return Path(value) if os.path.isabs(value) else (Path(path).parent / value).resolve()

    def resolve(key: str) -> Path | None:
        value = d.get(key)
        return None if value is None else to_path(key, value)

    if not isinstance(d.get("listen"), str):
        raise InputError(f'{path}: [decide] listen = "host:port" is missing')
    models = {e: to_path(f"{e}_model", d[f"{e}_model"]) for e in ENTITIES if d.get(f"{e}_model")}
    if not models:
        raise InputError(f"{path}: [decide] needs customers_model and/or sellers_model")
    peer = d.get("peer")
    address = raw.get("peers", {}).get(peer, {}).get("decide") if peer else None
    if peer and not isinstance(address, str):
        raise InputError(f'{path}: [peers.{peer}] decide = "host:port" is missing')
    try:
        as_of = date.fromisoformat(str(d["as_of"])) if "as_of" in d else None
    except ValueError:
        raise InputError(f"{path}: [decide] as_of must be a date like 2019-01-01") from None
    if as_of is None:
        as_of = node.as_of
    return DecideConfig(
        node,
        d["listen"],
        d.get("api_listen"),
        resolve("api_keys"),
        models,
        peer,
        address,
        resolve("policy"),
        as_of,
        float(d.get("refresh_s", 600)),
        _rate_limit(d, path),
        _plugins(d, path),
        resolve("admin_keys"),
        tuple((k, _number(d, k, default, why, path)) for k, (default, why) in GUARDS.items()),
    )


def _number(section: dict, key: str, default: float, why: str, path) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise InputError(f"{path}: [decide] {key} must be a number >= 0 ({why}; 0: off)")
    return float(value)


def _plugins(section: dict, path) -> tuple[Path, ...]:
    value = section.get("scorers", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{path}: [decide] scorers must be a list of plugin file paths")
    return tuple(Path(v) if os.path.isabs(v) else (Path(path).parent / v).resolve() for v in value)


def _rate_limit(section: dict, path) -> float:
    value = section.get("rate_limit", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InputError(f"{path}: [decide] rate_limit must be a number of requests per second >= 0 (0: no limit)")
    return float(value)


def read_api_keys(path: Path | None) -> set[str]:
    if path is None:
        return set()
    try:
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except OSError as exc:
        raise InputError(f"{path}: cannot read API keys ({exc.strerror})") from None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiClients:
    """Who may call an API-key listener: the SHA-256 of each accepted key, and a rate limit per key
    (a token bucket refilled at ``rate_limit`` requests per second, holding one second's worth; 0:
    no limit). ``admit(key)`` -> ``None`` (go ahead), ``"unknown"`` or the seconds to wait."""

    def __init__(self, key_hashes: set[str], rate_limit: float = 0.0):
        self.key_hashes, self.rate = key_hashes, rate_limit
        self._buckets: dict[str, tuple[float, float]] = {}  # key hash -> (tokens, at)

    def admit(self, key: str, now: float | None = None) -> str | float | None:
        digest = key_hash(key)
        if not key or not any(hmac.compare_digest(digest, k) for k in self.key_hashes):
            return "unknown"
        if self.rate <= 0:
            return None
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(digest, (self.rate, now))
        tokens = min(self.rate, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[digest] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[digest] = (tokens - 1, now)
        return None


class FeatureTable:
    """A party's features for its linked rows: ``row(link_id)`` -> ``(x (f,), extras)``."""

    def __init__(self, table: pa.Table, names: list[str], extras: tuple[str, ...] = ()):
        missing = [n for n in list(names) + list(extras) if n not in table.column_names]
        if missing:
            raise InputError(f"the store has no feature '{missing[0]}' that the model needs")
        self.link_ids = table.column("link_id").to_pylist()
        self.index = {lid: i for i, lid in enumerate(self.link_ids)}
        self.local_ids = table.column("local_id").to_numpy()
        self.by_local = dict(zip(self.local_ids.tolist(), self.link_ids))
        self.X = np.column_stack([_floats(table, n) for n in names]) if names else np.zeros((len(self.link_ids), 0))
        self.extras = {n: _floats(table, n) for n in extras}
        self.added: dict[str, tuple[np.ndarray, dict[str, float | None]]] = {}  # linked at checkout (decide.newlinks)

    def add(self, link_id: str, local_id: int, row: tuple[np.ndarray, dict[str, float | None]]) -> None:
        """A row linked since the table was built (``row`` as ``row()`` returns it)."""
        self.added[link_id] = row
        self.by_local[local_id] = link_id

    def __len__(self) -> int:
        return len(self.link_ids)

    def row(self, link_id: str) -> tuple[np.ndarray, dict[str, float | None]] | None:
        i = self.index.get(link_id)
        if i is None:
            return self.added.get(link_id)
        return self.X[i], {n: (None if np.isnan(v[i]) else float(v[i])) for n, v in self.extras.items()}


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)


class ServiceState:
    """Models (by entity and version), feature tables and their refresh, for one party's service."""

    def __init__(self, cfg: DecideConfig, store, role: str):
        self.cfg, self.store, self.role = cfg, store, role
        self.models: dict[str, dict[str, ActiveScorer | PassiveScorer]] = {e: {} for e in cfg.models}
        self.current: dict[str, str] = {}
        self.link_versions: dict[str, str | None] = {}  # entity -> the pinned link version (None: unversioned)
        self.tables: dict[str, FeatureTable] = {}
        self.on_refresh: list = []  # more tables to rebuild with these (the offers')
        self.on_table: list = []  # (entity, new FeatureTable) -> None, before it is swapped in (decide.newlinks)
        self.counters: dict = {}  # name -> () -> dict: more guards' counters for GET /v1/admin/stats
        self._lock = threading.Lock()
        self.reload()
        self.refresh()
        if cfg.refresh_s > 0:
            threading.Thread(target=self._refresh_loop, daemon=True, name="feature-refresh").start()

    def reload(self) -> dict[str, list[str]]:
        """Read the model files again; a new version becomes current, the previous one stays loaded.
        Pin the newest link version of each entity (the next ``refresh`` reads it)."""
        pins = {entity: link_versions.newest(self.store, entity) for entity in self.cfg.models}
        with self._lock:
            self.link_versions = pins
        for entity, path in self.cfg.models.items():
            scorer = load_scorer(path, self.role)
            with self._lock:
                versions = self.models[entity]
                if scorer.version not in versions:
                    keep = {v: versions[v] for v in list(versions)[-1:]}
                    versions.clear()
                    versions.update(keep)
                    versions[scorer.version] = scorer
                self.current[entity] = scorer.version
        return {e: list(v) for e, v in self.models.items()}

    def link_table(self, entity: str) -> str:
        """The link table of the pinned version of ``entity``."""
        return link_versions.pinned_table(entity, self.link_versions.get(entity))

    def refresh(self) -> None:
        """Rebuild every feature table from the store (as of ``cfg.as_of``) and swap it in."""
        party = "bank" if self.role == "active" else "market"
        for entity in self.cfg.models:
            scorer = self.model(entity)
            extras = POLICY_COLUMNS[(self.role, entity)]
            link = self.link_table(entity)
            table = FeatureTable(rows(self.store, party, entity, self.cfg.as_of, link_table=link), scorer.names, extras)
            for hook in self.on_table:
                hook(entity, table)
            with self._lock:
                self.tables[entity] = table
        for rebuild in self.on_refresh:
            rebuild()

    def _refresh_loop(self) -> None:
        while True:
            time.sleep(self.cfg.refresh_s)
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - keep serving the last good table
                pass

    def model(self, entity: str, version: str | None = None):
        """The scorer of ``version`` (default: the current one), or ``None`` if it is not loaded."""
        with self._lock:
            key = version or self.current.get(entity)
            return None if key is None else self.models.get(entity, {}).get(key)

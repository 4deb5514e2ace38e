"""``tandem score``: the portfolio mode — every shared customer (pre-approved installment limits) or
seller (credit lines) scored in batch into the bank's store.

The bank asks the marketplace's decision service (mutual TLS) for the go-left bits of its
splits over all linked rows, in chunks (federated batch prediction: bits, never features),
and scores them with its own features and the same policy as online decisions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tandem.decide import policy as rules
from tandem.decide.api import MESSAGES, PROTOCOL
from tandem.decide.scorers import load_plugins, load_scorer
from tandem.decide.scoring import decode_bits
from tandem.decide.state import POLICY_COLUMNS, FeatureTable, load_decide_config
from tandem.errors import InputError, TandemError
from tandem.features.rows import rows
from tandem.parties import ENTITIES
from tandem.store import open_store
from tandem.store.schema import Column, TableSpec
from tandem.transport.http import Messages
from tandem.transport.http_client import BlockingPeerHttpClient
from tandem.transport.session import open_audit

CHUNK = 20_000
POLICY_SECTION = {"customers": "installments", "sellers": "sellers"}
SPEC = {
    e: TableSpec(
        f"scores_{e}",
        (
            Column("link_id", "VARCHAR", False),
            Column("local_id", "BIGINT", False),
            Column("pd", "DOUBLE", False),
            Column("limit_amount", "DOUBLE", False),
            Column("band", "VARCHAR", False),
            Column("model_version", "VARCHAR", False),
            Column("scored_at", "TIMESTAMP", False),
        ),
    )
    for e in ENTITIES
}


def score_portfolio(config_path: str, entity: str, progress=lambda what, fraction: None) -> dict:
    """Score every linked ``entity`` row; write ``scores_{entity}`` into the bank's store (atomically)."""
    cfg = load_decide_config(config_path)
    if entity not in cfg.models:
        raise InputError(f"{config_path}: [decide] has no {entity}_model")
    if cfg.peer is None:
        raise InputError(f"{config_path}: [decide] peer (the marketplace) is missing")
    load_plugins(cfg.scorers)
    scorer = load_scorer(cfg.models[entity], "active")
    store = open_store(cfg.node.store)
    try:
        table = FeatureTable(rows(store, "bank", entity, cfg.as_of), scorer.names, POLICY_COLUMNS[("active", entity)])
        policy = rules.load_policy(cfg.policy)
        bits = np.zeros((len(table), scorer.n_bits), dtype=bool)
        found = np.zeros(len(table), dtype=bool)
        gmv = np.zeros(len(table))
        with peer_client(cfg, MESSAGES) as client:
            for start in range(0, len(table), CHUNK):
                ids = table.link_ids[start : start + CHUNK]
                answer = post_peer(
                    client, cfg, "/v1/bits", {"kind": entity, "model_version": scorer.version, "link_ids": ids}
                )
                hit = np.flatnonzero(answer["found"]) + start
                found[hit] = True
                for i, text in zip(hit, answer["bits"]):
                    bits[i] = decode_bits(text, scorer.n_bits)
                if answer.get("forecast_gmv"):
                    gmv[hit] = answer["forecast_gmv"]
                progress("scoring", min(1.0, (start + CHUNK) / max(1, len(table))))
        pd = scorer.score_batch(table.X[found], bits[found])
        limits, bands = _limits(entity, pd, table, found, gmv[found], policy, scorer.parties)
        now = datetime.now(UTC).replace(tzinfo=None)
        out = pa.table(
            {
                "link_id": pa.array(np.array(table.link_ids, dtype=object)[found].tolist(), pa.string()),
                "local_id": pa.array(table.local_ids[found], pa.int64()),
                "pd": pa.array(pd, pa.float64()),
                "limit_amount": pa.array(limits, pa.float64()),
                "band": pa.array(bands, pa.string()),
                "model_version": pa.array([scorer.version] * int(found.sum()), pa.string()),
                "scored_at": pa.array([now] * int(found.sum()), pa.timestamp("us")),
            }
        )
        store.write_table(SPEC[entity].name, out, SPEC[entity])
    finally:
        store.close()
    return {
        "entity": entity,
        "rows": int(found.sum()),
        "not_found_at_peer": int((~found).sum()),
        "model_version": scorer.version,
        "table": SPEC[entity].name,
        "bands": {b: bands.count(b) for b in ("approve", "refer", "decline")},
        "pd_mean": float(pd.mean()) if len(pd) else None,
    }


def peer_client(cfg, messages: Messages) -> BlockingPeerHttpClient:
    """A blocking mutual-TLS client of the other node's decision service (batch work), audited in this
    node's audit log with ``messages`` naming the endpoints."""
    return BlockingPeerHttpClient(cfg.peer_address, cfg.peer, cfg.node.tls, open_audit(cfg.node), messages, PROTOCOL)


def post_peer(client: BlockingPeerHttpClient, cfg, path: str, body: dict) -> dict:
    """POST ``body`` to the peer, check that it answered, return its JSON (``TandemError`` otherwise)."""
    status, data = client.post(path, body)
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if status != 200:
        detail = answer.get("detail", "") if isinstance(answer, dict) else data.decode(errors="replace")
        raise TandemError(f"{cfg.peer}: {str(detail)[:300]}")
    if not isinstance(answer, dict):
        raise TandemError(f"{cfg.peer}: a malformed answer to {path}")
    return answer


def _limits(
    entity: str,
    pd: np.ndarray,
    table: FeatureTable,
    found: np.ndarray,
    gmv: np.ndarray,
    policy: dict,
    parties: list[str],
) -> tuple[list[float], list[str]]:
    """Pre-approved limit and band per row: the online policy for an order of the limit itself."""
    limits, bands = [], []
    extras = {n: v[found] for n, v in table.extras.items()}
    for i, p in enumerate(pd):
        get = lambda n, i=i: None if np.isnan(extras[n][i]) else float(extras[n][i])  # noqa: E731
        if entity == "customers":
            probe = rules.installments(p, 1.0, get("income_median"), get("debt_service"), {}, policy, parties)
        else:
            probe = rules.seller_credit_line(p, gmv[i], get("business_debt"), None, {}, policy, parties)
        limits.append(probe.limit)
        bands.append(rules.pd_band(p, policy[POLICY_SECTION[entity]]))
    return limits, bands

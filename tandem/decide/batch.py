"""``tandem score``: the portfolio mode — every shared customer (pre-approved installment limits) or
seller (credit lines) scored in batch into the bank's store.

The bank asks the marketplace's decision service (mutual TLS) for the go-left bits of its
splits over all linked rows, in chunks (federated batch prediction: bits, never features),
and scores them with its own features and the same policy as online decisions.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from tandem.audit import AuditLog
from tandem.decide import policy as rules
from tandem.decide.api import check_peer, peer_context
from tandem.decide.scoring import ActiveScorer, decode_bits
from tandem.decide.state import FeatureTable, POLICY_COLUMNS, load_decide_config
from tandem.features.rows import rows
from tandem.errors import InputError, TandemError
from tandem.learn import model_io
from tandem.parties import ENTITIES
from tandem.store import open_store
from tandem.store.schema import Column, TableSpec

CHUNK = 20_000
POLICY_SECTION = {"customers": "installments", "sellers": "sellers"}
SPEC = {e: TableSpec(f"scores_{e}", (Column("link_id", "VARCHAR", False), Column("local_id", "BIGINT", False),
                                      Column("pd", "DOUBLE", False), Column("limit_amount", "DOUBLE", False),
                                      Column("band", "VARCHAR", False), Column("model_version", "VARCHAR", False),
                                      Column("scored_at", "TIMESTAMP", False)))
        for e in ENTITIES}


def score_portfolio(config_path: str, entity: str, progress=lambda what, fraction: None) -> dict:
    """Score every linked ``entity`` row; write ``scores_{entity}`` into the bank's store (atomically)."""
    cfg = load_decide_config(config_path)
    if entity not in cfg.models:
        raise InputError(f"{config_path}: [decide] has no {entity}_model")
    if cfg.peer is None:
        raise InputError(f"{config_path}: [decide] peer (the marketplace) is missing")
    scorer = ActiveScorer(model_io.load(cfg.models[entity], "active"))
    store = open_store(cfg.node.store)
    try:
        table = FeatureTable(rows(store, "bank", entity, cfg.as_of), scorer.names, POLICY_COLUMNS[("active", entity)])
        policy = rules.load_policy(cfg.policy)
        audit = AuditLog(cfg.node.audit_path, cfg.node.name)
        bits = np.zeros((len(table), scorer.n_bits), dtype=bool)
        found = np.zeros(len(table), dtype=bool)
        gmv = np.zeros(len(table))
        with peer_client(cfg) as client:
            for start in range(0, len(table), CHUNK):
                ids = table.link_ids[start:start + CHUNK]
                answer = post_peer(client, cfg, audit, "/v1/bits", {"kind": entity, "model_version": scorer.version,
                                                                    "link_ids": ids}, scorer.version, "bits request")
                hit = np.flatnonzero(answer["found"]) + start
                found[hit] = True
                for i, text in zip(hit, answer["bits"]):
                    bits[i] = decode_bits(text, scorer.n_bits)
                if answer.get("forecast_gmv"):
                    gmv[hit] = answer["forecast_gmv"]
                progress("scoring", min(1.0, (start + CHUNK) / max(1, len(table))))
        pd = scorer.score_batch(table.X[found], bits[found])
        limits, bands = _limits(entity, pd, table, found, gmv[found], policy, scorer.parties)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        out = pa.table({"link_id": pa.array(np.array(table.link_ids, dtype=object)[found].tolist(), pa.string()),
                        "local_id": pa.array(table.local_ids[found], pa.int64()), "pd": pa.array(pd, pa.float64()),
                        "limit_amount": pa.array(limits, pa.float64()), "band": pa.array(bands, pa.string()),
                        "model_version": pa.array([scorer.version] * int(found.sum()), pa.string()),
                        "scored_at": pa.array([now] * int(found.sum()), pa.timestamp("us"))})
        store.write_table(SPEC[entity].name, out, SPEC[entity])
    finally:
        store.close()
    return {"entity": entity, "rows": int(found.sum()), "not_found_at_peer": int((~found).sum()),
            "model_version": scorer.version, "table": SPEC[entity].name,
            "bands": {b: bands.count(b) for b in ("approve", "refer", "decline")},
            "pd_mean": float(pd.mean()) if len(pd) else None}


def peer_client(cfg):
    """A synchronous mutual-TLS client of the other node's decision service (batch work)."""
    import httpx

    return httpx.Client(base_url=f"https://{cfg.peer_address}", verify=peer_context(cfg.node.tls), timeout=120)


def post_peer(client, cfg, audit: AuditLog, path: str, body: dict, session: str, message: str) -> dict:
    """POST ``body`` to the peer (audited, with its row count), check that the peer answered, return its JSON."""
    import httpx

    data = json.dumps(body).encode()
    audit.record(direction="out", peer=cfg.peer, protocol="decide/1", session=session, message=message,
                 nbytes=len(data), records=len(body.get("link_ids", ())))
    try:
        reply = client.post(path, content=data, headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        raise TandemError(f"the {cfg.peer} decision service is unreachable ({type(exc).__name__})") from None
    check_peer(reply, cfg.peer)
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise TandemError(f"{cfg.peer}: {str(detail)[:300]}")
    return reply.json()


def _limits(entity: str, pd: np.ndarray, table: FeatureTable, found: np.ndarray, gmv: np.ndarray, policy: dict,
            parties: list[str]) -> tuple[list[float], list[str]]:
    """Pre-approved limit and band per row: the online policy for an order of the limit itself."""
    limits, bands = [], []
    extras = {n: v[found] for n, v in table.extras.items()}
    for i, p in enumerate(pd):
        get = lambda n: None if np.isnan(extras[n][i]) else float(extras[n][i])  # noqa: E731
        if entity == "customers":
            probe = rules.installments(p, 1.0, get("income_median"), get("debt_service"), {}, policy, parties)
        else:
            probe = rules.seller_credit_line(p, gmv[i], get("business_debt"), None, {}, policy, parties)
        limits.append(probe.limit)
        bands.append(rules.pd_band(p, policy[POLICY_SECTION[entity]]))
    return limits, bands


"""``tandem offers``: the next best offers of every shared client, in batch, into the bank's store.

The bank asks the marketplace's decision service (mutual TLS) for the go-left bits of the PD
model's and each propensity model's marketplace splits over all linked clients, in chunks, scores
them with its own features, decides with the same function as the online endpoint, asks the
marketplace for the personalised content of the offers it makes (only for those clients), and
replaces table ``offers`` — one row per (client, product): offered with its rank, or the reason
it was withheld — in one atomic write.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from tandem.decide import policy as rules
from tandem.decide.batch import CHUNK, peer_client, post_peer
from tandem.decide.scorers import load_scorer
from tandem.decide.scoring import ActiveScorer, ScoringError, decode_bits
from tandem.decide.state import load_decide_config
from tandem.errors import InputError, TandemError
from tandem.learn import model_io
from tandem.offers.catalog import load_catalog
from tandem.offers.decision import REASONS, Decisions, decide
from tandem.offers.models import load_manifest, load_offers_config, read_manifest
from tandem.offers.service import OFFER_MESSAGES
from tandem.offers.sides import BankSide
from tandem.store import open_store
from tandem.store.schema import Column as C
from tandem.store.schema import TableSpec

SPEC = TableSpec(
    "offers",
    (
        C("link_id", "VARCHAR", False),
        C("client_id", "BIGINT", False),
        C("product", "VARCHAR", False),
        C("offered", "BOOLEAN", False),
        C("rank", "INTEGER", False, "1 is the best offer; 0 not offered"),
        C("reason", "VARCHAR", False, "offered, or the first gate that withheld it"),
        C("propensity", "DOUBLE", False),
        C("value_rub", "DOUBLE", False),
        C("expected_value_rub", "DOUBLE", False),
        C("credit", "BOOLEAN", False),
        C("pd", "DOUBLE", False),
        C("limit_amount", "DOUBLE", doc="credit products the policy approves: the pre-approved limit"),
        C("categories", "VARCHAR", doc="personalised offers: the categories covered, comma-separated"),
        C("propensity_model", "VARCHAR", False),
        C("pd_model", "VARCHAR", False),
        C("as_of", "DATE", False),
        C("decided_at", "TIMESTAMP", False),
    ),
    doc="the next best offers of every shared client (tandem offers)",
)


def load_bank_models(config_path: str):
    """``(decide config, offers config, catalog, PD scorer, propensity scorers)`` of a bank node config."""
    cfg = load_decide_config(config_path)
    ocfg = load_offers_config(config_path)
    if ocfg is None:
        raise InputError(f'{config_path}: no [offers] section (models = "offers-bank.json" from `tandem propensity`)')
    if "customers" not in cfg.models:
        raise InputError(f"{config_path}: [decide] customers_model is missing (the PD of the solvency gate)")
    if cfg.peer is None:
        raise InputError(f"{config_path}: [decide] peer (the marketplace) is missing")
    catalog = load_catalog(ocfg.catalog)
    manifest = load_manifest(ocfg.models, [p.key for p in catalog.customer_products])
    scorers = [ActiveScorer(model_io.load(manifest[p.key], "active")) for p in catalog.customer_products]
    return cfg, ocfg, catalog, load_scorer(cfg.models["customers"], "active"), scorers


def offers_portfolio(
    config_path: str, progress=lambda what, fraction: None, evaluate: bool = True, report=None, holdout_from=None
) -> dict:
    """Decide every linked client's offers; write table ``offers`` into the bank's store (atomically).

    With ``evaluate``, also replay the held-out campaigns (``tandem.offers.evaluate``) and write
    the HTML ``report``. Returns the offer mix, the withheld reasons and the evaluation.
    """
    cfg, ocfg, catalog, pd_scorer, scorers = load_bank_models(config_path)
    policy = rules.load_policy(cfg.policy)
    store = open_store(cfg.node.store)
    try:
        progress("reading the bank's features and contact history", 0.02)
        side = BankSide(store, cfg.as_of, catalog, pd_scorer, scorers)
        found, pd, propensity = _score(side, cfg, progress)
        rows = np.flatnonzero(found)
        decisions = decide(propensity, side.clients(rows, pd), catalog, side.products, policy)
        categories = _content(side, rows, decisions, cfg)
        table = _table(side, rows, pd, propensity, decisions, categories)
        progress("writing table offers", 0.9)
        store.write_table(SPEC.name, table, SPEC)
        credit = (decisions.rank > 0) & np.array([p.credit for p in side.products])[None, :]
        result = {
            "clients": int(len(rows)),
            "not_found_at_peer": int((~found).sum()),
            "table": SPEC.name,
            "mix": _mix(side, decisions),
            "withheld": _withheld(decisions),
            "credit": {
                "offers": int(credit.sum()),
                "pd_cutoff": policy["installments"]["pd_approve"],
                "pd_max": float(pd[credit.any(axis=1)].max()) if credit.any() else None,
            },
        }
        if evaluate:
            from tandem.offers.evaluate import evaluate_holdout

            progress("replaying the held-out campaigns", 0.95)
            manifest = read_manifest(ocfg.models)
            args, trained_from = manifest.get("args"), manifest.get("holdout_from")
            if not isinstance(args, dict):
                raise InputError(f"{ocfg.models}: no training settings (args) to train the bank-only comparison")
            start = holdout_from or (date.fromisoformat(trained_from) if trained_from else None)
            result["evaluation"] = evaluate_holdout(store, side, rows, pd, propensity, policy, args, start)
            if report is not None:
                from tandem.report.offer_report import write_offer_report

                result["report"] = str(write_offer_report(report, result))
    finally:
        store.close()
    progress("done", 1.0)
    return result


def _score(side: BankSide, cfg, progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(found (n,), pd (m,), propensity (m, k))`` over the clients the marketplace knows."""
    n, versions = len(side), side.versions
    scorers = [side.pd_scorer, *side.scorers]
    bits = [np.zeros((n, s.n_bits), dtype=bool) for s in scorers]
    found = np.zeros(n, dtype=bool)
    with peer_client(cfg, OFFER_MESSAGES) as client:
        for start in range(0, n, CHUNK):
            ids = side.link_ids[start : start + CHUNK]
            answer = post_peer(client, cfg, "/v1/offers/bits", {"model_versions": versions, "link_ids": ids})
            hit = np.flatnonzero(_found(answer, len(ids), cfg)) + start
            found[hit] = True
            for v, s, b in zip(versions, scorers, bits):
                texts = answer.get("bits", {}).get(v) if isinstance(answer.get("bits"), dict) else None
                if not isinstance(texts, list) or len(texts) != len(hit):
                    raise TandemError(f"{cfg.peer}: no bits for model {v} in its answer")
                try:
                    for i, text in zip(hit, texts):
                        b[i] = decode_bits(text, s.n_bits)
                except (ScoringError, TypeError) as exc:
                    raise TandemError(f"{cfg.peer}: bits of model {v} do not fit it ({exc})") from None
            progress("federated scoring", 0.05 + 0.75 * min(1.0, (start + CHUNK) / max(1, n)))
    rows = np.flatnonzero(found)
    pd, propensity = side.scores(rows, [b[rows] for b in bits])
    return found, pd, propensity


def _content(side: BankSide, rows: np.ndarray, decisions: Decisions, cfg) -> dict:
    """(row position, product position) -> categories, asked of the marketplace only for offered pairs."""
    out = {}
    with peer_client(cfg, OFFER_MESSAGES) as client:
        for j, p in enumerate(side.products):
            if p.personalise == "none":
                continue
            offered = np.flatnonzero(decisions.rank[:, j] > 0)
            for start in range(0, len(offered), CHUNK):
                part = offered[start : start + CHUNK]
                ids = [side.link_ids[rows[r]] for r in part]
                answer = post_peer(client, cfg, "/v1/offers/content", {"product": p.key, "link_ids": ids})
                hit = part[_found(answer, len(ids), cfg)]
                named = answer.get("categories")
                if (
                    not isinstance(named, list)
                    or len(named) != len(hit)
                    or not all(
                        isinstance(c, list) and all(isinstance(x, str) and x in side.catalog.categories for x in c)
                        for c in named
                    )
                ):
                    raise TandemError(f"{cfg.peer}: the content of {p.key} is not names from the public category list")
                for r, cats in zip(hit, named):
                    out[(int(r), j)] = ",".join(cats)
    return out


def _found(answer: dict, n: int, cfg) -> np.ndarray:
    found = answer.get("found")
    if not isinstance(found, list) or len(found) != n or not all(isinstance(f, bool) for f in found):
        raise TandemError(f"{cfg.peer}: a malformed answer (found must list {n} booleans)")
    return np.array(found, dtype=bool)


def _table(
    side: BankSide, rows: np.ndarray, pd: np.ndarray, propensity: np.ndarray, decisions: Decisions, categories: dict
) -> pa.Table:
    m, k = propensity.shape
    products = side.products
    r, j = np.repeat(np.arange(m), k), np.tile(np.arange(k), m)
    offered = decisions.rank.ravel() > 0
    limit = decisions.limit.ravel()
    now = datetime.now(UTC).replace(tzinfo=None)
    return pa.table(
        {
            "link_id": pa.array([side.link_ids[rows[i]] for i in r], pa.string()),
            "client_id": pa.array(side.features.local_ids[rows][r], pa.int64()),
            "product": pa.array([products[i].key for i in j], pa.string()),
            "offered": pa.array(offered),
            "rank": pa.array(decisions.rank.ravel().astype(np.int32)),
            "reason": pa.array([REASONS[x] for x in decisions.reason.ravel()], pa.string()),
            "propensity": pa.array(propensity.ravel()),
            "value_rub": pa.array([products[i].value_rub for i in j]),
            "expected_value_rub": pa.array(decisions.expected_value.ravel()),
            "credit": pa.array([products[i].credit for i in j]),
            "pd": pa.array(pd[r]),
            "limit_amount": pa.array(np.where(offered, limit, np.nan), pa.float64(), from_pandas=True),
            "categories": pa.array([categories.get((int(a), int(b))) for a, b in zip(r, j)], pa.string()),
            "propensity_model": pa.array([side.scorers[i].version for i in j], pa.string()),
            "pd_model": pa.array([side.pd_scorer.version] * len(r), pa.string()),
            "as_of": pa.array([side.as_of] * len(r), pa.date32()),
            "decided_at": pa.array([now] * len(r), pa.timestamp("us")),
        }
    )


def _mix(side: BankSide, decisions: Decisions) -> list[dict]:
    """Per product: offers made, of them first choices, mean propensity and expected value (RUB)."""
    out = []
    for j, p in enumerate(side.products):
        made = decisions.rank[:, j] > 0
        out.append(
            {
                "product": p.key,
                "offers": int(made.sum()),
                "first": int((decisions.rank[:, j] == 1).sum()),
                "credit": p.credit,
                "expected_value_rub": float(decisions.expected_value[made, j].sum()),
                "mean_propensity": float(decisions.expected_value[made, j].mean() / p.value_rub)
                if made.any()
                else None,
            }
        )
    return out


def _withheld(decisions: Decisions) -> dict[str, int]:
    counts = np.bincount(decisions.reason.ravel(), minlength=len(REASONS))
    return {name: int(c) for name, c in zip(REASONS, counts) if name != "offered" and c}

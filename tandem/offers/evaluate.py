"""How well the offers would have done: a replay of the held-out campaigns, at the bank alone.

In the held-out wave each contacted client was offered one product at random. A targeting
policy is scored on the contacts where its top-1 offer for the client is the product the
client was actually offered (the replay estimator: unbiased when the logged product was drawn
uniformly at random): top-1 acceptance and revenue per 1,000 contacts. The policies:
``random`` (a random product among those the rules allow the client: the wave's contacts whose
product passes the gates; ``random, as sent`` is the whole wave, credit to clients the bank
would decline included), ``bank only`` (the same algorithm and training rows on the bank's
features alone, trained here in plaintext — the bank needs no one for it) and ``federated``
(the propensity models of both sides, as ``tandem offers`` scored them). All play by the same
rules — solvency, consent, eligibility; the models rank by propensity x value — except the
gates that look at past contacts, left out since the wave's own contacts would block its
products. Lift is against ``random``.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from tandem.learn.metrics import roc_auc
from tandem.offers.decision import decide
from tandem.offers.history import holdout_contacts, holdout_start, training_labels
from tandem.offers.sides import BankSide

Z95 = 1.959964


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return float(centre - half), float(centre + half)


def bank_only_propensity(store, side: BankSide, holdout_from: date, args: dict) -> np.ndarray:
    """(n, k) propensity of every client in ``side`` from a plaintext model per product on the bank's
    own features, trained on the same rows as the federated model (same split of the link ids)."""
    from tandem.learn.boosting import HistBoostingClassifier
    from tandem.learn.federated import split_rows
    from tandem.learn.options import TrainingOptions, estimator_kwargs

    fields = TrainingOptions.from_args(args).request_fields()
    out = np.zeros((len(side), len(side.products)))
    local = {cid: i for i, cid in enumerate(side.features.local_ids.tolist())}
    for j, product in enumerate(side.products):
        labels = training_labels(store, product.key, holdout_from)
        pairs = [
            (local[c], y)
            for c, y in zip(labels.column("client_id").to_pylist(), labels.column("responded").to_pylist())
            if c in local
        ]
        at = np.array([p[0] for p in pairs], dtype=np.int64)
        y = np.array([p[1] for p in pairs], dtype=float)
        test, _ = split_rows([side.link_ids[i] for i in at], fields)
        X = side.features.X[:, side.columns[j]]
        model = HistBoostingClassifier(**estimator_kwargs(fields)).fit(X[at[~test]], y[~test])
        out[:, j] = model.predict_proba(X)[:, 1]
    return out


def evaluate_holdout(
    store,
    side: BankSide,
    rows: np.ndarray,
    pd: np.ndarray,
    propensity: np.ndarray,
    policy: dict,
    args: dict,
    holdout_from: date | None = None,
) -> dict:
    """The replay of the held-out campaigns for the clients at ``rows`` of ``side`` (scored by
    ``tandem offers``: their ``pd`` and federated ``propensity`` (m, k)). Returns the uplift table
    (``strategies``), per-product figures and acceptance by propensity decile."""
    start = holdout_start(store, holdout_from)
    contacts = holdout_contacts(store, start)
    position = {int(side.features.local_ids[r]): i for i, r in enumerate(rows)}
    keys = [p.key for p in side.products]
    kept = [
        (position[c], keys.index(p), bool(y))
        for c, p, y in zip(*(contacts.column(n).to_pylist() for n in ("client_id", "product", "responded")))
        if c in position and p in keys
    ]
    result = {"holdout_from": start.isoformat(), "contacts": len(kept)}
    if not kept:
        return {**result, "note": "no held-out contacts among the linked clients"}
    who = np.array([k[0] for k in kept])
    product = np.array([k[1] for k in kept])
    accepted = np.array([k[2] for k in kept])
    value = np.array([p.value_rub for p in side.products])
    models = {"bank only": bank_only_propensity(store, side, start, args)[rows], "federated": propensity}

    def row(name: str, mask: np.ndarray, top: np.ndarray | None) -> dict:
        n, hits = int(mask.sum()), int(accepted[mask].sum())
        low, high = wilson(hits, n)
        chosen = product[mask] if top is None else top[top >= 0]
        mix = np.bincount(chosen, minlength=len(keys)) / max(1, len(chosen))
        return {
            "strategy": name,
            "contacts": n,
            "accepted": hits,
            "acceptance": hits / n if n else 0.0,
            "ci95": [low, high],
            "revenue_per_1000": 1000 * float((accepted[mask] * value[product[mask]]).sum()) / max(1, n),
            "top1_mix": dict(zip(keys, mix.round(4).tolist())),
        }

    clients = side.clients(rows, pd)
    allowed = ~decide(
        np.ones((len(rows), len(keys))), clients, side.catalog, side.products, policy, history=False
    ).gated
    strategies = [
        row("random, as sent", np.ones(len(kept), dtype=bool), None),
        row("random", allowed[who, product], None),
    ]
    for name, P in models.items():
        d = decide(P, clients, side.catalog, side.products, policy, history=False)
        top = np.where((d.rank == 1).any(axis=1), np.argmax(d.rank == 1, axis=1), -1)
        strategies.append(row(name, top[who] == product, top))
    base = strategies[1]["acceptance"]
    for s in strategies:
        s["lift"] = s["acceptance"] / base if base else None

    per_product = []
    for j, key in enumerate(keys):
        mine = product == j
        entry = {
            "product": key,
            "contacts": int(mine.sum()),
            "acceptance": float(accepted[mine].mean()) if mine.any() else None,
        }
        for name, P in models.items():
            y = accepted[mine]
            entry[f"auc_{name.replace(' ', '_')}"] = roc_auc(y, P[who[mine], j]) if 0 < y.sum() < len(y) else None
        per_product.append(entry)

    deciles = {}
    for name, P in models.items():
        score = P[who, product]
        order = np.argsort(-score, kind="stable")
        parts = np.array_split(order, 10)
        deciles[name] = [
            {"decile": i + 1, "mean_propensity": float(score[p].mean()), "acceptance": float(accepted[p].mean())}
            for i, p in enumerate(parts)
            if len(p)
        ]
    return {**result, "strategies": strategies, "products": per_product, "deciles": deciles}

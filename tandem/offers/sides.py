"""What each party holds in memory to decide offers, from its own store only, row for row by link id.

``BankSide``: the default model's features (for the PD), the propensity models' features, and each
client's eligibility and contact state. ``MarketSide``: the propensity models' marketplace features
and the personalised content of each linked user. The batch and the online services both use them.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from tandem.decide.scoring import PassiveScorer
from tandem.decide.state import FeatureTable
from tandem.features.rows import rows
from tandem.offers.catalog import Catalog
from tandem.offers.content import top_categories
from tandem.offers.decision import Clients
from tandem.offers.history import contact_state

POLICY_COLUMNS = ("income_median", "debt_service")  # what the installment policy's limit needs


def _union(scorers) -> list[str]:
    return list(dict.fromkeys(n for s in scorers for n in s.names))


class BankSide:
    """The bank's linked clients (``link_ids``, sorted) for the PD model ``pd_scorer`` and one
    propensity scorer per product of ``catalog.customer_products`` (in that order)."""

    def __init__(self, store, as_of: date, catalog: Catalog, pd_scorer, scorers: list, link_table: str | None = None):
        self.as_of, self.catalog, self.products = as_of, catalog, catalog.customer_products
        self.pd_scorer, self.scorers = pd_scorer, scorers
        table = rows(store, "bank", "customers", as_of, link_table=link_table)
        self.pd_table = FeatureTable(table, pd_scorer.names, POLICY_COLUMNS)
        names = _union(scorers)
        self.features = FeatureTable(table, names, ("age",))
        self.columns = [np.array([names.index(n) for n in s.names], dtype=np.int64) for s in scorers]
        self.link_ids, self.index = self.features.link_ids, self.features.index
        prefs, last = contact_state(store, as_of, catalog.period_days)
        n, keys = len(self.link_ids), [p.key for p in self.products]
        at = {cid: i for i, cid in enumerate(self.features.local_ids.tolist())}
        self.consent, self.dnd = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        self.contacts = np.zeros(n, dtype=np.int64)
        for cid, consent, dnd, contacts in zip(*(prefs.column(c).to_pylist() for c in prefs.column_names)):
            i = at.get(cid)
            if i is not None:
                self.consent[i], self.dnd[i], self.contacts[i] = consent, dnd, contacts
        self.days_since = np.full((n, len(keys)), np.nan)
        for cid, product, days in zip(*(last.column(c).to_pylist() for c in last.column_names)):
            if cid in at and product in keys:
                self.days_since[at[cid], keys.index(product)] = days

    def __len__(self) -> int:
        return len(self.link_ids)

    def clients(self, rows: np.ndarray, pd: np.ndarray) -> Clients:
        """The decision's view of the clients at positions ``rows`` with their PDs ``pd``."""
        extras = self.pd_table.extras
        return Clients(
            pd=np.asarray(pd, dtype=float),
            age=self.features.extras["age"][rows],
            income=extras["income_median"][rows],
            debt_service=extras["debt_service"][rows],
            marketing_consent=self.consent[rows],
            do_not_disturb=self.dnd[rows],
            contacts_in_period=self.contacts[rows],
            days_since_contact=self.days_since[rows],
        )

    def scores(self, rows: np.ndarray, bits: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(pd (m,), propensity (m, k))`` of the clients at ``rows`` from each model's marketplace
        bits (``bits[0]`` the PD model's, then one per product), batch-vectorised."""
        pd = self.pd_scorer.score_batch(self.pd_table.X[rows], bits[0])
        X = self.features.X[rows]
        return pd, np.column_stack([s.score_batch(X[:, c], b) for s, c, b in zip(self.scorers, self.columns, bits[1:])])

    def score_one(self, i: int, bits: list[np.ndarray]) -> tuple[float, np.ndarray]:
        """``scores`` of one client, on the online path (plain Python tree walks)."""
        pd, _ = self.pd_scorer.score(self.pd_table.X[i], bits[0])
        x = self.features.X[i]
        return pd, np.array([s.score(x[c], b)[0] for s, c, b in zip(self.scorers, self.columns, bits[1:])])

    @property
    def versions(self) -> list[str]:
        return [self.pd_scorer.version] + [s.version for s in self.scorers]


class MarketSide:
    """The marketplace's linked users for the propensity scorers (by model version) and the
    personalised content of each product that has some."""

    def __init__(
        self, store, as_of: date, catalog: Catalog, scorers: dict[str, PassiveScorer], link_table: str | None = None
    ):
        self.scorers = scorers
        table = rows(store, "market", "customers", as_of, link_table=link_table)
        names = _union(scorers.values())
        self.features = FeatureTable(table, names)
        self.columns = {v: np.array([names.index(n) for n in s.names], dtype=np.int64) for v, s in scorers.items()}
        self.content = {
            p.key: top_categories(store, as_of, catalog.categories, p.top_categories, link_table or "link_customers")
            for p in catalog.customer_products
            if p.personalise == "top_categories"
        }

    def bits(self, version: str, rows: list[int]) -> np.ndarray:
        """Go-left bits ``(len(rows), k)`` of the propensity model ``version``."""
        return self.scorers[version].bits(self.features.X[rows][:, self.columns[version]])

"""Model features each party builds for its own customers from its own store (SQL in DuckDB).

Every function takes the party's store and an ``as_of`` date: only data before
``as_of`` is used, so features never see the outcome period. See docs/features.md.
"""

from tandem.features.bank import application_labels, bank_features
from tandem.features.market import market_features
from tandem.features.sellers import bank_seller_features, market_seller_features, seller_labels

__all__ = [
    "application_labels",
    "bank_features",
    "bank_seller_features",
    "market_features",
    "market_seller_features",
    "seller_labels",
]

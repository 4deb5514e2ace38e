"""Request and response bodies of the offer endpoints (pydantic; they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from tandem.decide.schemas import Strict

ProductKey = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="A product key of the offer catalog.")
LinkIds = Field(max_length=100_000, description="Link ids from `tandem link`.")
VersionText = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
LinkIdText = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class Offer(BaseModel):
    rank: int = Field(description="1 is the best offer for this client now.")
    product: str
    name: str
    credit: bool
    propensity: float = Field(description="Probability that the client accepts, from the federated propensity model.")
    value_rub: float = Field(description="The bank's expected margin from one accepted offer, RUB.")
    expected_value_rub: float = Field(description="propensity x value, RUB: what the ranking orders by.")
    limit: float | None = Field(default=None, description="Credit products: the pre-approved limit, RUB.")
    categories: list[str] | None = Field(
        default=None, description="Personalised offers: the marketplace categories it covers (from the public list)."
    )


class Withheld(BaseModel):
    product: str
    reason: str = Field(
        description="The first gate that withheld the product: no_marketing_consent, "
        "do_not_disturb, contact_limit, not_eligible, pd_above_cutoff, "
        "limit_below_minimum, cooldown, below_contact_cost or ranked_below."
    )


class OfferList(BaseModel):
    link_id: str
    as_of: str = Field(description="The day the client's features and contact history are taken at.")
    pd: float = Field(description="Probability of default (the decision policy's model).")
    pd_model_version: str
    contact_slots: int = Field(description="Offers the contact limits still allow in this period.")
    offers: list[Offer]
    withheld: list[Withheld]


class OfferBitsRequest(Strict):
    """Bank node -> marketplace node (mutual TLS): go-left bits of several models' splits for many rows."""

    model_versions: list[VersionText] = Field(min_length=1, max_length=32)
    link_ids: list[LinkIdText] = LinkIds


class OfferBitsResponse(BaseModel):
    found: list[bool]
    bits: dict[str, list[str]] = Field(description="Model version -> base64 bits of each found row, in order.")


class ContentRequest(Strict):
    """Bank node -> marketplace node: the personalised part of an offer, for clients the bank offers it."""

    product: str = ProductKey
    link_ids: list[LinkIdText] = LinkIds


class ContentResponse(BaseModel):
    found: list[bool]
    categories: list[list[str]] = Field(description="For each found row, the categories the offer covers.")

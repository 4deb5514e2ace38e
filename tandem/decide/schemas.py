"""Request and response bodies of the decision services (pydantic; they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RequestId = Field(
    min_length=8,
    max_length=64,
    pattern=r"^[A-Za-z0-9_-]+$",
    description="Idempotency key: the same id returns the same decision and never books twice.",
)
LinkId = Field(pattern=r"^[0-9a-f]{32}$", description="The shared customer's (or seller's) link id from `tandem link`.")
Version = Field(pattern=r"^[0-9a-f]{16}$", description="The model version both parties must hold.")
Bits = Field(
    max_length=4096,
    description="Base64 of the marketplace's go-left bits for its splits of this model "
    "version (split ids sorted), never features.",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Order(Strict):
    amount: float = Field(gt=0, le=10_000_000, allow_inf_nan=False, description="Order total, in `currency`.")
    currency: Literal["RUB"]
    categories: list[str] = Field(default_factory=list, max_length=50)


class InstallmentRequest(Strict):
    """Marketplace node -> bank node (mutual TLS), one per checkout."""

    request_id: str = RequestId
    link_id: str = LinkId
    model_version: str = Version
    order: Order
    marketplace_bits: str = Bits


class SellerCreditRequest(Strict):
    """Marketplace node -> bank node: a seller asks for working capital."""

    request_id: str = RequestId
    link_id: str = LinkId
    model_version: str = Version
    marketplace_bits: str = Bits
    forecast_gmv: float = Field(
        ge=0,
        le=10_000_000_000,
        allow_inf_nan=False,
        description="The marketplace's forecast of the seller's monthly GMV, RUB (shared with "
        "the seller's consent as part of the application).",
    )
    requested_amount: float | None = Field(default=None, gt=0, le=1_000_000_000, allow_inf_nan=False)


class Term(BaseModel):
    months: int
    annual_rate: float
    monthly_payment: float
    total_cost: float


class Reason(BaseModel):
    """A factor that raised the PD, by name only (no numeric impact)."""

    code: str
    description: str
    party: str


class Decision(BaseModel):
    """The bank's answer. Coarse on purpose: the exact PD and limit stay in the bank's ledger."""

    request_id: str
    kind: Literal["installments", "seller_credit_line"]
    link_id: str
    decision: Literal["approve", "decline", "refer"]
    limit: float | None = Field(
        description="On approve only: the limit, rounded down to the policy's grid (`limit_step`); else null."
    )
    currency: str
    terms: list[Term]
    pd_band: str = Field(
        description="The named band of the probability of default (>= 90 days past due within 12 "
        "months), from the policy's `[pd_bands]`; never the PD itself."
    )
    reasons: list[Reason]
    model_version: str
    decided_at: str
    replayed: bool = Field(description="True when this request id was decided before: the recorded decision.")


class CheckoutRequest(Strict):
    """The shop -> the marketplace node (API key): a buyer asks to pay in installments."""

    request_id: str = RequestId
    user_id: int = Field(ge=0, le=2**62)
    order: Order


class SellerRequest(Strict):
    """The marketplace's seller office -> the marketplace node (API key)."""

    request_id: str = RequestId
    seller_id: int = Field(ge=0, le=2**62)
    requested_amount: float | None = Field(default=None, gt=0, le=1_000_000_000, allow_inf_nan=False)


class BitsRequest(Strict):
    """Bank node -> marketplace node (mutual TLS): go-left bits of many rows, for batch scoring."""

    kind: Literal["customers", "sellers"]
    model_version: str = Version
    link_ids: list[str] = Field(max_length=100_000)


class BitsResponse(BaseModel):
    model_version: str
    found: list[bool]
    bits: list[str]
    forecast_gmv: list[float] | None = Field(
        default=None, description="Sellers: forecast monthly GMV, RUB (part of the credit-line offer)."
    )


class Problem(BaseModel):
    detail: str

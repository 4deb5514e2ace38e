"""The offer endpoints of the decision services, added when a node config has an ``[offers]`` section.

Bank, on its API-key listener (the bank's own channels: CRM, app, call centre):
``GET /v1/clients/{link_id}/offers`` — the client's ranked offers now, and why the other products
were withheld. The marketplace node cannot call it: the answer tells which credit products the
bank would approve, i.e. its view of the client's solvency.

Marketplace, on its mutual-TLS listener (the bank node only): ``POST /v1/offers/bits`` (go-left
bits of the PD model's and the propensity models' marketplace splits, never features) and
``POST /v1/offers/content`` (the personalised part of an offer, asked only for clients the bank
offers it). The transport audits every request and answer of the peer endpoints (``OFFER_MESSAGES``
names them), on both nodes.
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from tandem.decide.api import ERRORS, BankClient, _authenticator
from tandem.decide.scoring import ActiveScorer, PassiveScorer, ScoringError, decode_bits, encode_bits
from tandem.decide.state import ApiClients
from tandem.errors import InputError
from tandem.learn import model_io
from tandem.offers.catalog import load_catalog
from tandem.offers.decision import REASONS, decide
from tandem.offers.models import OffersConfig, load_manifest, load_offers_config
from tandem.offers.quota import ContentQuota
from tandem.offers.schemas import (
    ContentRequest,
    ContentResponse,
    Offer,
    OfferBitsRequest,
    OfferBitsResponse,
    OfferList,
    Withheld,
)
from tandem.offers.sides import BankSide, MarketSide
from tandem.transport.http import Messages, PeerMessage

OFFER_MESSAGES: Messages = {  # the marketplace's offer endpoints for the bank node, as the audit log names them
    "/v1/offers/bits": PeerMessage("offer bits", "model_versions", rows=True),
    "/v1/offers/content": PeerMessage("offer content", "product", suffix="product", rows=True),
}


class _Holder:
    """The current side, rebuilt whole on every feature refresh (``POST /v1/admin/reload`` too, which
    also reads the propensity manifest again) and swapped in."""

    def __init__(self, build):
        self.build = build
        self.side = build()

    def refresh(self) -> None:
        self.side = self.build()


class _Versions:
    """The marketplace's propensity scorers by version: the current manifest's and the previous
    one's, so a bank that has not yet reloaded is still answered."""

    def __init__(self) -> None:
        self.current: dict = {}
        self.previous: dict = {}

    def update(self, scorers: list) -> dict:
        new = {s.version: s for s in scorers}
        if set(new) != set(self.current):
            self.previous = self.current
        self.current = new
        return {**self.previous, **self.current}


def _scorers(ocfg: OffersConfig, role: str):
    catalog = load_catalog(ocfg.catalog)
    manifest = load_manifest(ocfg.models, [p.key for p in catalog.customer_products])
    kind = ActiveScorer if role == "active" else PassiveScorer
    return catalog, [kind(model_io.load(manifest[p.key], role)) for p in catalog.customer_products]


def attach_offers(
    apps: list, config_path: str, cfg, state, store, audit, role: str, policy: dict | None, clients: ApiClients
) -> None:
    """Add the offer endpoints to a node's apps (``[(listen, app, mutual_tls)]``) if its config has an
    ``[offers]`` section; their tables refresh with the service's feature tables."""
    ocfg = load_offers_config(config_path)
    if ocfg is None:
        return
    if role == "active":
        if "customers" not in cfg.models:
            raise InputError(f"{config_path}: [offers] needs [decide] customers_model (the PD of the solvency gate)")
        if policy is None:
            raise ValueError("the bank's offers need the decision policy (load_policy)")

        def build_bank() -> BankSide:
            catalog, scorers = _scorers(ocfg, role)
            return BankSide(store, cfg.as_of, catalog, state.model("customers"), scorers, state.link_table("customers"))

        holder = _Holder(build_bank)
        market = (
            BankClient(
                cfg.peer_address,
                cfg.peer,
                cfg.node.tls,
                audit,
                service="the marketplace's decision service",
                messages=OFFER_MESSAGES,
            )
            if cfg.peer
            else None
        )
        for _listen, app, mutual in apps:
            if not mutual:
                app.include_router(bank_router(holder, market, policy, _authenticator("api_key", clients)))
    else:
        versions = _Versions()

        def build() -> MarketSide:
            catalog, scorers = _scorers(ocfg, role)
            return MarketSide(store, cfg.as_of, catalog, versions.update(scorers), state.link_table("customers"))

        holder = _Holder(build)
        quota = ContentQuota(cfg.peer or "the peer", ocfg.content_daily, cfg.node.state_dir / "offers")
        state.counters["offer_content"] = quota.stats
        for _listen, app, mutual in apps:
            if mutual:
                app.include_router(market_router(holder, state, quota))
    state.on_refresh.append(holder.refresh)


def bank_router(holder: _Holder, market: BankClient | None, policy: dict, who) -> APIRouter:
    router = APIRouter()

    async def ask(path: str, body: dict) -> dict:
        if market is None:
            raise HTTPException(503, "no marketplace configured for this node ([decide] peer)")
        status, data = await market.post(path, body)
        try:
            answer = json.loads(data)
        except ValueError:
            raise HTTPException(502, f"the marketplace sent a malformed answer to {path}") from None
        if status != 200:
            raise HTTPException(502, f"the marketplace's decision service: {answer.get('detail', status)}")
        return answer

    @router.get("/v1/clients/{link_id}/offers", response_model=OfferList, responses=ERRORS)
    async def client_offers(
        link_id: str = PathParam(pattern=r"^[0-9a-f]{32}$", description="The shared client's link id."),
        _who: str = Depends(who),
    ) -> OfferList:
        """The client's next best offers now: products ranked by propensity x value, credit products
        only when the decision policy would approve them, within consent, do-not-disturb and the
        contact limits; personalised content from the marketplace for the products offered."""
        side = holder.side
        i = side.index.get(link_id)
        if i is None:
            raise HTTPException(404, f"unknown link_id {link_id}")
        reply = await ask("/v1/offers/bits", {"model_versions": side.versions, "link_ids": [link_id]})
        if not reply.get("found", [False])[0]:
            raise HTTPException(404, f"link_id {link_id} is not known to the marketplace")
        try:
            bits = [
                decode_bits(reply["bits"][v][0], s.n_bits)
                for v, s in zip(side.versions, [side.pd_scorer, *side.scorers])
            ]
        except (KeyError, IndexError, ScoringError):
            raise HTTPException(502, "the marketplace sent bits that do not fit the models") from None
        pd, propensity = side.score_one(i, bits)
        decisions = decide(
            propensity[None, :], side.clients(np.array([i]), np.array([pd])), side.catalog, side.products, policy
        )
        offers = []
        for j in decisions.offered(0):
            p = side.products[j]
            categories = None
            if p.personalise != "none":
                content = await ask("/v1/offers/content", {"product": p.key, "link_ids": [link_id]})
                categories = content["categories"][0] if content.get("found", [False])[0] else None
                if categories is not None and not set(categories) <= set(side.catalog.categories):
                    raise HTTPException(502, "the marketplace's content is not names from the public category list")
            offers.append(
                Offer(
                    rank=int(decisions.rank[0, j]),
                    product=p.key,
                    name=p.name,
                    credit=p.credit,
                    propensity=float(propensity[j]),
                    value_rub=p.value_rub,
                    expected_value_rub=float(decisions.expected_value[0, j]),
                    limit=None if np.isnan(decisions.limit[0, j]) else float(decisions.limit[0, j]),
                    categories=categories,
                )
            )
        withheld = [
            Withheld(product=p.key, reason=REASONS[decisions.reason[0, j]])
            for j, p in enumerate(side.products)
            if decisions.rank[0, j] == 0
        ]
        slots = max(0, side.catalog.max_offers - int(side.contacts[i]))
        return OfferList(
            link_id=link_id,
            as_of=side.as_of.isoformat(),
            pd=pd,
            pd_model_version=side.pd_scorer.version,
            contact_slots=slots,
            offers=offers,
            withheld=withheld,
        )

    return router


def market_router(holder: _Holder, state, quota: ContentQuota) -> APIRouter:
    router = APIRouter()
    node = _authenticator("mtls", ApiClients(set()))

    @router.post("/v1/offers/bits", response_model=OfferBitsResponse, responses=ERRORS)
    def offer_bits(body: OfferBitsRequest, _who: str = Depends(node)) -> OfferBitsResponse:
        """Go-left bits of the marketplace's splits of several models (the PD model and the propensity
        models) for many rows: federated prediction, never features."""
        side, table = holder.side, state.tables.get("customers")
        default = [v for v in body.model_versions if v not in side.scorers]
        for v in default:
            if state.model("customers", v) is None:
                raise HTTPException(409, f"model version {v} is not loaded here")
        found = [lid in side.features.index and (not default or lid in table.index) for lid in body.link_ids]
        present = [lid for lid, ok in zip(body.link_ids, found) if ok]
        out = {}
        for v in body.model_versions:
            if v in side.scorers:
                bits = side.bits(v, [side.features.index[lid] for lid in present])
            else:
                bits = state.model("customers", v).bits(table.X[[table.index[lid] for lid in present]])
            out[v] = [encode_bits(b) for b in bits]
        return OfferBitsResponse(found=found, bits=out)

    @router.post("/v1/offers/content", response_model=ContentResponse, responses=ERRORS)
    def offer_content(body: ContentRequest, _who: str = Depends(node)) -> ContentResponse:
        """The personalised part of an offer the bank makes to these clients (e.g. the categories a
        cashback card covers, from the catalog's public list)."""
        content = holder.side.content.get(body.product)
        if content is None:
            raise HTTPException(404, f"product {body.product} has no personalised content in this catalog")
        found = [lid in content for lid in body.link_ids]
        try:
            wait = quota.admit(body.product, [lid for lid, ok in zip(body.link_ids, found) if ok])
        except OSError:
            raise HTTPException(503, "the reveal could not be recorded; try again") from None
        if wait is not None:
            detail = "over the agreed daily volume of offer content; try again later"
            raise HTTPException(429, detail, headers={"Retry-After": str(int(wait))})
        return ContentResponse(found=found, categories=[content[lid] for lid in body.link_ids if lid in content])

    return router

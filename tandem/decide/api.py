"""The decision services (FastAPI): the bank's decisions and the marketplace's gateway.

Each service runs on two listeners: mutual TLS for the other node, and TLS with an API key
(``X-API-Key``) for other clients; ``bank_app(..., auth=...)`` and ``market_app(..., auth=...)``
build a party's app for one of them. The peer listener's guard (``transport.http_server.PeerGuard``)
admits only the configured peer node and audits every request and answer; calls to the other node
go through ``transport.http_client.PeerHttpClient``, which audits them too.
Errors are 4xx with one ``detail`` line and no exception text: unknown link id 404, model version
not loaded or request id reused 409, malformed input 422, no credentials 401, an admin route
without the operators' key 403, over the API key's rate limit or the peer's quota 429 (with
``Retry-After``).

The bank answers coarsely (``Decision``: the limit on a grid and only on approve, a PD band, reasons
by name) and keeps the exact PD and limit in its ledger; a link id is evaluated once per window
and the peer is held to its quotas (``tandem.decide.quotas``). ``/v1/admin/*`` answers only the
node's operators: ``X-Admin-Key`` (``[decide] admin_keys``) on the API-key listener, never the peer.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from tandem import protocol_versions as versions
from tandem.decide import policy as rules
from tandem.decide.ledger import Ledger, ReusedRequestId, request_hash
from tandem.decide.newlinks import PATH as NEW_LINK_PATH
from tandem.decide.newlinks import NewLinks, attach_bank_route
from tandem.decide.quotas import PeerQuota, Window
from tandem.decide.schemas import (
    BitsRequest,
    BitsResponse,
    CheckoutRequest,
    Decision,
    InstallmentRequest,
    Problem,
    SellerCreditRequest,
    SellerRequest,
)
from tandem.decide.scoring import ScoringError, decode_bits, encode_bits
from tandem.decide.state import KINDS, ApiClients, ServiceState
from tandem.errors import TandemError
from tandem.transport.http import Messages, PeerMessage
from tandem.transport.http_client import PeerHttpClient

PROTOCOL = versions.DECIDE
MESSAGES: Messages = {  # the decision services' peer endpoints, as the audit log names them
    "/v1/checkout/installments": PeerMessage("customers decision", "request_id"),
    "/v1/sellers/credit-line": PeerMessage("sellers decision", "request_id"),
    "/v1/bits": PeerMessage("bits", "model_version", rows=True),
    # a new record's blinded value on one key, linked at checkout (tandem.decide.newlinks)
    NEW_LINK_PATH: PeerMessage("new record link", "request_id", suffix="key", rows=True, items="points"),
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (401, 403, 404, 409, 422, 429, 502, 503)
}
Auth = Literal["mtls", "api_key"]
ANSWERED = ("request_id", "kind", "link_id", "decision", "currency", "terms", "pd_band", "reasons", "model_version")


class Guards:
    """The bank's harvesting guards, shared by its listeners: the per-link-id ``window`` and the peer's
    ``quota`` (see ``tandem.decide.quotas``)."""

    def __init__(self, window: Window | None = None, quota: PeerQuota | None = None):
        self.window = Window(0) if window is None else window
        self.quota = PeerQuota("peer", 0, 0) if quota is None else quota

    def stats(self) -> dict:
        return {"peer": self.quota.stats(), "window": {"link_ids": len(self.window), "hits": self.window.hits}}


def _operator(auth: Auth, admins: ApiClients | None):
    async def check(request: Request) -> str:
        key = request.headers.get("x-admin-key", "")
        if auth == "mtls" or admins is None or admins.admit(key) is not None:
            raise HTTPException(403, "admin routes answer this node's operators only (X-Admin-Key, API listener)")
        return "operator"

    return check


def _authenticator(auth: Auth, clients: ApiClients):
    async def check(request: Request) -> str:  # async: FastAPI runs it on the loop, not in a thread
        if auth == "mtls":
            return "node"  # PeerGuard admitted only the configured peer's certificate
        verdict = clients.admit(request.headers.get("x-api-key", ""))
        if isinstance(verdict, str):  # "unknown"
            raise HTTPException(401, "missing or unknown API key (X-API-Key)")
        if verdict is not None:
            raise HTTPException(
                429,
                f"more than {clients.rate:g} requests per second for this API key",
                headers={"Retry-After": str(max(1, math.ceil(verdict)))},
            )
        return "client"

    return check


def _app(
    title: str, auth: Auth, clients: ApiClients, state: ServiceState, admins: ApiClients | None, stats=None
) -> FastAPI:
    app = FastAPI(title=title, version="1", responses=ERRORS)
    operator = _operator(auth, admins)

    @app.exception_handler(HTTPException)
    async def problem(_request, exc: HTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/v1/health")
    def health(_who: str = Depends(_authenticator(auth, clients))) -> dict:
        return {
            "status": "ok",
            "models": {e: list(v) for e, v in state.models.items()},
            "current": state.current,
            "rows": {e: len(t) for e, t in state.tables.items()},
        }

    @app.get("/v1/admin/stats")
    def admin_stats(_who: str = Depends(operator)) -> dict:
        """The harvesting guards' counters (quota refusals, window hits), for the node's operators."""
        return {**(stats() if stats else {}), **{name: count() for name, count in state.counters.items()}}

    @app.post("/v1/admin/reload")
    def reload(_who: str = Depends(operator)) -> dict:
        """Load the model files again (a new version goes live; the previous one is still answered)
        and rebuild the feature tables."""
        try:
            versions = state.reload()
            state.refresh()
        except Exception as exc:  # noqa: BLE001 - a bad file must not take the service down
            print(f"reload failed: {exc}", file=sys.stderr, flush=True)  # the operator's log, not the caller's
            raise HTTPException(409, "reload failed, still serving the loaded models") from None
        return {"models": versions, "current": state.current, "link_versions": state.link_versions}

    return app


def bank_app(
    state: ServiceState,
    ledger: Ledger,
    policy: dict,
    auth: Auth,
    clients: ApiClients | None = None,
    guards: Guards | None = None,
    admins: ApiClients | None = None,
    links: NewLinks | None = None,
) -> FastAPI:
    """The bank's decision service (the label holder's part of the models, its features, the ledger).
    ``clients``: who may call the API-key listener (none given: nobody); ``guards``: the window and the
    peer's quota (shared by both listeners; the quota holds on the mutual-TLS one); ``admins``: the
    operators' keys (none: no admin route answers); ``links``: new records linked at checkout (the
    peer's ``POST /v1/link/new``, on the mutual-TLS listener only)."""
    clients = clients or ApiClients(set())
    guards = guards or Guards()
    app = _app("Tandem bank decisions", auth, clients, state, admins, guards.stats)
    who = _authenticator(auth, clients)
    window, quota = guards.window, guards.quota
    if links is not None and auth == "mtls":
        attach_bank_route(app, links, who)

    def checked(entity: str, link_id: str, version: str, bits_text: str):
        """The request's inputs, checked whether or not the window answers it: ``scorer, x, extras, bits``."""
        scorer = state.model(entity, version)
        if scorer is None:
            raise HTTPException(
                409, f"model version {version} is not loaded here (current: {state.current.get(entity, 'none')})"
            )
        table = state.tables[entity]
        found = table.row(link_id)
        if found is None:
            raise HTTPException(404, f"unknown link_id {link_id}")
        try:
            bits = decode_bits(bits_text, scorer.n_bits)
        except ScoringError as exc:
            raise HTTPException(422, str(exc)) from None
        x, extras = found
        return scorer, x, extras, bits

    async def decided(body, entity: str, decide) -> Response:
        """The decision (``Decision`` schema), recorded before it is answered."""
        if auth == "mtls":
            over = quota.admit()
            if over is not None:
                which, wait = over
                raise HTTPException(
                    429,
                    f"over this peer's quota of decision requests {which.replace('_', ' ')}",
                    headers={"Retry-After": str(int(wait))},
                )
        try:
            record, replayed = await ledger.record(
                body.request_id, request_hash({"kind": entity, **body.model_dump()}), decide
            )
        except ReusedRequestId as exc:
            raise HTTPException(409, str(exc)) from None
        except OSError as exc:  # the journal could not take it: nothing was decided for good
            print(f"ledger write failed: {exc}", file=sys.stderr, flush=True)  # the operator's log
            raise HTTPException(503, "the decision could not be recorded; try again") from None
        out = json.dumps({**answer(record), "replayed": replayed}).encode()
        return Response(out, media_type="application/json")

    def answer(record: dict) -> dict:
        """What the marketplace hears of a recorded decision: the limit only on approve and on the grid."""
        out = {k: record.get(k) for k in ANSWERED}
        if "offered" not in record:  # recorded before answers were coarse: what was said then, less the PD
            out["pd_band"] = rules.pd_grade(record["pd"], policy)
            out["reasons"] = [{k: v for k, v in r.items() if k != "impact"} for r in record["reasons"]]
        out["limit"] = record.get("offered", record["limit"]) if record["decision"] == "approve" else None
        out["decided_at"] = record["decided_at"]
        return out

    def evaluate(body, entity: str, fresh, again) -> dict:
        """The ledger's record of a decision: from the link id's evaluation within the window, else from
        ``fresh(scorer, x, extras, bits)`` -> ``(scorer version, pd, outcome)``; the exact PD and limit are
        for the ledger only. The inputs are checked either way (409, 404, 422 as without a window)."""
        inputs = checked(entity, body.link_id, body.model_version, body.marketplace_bits)
        key = (KINDS[entity], body.link_id)
        seen = window.get(key)
        if seen is None:
            version, pd, outcome = fresh(*inputs)
            band = rules.pd_grade(pd, policy)
            window.put(key, outcome, pd, band, version, datetime.now().timestamp())
        else:
            version, pd, band, outcome = seen.model_version, seen.pd, seen.band, again(seen.outcome)
        currency = body.order.currency if entity == "customers" else policy["sellers"]["currency"]
        return {
            "request_id": body.request_id,
            "kind": KINDS[entity],
            "link_id": body.link_id,
            "decision": outcome.decision,
            "currency": currency,
            "terms": outcome.terms,
            "pd_band": band,
            "reasons": outcome.reasons,
            "model_version": version,
            "pd": pd,
            "limit": outcome.limit,
            "offered": outcome.offered,
            "zone": outcome.zone,
            "fresh": seen is None,
        }

    @app.post("/v1/checkout/installments", response_model=Decision)
    async def installments(body: InstallmentRequest, _who: str = Depends(who)) -> Response:
        """Decide a buyer's installment request at checkout: approve (with the limit, on the policy's grid),
        decline or refer, terms with prices, the PD band and the factors that raised it."""

        def fresh(scorer, x, extras, bits):
            pd, contributions = scorer.score(x, bits)
            outcome = rules.installments(
                pd,
                body.order.amount,
                extras["income_median"],
                extras["debt_service"],
                contributions,
                policy,
                scorer.parties,
            )
            return scorer.version, pd, outcome

        def decide() -> dict:
            again = lambda recorded: rules.installments_again(recorded, body.order.amount, policy)  # noqa: E731
            return evaluate(body, "customers", fresh, again)

        return await decided(body, "customers", decide)

    @app.post("/v1/sellers/credit-line", response_model=Decision)
    async def credit_line(body: SellerCreditRequest, _who: str = Depends(who)) -> Response:
        """Decide a seller's working-capital credit line from the joint seller model and the forecast GMV."""

        def fresh(scorer, x, extras, bits):
            pd, contributions = scorer.score(x, bits)
            outcome = rules.seller_credit_line(
                pd,
                body.forecast_gmv,
                extras["business_debt"],
                body.requested_amount,
                contributions,
                policy,
                scorer.parties,
            )
            return scorer.version, pd, outcome

        def decide() -> dict:
            again = lambda recorded: rules.seller_credit_line_again(recorded, body.requested_amount, policy)  # noqa: E731
            return evaluate(body, "sellers", fresh, again)

        return await decided(body, "sellers", decide)

    return app


class BankClient:
    """The marketplace node's client of the bank's decision service (the bank's offers use it the other
    way round, as a client of the marketplace's: ``service`` names it); a peer that cannot be reached
    is a 502 whose detail names the service only."""

    def __init__(
        self,
        address: str,
        peer: str,
        tls,
        audit,
        timeout_s: float = 5.0,
        service: str = "the bank's decision service",
        messages: Messages | None = None,
    ):
        self.service = service
        self.http = PeerHttpClient(address, peer, tls, audit, messages or MESSAGES, PROTOCOL, timeout_s=timeout_s)

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        try:
            return await self.http.post(path, body)
        except TandemError as exc:
            print(f"{self.service}: {exc}", file=sys.stderr, flush=True)  # the operator's log
            raise HTTPException(502, f"{self.service} is unavailable") from None


def forecast_gmv(recent_3m: float | None, trend: float | None) -> float:
    """A seller's monthly GMV three months ahead (RUB): the recent level grown by its monthly log-trend."""
    return round(min((recent_3m or 0.0) * float(np.exp(3 * (trend or 0.0))), 1e10), 2)


def market_app(
    state: ServiceState,
    bank: BankClient | None,
    auth: Auth,
    clients: ApiClients | None = None,
    admins: ApiClients | None = None,
    links: NewLinks | None = None,
) -> FastAPI:
    """The marketplace's gateway: turns a checkout (by its own user id) into a bank request that holds
    only the link id, the order and its go-left bits. ``admins``: the operators' keys; ``links``: a
    buyer or seller not in the link table is linked on the fly from the kept incremental state."""
    clients = clients or ApiClients(set())
    app = _app("Tandem marketplace gateway", auth, clients, state, admins)
    who = _authenticator(auth, clients)

    async def linked(entity: str, local_id: int, request_id: str) -> None:
        """Link a record unknown to the link table now, if this node keeps the state to (else the 404 of
        ``bits_for``, or one saying what to do)."""
        if links is not None and bank is not None and local_id not in state.tables[entity].by_local:
            await links.link(entity, local_id, request_id, bank)

    def bits_for(entity: str, local_id: int) -> tuple[str, str, np.ndarray, dict]:
        table = state.tables[entity]
        link_id = table.by_local.get(local_id)
        found = None if link_id is None else table.row(link_id)
        if link_id is None or found is None:
            raise HTTPException(
                404,
                f"{'user' if entity == 'customers' else 'seller'} {local_id} is not a customer shared with the bank",
            )
        x, extras = found
        scorer = state.model(entity)
        return link_id, scorer.version, scorer.row_bits(x), extras

    async def ask_bank(path: str, payload: dict) -> Response:
        """The bank's decision, passed through as it came (the bank validated it)."""
        if bank is None:
            raise HTTPException(503, "no bank configured for this node")
        status, reply = await bank.post(path, payload)
        if status != 200:
            try:
                detail = json.loads(reply).get("detail", "")
            except ValueError:
                detail = "malformed answer"
            retry = {"Retry-After": "1"} if status == 429 else None  # the bank's quota for this node
            raise HTTPException(status if status in (404, 409, 422, 429) else 502, f"bank: {detail}", headers=retry)
        return Response(reply, media_type="application/json")

    if auth == "api_key":

        @app.post("/v1/checkout", response_model=Decision)
        async def checkout(body: CheckoutRequest, _who: str = Depends(who)) -> Response:
            """A buyer asks to pay in installments: the bank decides with both sides' knowledge. A buyer
            registered since the last link run is linked first, in the same request."""
            await linked("customers", body.user_id, body.request_id)
            link_id, version, bits, _ = bits_for("customers", body.user_id)
            return await ask_bank(
                "/v1/checkout/installments",
                {
                    "request_id": body.request_id,
                    "link_id": link_id,
                    "model_version": version,
                    "order": body.order.model_dump(),
                    "marketplace_bits": encode_bits(bits),
                },
            )

        @app.post("/v1/sellers/credit-line", response_model=Decision)
        async def seller(body: SellerRequest, _who: str = Depends(who)) -> Response:
            """A seller asks for working capital; the forecast monthly GMV goes with the application."""
            await linked("sellers", body.seller_id, body.request_id)
            link_id, version, bits, extras = bits_for("sellers", body.seller_id)
            gmv = forecast_gmv(extras["gmv_recent_3m"], extras["gmv_trend"])
            return await ask_bank(
                "/v1/sellers/credit-line",
                {
                    "request_id": body.request_id,
                    "link_id": link_id,
                    "model_version": version,
                    "marketplace_bits": encode_bits(bits),
                    "forecast_gmv": gmv,
                    "requested_amount": body.requested_amount,
                },
            )
    else:

        @app.post("/v1/bits", response_model=BitsResponse)
        def batch_bits(body: BitsRequest, _who: str = Depends(who)) -> BitsResponse:
            """Go-left bits of many rows for the current model (federated batch prediction)."""
            scorer = state.model(body.kind, body.model_version)
            if scorer is None:
                raise HTTPException(409, f"model version {body.model_version} is not loaded here")
            table = state.tables[body.kind]
            found = [lid in table.index for lid in body.link_ids]
            rows = [table.index[lid] for lid in body.link_ids if lid in table.index]
            bits = scorer.bits(table.X[rows]) if rows else np.zeros((0, len(scorer.split_ids)), bool)
            gmv = None
            if body.kind == "sellers":
                g, t = (table.extras[n][rows] for n in ("gmv_recent_3m", "gmv_trend"))
                gmv = [forecast_gmv(None if np.isnan(a) else a, None if np.isnan(b) else b) for a, b in zip(g, t)]
            return BitsResponse(
                model_version=scorer.version, found=found, bits=[encode_bits(b) for b in bits], forecast_gmv=gmv
            )

    return app

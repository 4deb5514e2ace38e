"""``tandem serve``: a party's decision service on its two listeners (uvicorn, TLS), until stopped.

The bank's service (the label holder's model part) decides; the marketplace's service is
the gateway its shop calls. Node to node: mutual TLS with the node certificates; other
clients: TLS with an API key. A JSON ``ready`` line is printed once both listen.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from tandem.decide.api import MESSAGES, PROTOCOL, BankClient, Guards, bank_app, market_app
from tandem.decide.ledger import Ledger
from tandem.decide.newlinks import NewLinks
from tandem.decide.policy import load_policy
from tandem.decide.quotas import PeerQuota, Window
from tandem.decide.scorers import load_plugins, load_scorer, role_of
from tandem.decide.state import ApiClients, ServiceState, load_decide_config, read_api_keys
from tandem.store import open_store
from tandem.transport.http_server import HttpServers
from tandem.transport.session import open_audit


def build(config_path: str):
    """The service's listeners and resources: ``HttpServers, cfg, state, ledger`` (``None`` on the passive
    side)."""
    cfg = load_decide_config(config_path)
    node = cfg.node
    load_plugins(cfg.scorers)
    role = role_of(load_scorer(next(iter(cfg.models.values())), None))
    store = open_store(node.store, read_only=role == "passive")
    audit = open_audit(node, sync_each=False)
    clients = ApiClients(read_api_keys(cfg.api_keys), cfg.rate_limit)
    admins = ApiClients(read_api_keys(cfg.admin_keys)) if cfg.admin_keys else None
    state = ServiceState(cfg, store, role)
    links = NewLinks(state, cfg.peer)
    ledger = policy = None
    if role == "active":
        ledger, policy = Ledger(node.store, node.state_dir / "ledger"), load_policy(cfg.policy)
        guards = _guards(cfg, ledger)
        apps = [(cfg.listen, bank_app(state, ledger, policy, "mtls", guards=guards, links=links), True)]
        if cfg.api_listen:
            apps.append(
                (cfg.api_listen, bank_app(state, ledger, policy, "api_key", clients, guards, admins, links), False)
            )
    else:
        # a config with a peer always has its address (load_decide_config checks)
        bank = (
            BankClient(cfg.peer_address, cfg.peer, node.tls, audit)
            if cfg.peer and cfg.peer_address is not None
            else None
        )
        apps = [(cfg.listen, market_app(state, bank, "mtls", links=links), True)]
        if cfg.api_listen:
            apps.append((cfg.api_listen, market_app(state, bank, "api_key", clients, admins, links), False))
    from tandem.offers.service import OFFER_MESSAGES, attach_offers

    attach_offers(apps, config_path, cfg, state, store, audit, role, policy, clients)
    servers = HttpServers(
        apps,
        node.tls,
        peer=cfg.peer,
        audit=audit,
        messages={**MESSAGES, **OFFER_MESSAGES},
        protocol=PROTOCOL,
        where=str(node.path),
    )
    return servers, cfg, state, ledger


def _guards(cfg, ledger: Ledger) -> Guards:
    """The window (holding the evaluations the ledger recorded within it, so a restart opens no second
    evaluation) and the peer's quota, from the ``[decide]`` config."""
    window = Window(cfg.guard("window_s"))
    if window.seconds > 0:
        for kind, link_id, outcome, pd, band, version, at in ledger.evaluations_since(window.seconds):
            window.put((kind, link_id), outcome, pd, band, version, at)
    return Guards(window, PeerQuota(cfg.peer or "peer", cfg.guard("peer_rate"), cfg.peer_daily))


async def _serve(servers: HttpServers, cfg) -> None:
    # Each uvicorn server takes SIGTERM/SIGINT while it runs and, once stopped, hands the signal on to the
    # handler it found: ours, installed first, stops them all and lets the process close the ledger,
    # where the default handler would kill it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, servers.stop)
    await servers.serve(
        lambda: print(json.dumps({"event": "ready", "node": cfg.node.name, "listen": servers.listen}), flush=True)
    )


def serve(config_path: str) -> None:
    servers, cfg, _state, ledger = build(config_path)
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the service: keep it out of every collection
    run: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        run(_serve(servers, cfg))
    finally:
        if ledger is not None:
            ledger.close()  # the journal's last decisions into the store
    sys.stdout.flush()

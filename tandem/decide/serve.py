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
import ssl
import sys

from tandem.audit import AuditLog
from tandem.decide.api import BankClient, bank_app, market_app
from tandem.decide.ledger import Ledger
from tandem.decide.policy import load_policy
from tandem.decide.scorers import load_plugins, load_scorer
from tandem.decide.scoring import PassiveScorer
from tandem.decide.state import ApiClients, ServiceState, load_decide_config, read_api_keys
from tandem.errors import InputError
from tandem.store import open_store


def _host_port(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"{where} must look like host:port, got '{text}'")
    return host, int(port)


def build(config_path: str):
    """The service's apps and resources: ``[(listen, app, mutual_tls)], cfg, state, ledger`` (``None`` on
    the passive side)."""
    cfg = load_decide_config(config_path)
    node = cfg.node
    load_plugins(cfg.scorers)
    role = "passive" if isinstance(load_scorer(next(iter(cfg.models.values())), None), PassiveScorer) else "active"
    store = open_store(node.store, read_only=role == "passive")
    audit = AuditLog(node.audit_path, node.name, sync_each=False)
    clients = ApiClients(read_api_keys(cfg.api_keys), cfg.rate_limit)
    state = ServiceState(cfg, store, role)
    ledger = policy = None
    if role == "active":
        ledger, policy = Ledger(node.store, node.state_dir / "ledger"), load_policy(cfg.policy)
        apps = [(cfg.listen, bank_app(state, ledger, policy, audit, "mtls"), True)]
        if cfg.api_listen:
            apps.append((cfg.api_listen, bank_app(state, ledger, policy, audit, "api_key", clients), False))
    else:
        bank = BankClient(cfg.peer_address, cfg.peer, node.tls, audit) if cfg.peer else None
        apps = [(cfg.listen, market_app(state, bank, audit, "mtls"), True)]
        if cfg.api_listen:
            apps.append((cfg.api_listen, market_app(state, bank, audit, "api_key", clients), False))
    from tandem.offers.service import attach_offers

    attach_offers(apps, config_path, cfg, state, store, audit, role, policy, clients)
    return apps, cfg, state, ledger


async def _serve(apps, cfg) -> None:
    import uvicorn

    tls = cfg.node.tls
    servers = []
    for listen, app, mutual in apps:
        host, port = _host_port(listen, f"{cfg.node.path}: [decide] listen")
        servers.append(uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key), ssl_ca_certs=str(tls.ca),
            ssl_cert_reqs=ssl.CERT_REQUIRED if mutual else ssl.CERT_NONE, log_level="warning", access_log=False,
            lifespan="off", loop="asyncio", http="httptools")))
    def stop_all(*_):
        for s in servers:
            s.should_exit = True
    # Each uvicorn server takes SIGTERM/SIGINT while it runs and, once stopped, hands the signal on to the
    # handler it found: ours, installed first, stops them all and lets the process close the ledger,
    # where the default handler would kill it.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_all)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.05)
    if not all(s.started for s in servers):
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        raise InputError(f"{cfg.node.path}: cannot listen on {', '.join(a[0] for a in apps)} (address in use?)")
    print(json.dumps({"event": "ready", "node": cfg.node.name, "listen": [a[0] for a in apps]}), flush=True)
    await asyncio.gather(*tasks)


def serve(config_path: str) -> None:
    apps, cfg, _state, ledger = build(config_path)
    gc.collect()
    gc.freeze()            # what start-up built lives as long as the service: keep it out of every collection
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        run(_serve(apps, cfg))
    finally:
        if ledger is not None:
            ledger.close()         # the journal's last decisions into the store
    sys.stdout.flush()

"""Attacks on the bank's decision service by a curious or dishonest marketplace (issue 13, items 1-3).

The real bank app (``bank_app``: FastAPI, the trained federated model, the real ledger on the bank's
DuckDB store) on a small linked world, called the way each listener is: the mutual-TLS app answers the
peer (its guard admitted the marketplace's certificate), the API-key app the bank's own clients.
The attacker knows the public policy (``policy.toml``) and sends the bits and amounts it likes.
"""

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_decide import ARGS

from tandem.decide import policy as rules
from tandem.decide.api import Guards, bank_app
from tandem.decide.ledger import Ledger
from tandem.decide.local import train_models, write_decide_configs
from tandem.decide.quotas import PeerQuota, Window
from tandem.decide.scoring import encode_bits
from tandem.decide.state import ApiClients, ServiceState, key_hash, load_decide_config
from tandem.link.local import link_world
from tandem.store import open_store

POLICY = rules.load_policy()
P = POLICY["installments"]
ADMIN, SHOP = "operator-key-0123456789", "shop-key-0123456789"


@pytest.fixture(scope="module")
def bank(small_world, tmp_path_factory):
    world = tmp_path_factory.mktemp("attacks-decide") / "world"
    shutil.copytree(small_world, world)
    link_world(world, entities=["customers"], count_only=False)
    # 8 trees: with 3 the marketplace's features sometimes hardly entered the model (the link ids, and so the
    # training rows, differ per run), leaving no customer whose PD its bits move
    models = train_models(world, ["customers"], args={**ARGS, "trees": 8, "max_depth": 3})
    paths, _key = write_decide_configs(world, models)
    cfg = load_decide_config(paths["bank"])
    store = open_store(cfg.node.store)
    state = ServiceState(cfg, store, "active")
    ledger = Ledger(cfg.node.store, cfg.node.state_dir / "ledger")
    yield {"state": state, "ledger": ledger, "store": store, "model": models["customers"]["model_path"]}
    ledger.close()
    store.close()


@pytest.fixture(scope="module")
def target(bank):
    return _target(bank["state"])


def _target(state) -> tuple[str, float, float, str, str]:
    """A customer and two bit strings the marketplace may send (its own free input) that give two
    different PDs, both approved, with a limit the formula gives uncapped: the attacker's best case."""
    scorer, table = state.model("customers"), state.tables["customers"]
    rng = np.random.default_rng(5)
    candidates = [rng.random(scorer.n_bits) < 0.5 for _ in range(24)]
    best = None
    for lid in table.link_ids[:600]:
        x, extras = table.row(lid)
        income, debt = extras["income_median"], extras["debt_service"]
        if not income or not debt:
            continue
        scored = []
        for bits in candidates:
            pd = scorer.score(x, bits)[0]
            limit = rules.installments(pd, 1000.0, income, debt, {}, POLICY, []).limit
            if pd < P["pd_approve"] and 2 * P["min_limit"] < limit < P["max_limit"]:
                scored.append((pd, bits))
        if len(scored) >= 2:
            (lo, b1), (hi, b2) = min(scored, key=lambda t: t[0]), max(scored, key=lambda t: t[0])
            if best is None or hi - lo > best[0]:
                best = (hi - lo, lid, income, debt, encode_bits(b1), encode_bits(b2))
    assert best is not None and best[0] > 1e-4, "no customer whose PD the marketplace's bits move"
    return best[1:]


def _ask(client, rid: str, lid: str, version: str, bits: str, amount: float = 1000.0):
    return client.post("/v1/checkout/installments", json={
        "request_id": rid, "link_id": lid, "model_version": version, "marketplace_bits": bits,
        "order": {"amount": amount, "currency": "RUB"}})


def _recorded(bank, rids: list[str]) -> dict[str, tuple[float, float]]:
    """What the old answer carried, as the bank's ledger keeps it: request id -> (PD, exact limit)."""
    bank["ledger"].backend.copy()  # the journal into the table
    names = ", ".join(f"'{r}'" for r in rids)
    found = bank["store"].query(f"SELECT request_id, pd, limit_amount FROM decisions WHERE request_id IN ({names})")
    return {r: (p, limit) for r, p, limit in zip(*(found.column(c).to_pylist() for c in found.column_names))}


def _solve(pd1, l1, pd2, l2) -> tuple[float, float]:
    """The attacker's algebra on the public formula: limit = income x m x (1 - pd / cut) - d x debt."""
    a1, a2 = (P["income_months"] * (1 - p / P["pd_decline"]) for p in (pd1, pd2))
    income = (l1 - l2) / (a1 - a2)
    return income, (a1 * income - l1) / P["debt_months"]


def test_two_requests_with_other_bits_no_longer_solve_for_income_and_debt(bank, target):
    state = bank["state"]
    version = state.current["customers"]
    lid, income, debt, bits1, bits2 = target

    # Without the window (window_s = 0) each request is a fresh evaluation: what the old answer said
    # (the exact PD and limit, which the ledger keeps) solves the two equations to the cent.
    with TestClient(bank_app(state, bank["ledger"], POLICY, "mtls", guards=Guards(Window(0)))) as peer:
        a1, a2 = (_ask(peer, f"atk-fresh-{i}", lid, version, b).json() for i, b in enumerate((bits1, bits2)))
    old = _recorded(bank, ["atk-fresh-0", "atk-fresh-1"])
    (pd1, l1), (pd2, l2) = old["atk-fresh-0"], old["atk-fresh-1"]
    got_income, got_debt = _solve(pd1, l1, pd2, l2)
    assert abs(got_income - income) < 1 and abs(got_debt - debt) < 1           # the old shape: recovered

    # The new answer: a band, the limit on the grid (on approve only), reasons by name.
    for a in (a1, a2):
        assert a["decision"] == "approve" and "pd" not in a and a["pd_band"] in POLICY["pd_bands"]
        assert (a["limit"] - P["min_limit"]) % P["limit_step"] == 0
        assert all(set(r) == {"code", "description", "party"} for r in a["reasons"])
    assert json.dumps(a1).count(str(round(l1, 2))) == 0
    # Even granting the attacker both exact PDs, every income in an interval of width
    # 2 x limit_step / |a1 - a2| (a = income_months x (1 - pd / pd_decline)) gives these same answers.
    k1, k2 = (P["income_months"] * (1 - p / P["pd_decline"]) for p in (pd1, pd2))
    s, m1, m2 = P["limit_step"], a1["limit"], a2["limit"]
    lo, hi = sorted(((m1 - m2 - s) / (k1 - k2), (m1 + s - m2) / (k1 - k2)))
    assert lo < income < hi and hi - lo >= 2 * s / abs(k1 - k2) - 1e-6
    twins = []                                  # incomes the attacker cannot tell apart from the true one
    for other in np.linspace(lo, hi, 201)[1:-1]:
        # a debt service (>= 0) that keeps both exact limits in the grid cells answered, if one exists
        dlo = max(0.0, *((k * other - m - s) / P["debt_months"] for k, m in ((k1, m1), (k2, m2))))
        dhi = min((k * other - m) / P["debt_months"] for k, m in ((k1, m1), (k2, m2)))
        if dlo >= dhi:
            continue
        answers = [rules.installments(pd, 1000.0, other, (dlo + dhi) / 2, {}, POLICY, []) for pd in (pd1, pd2)]
        if [(t.decision, t.offered) for t in answers] == [(a["decision"], a["limit"]) for a in (a1, a2)]:
            twins.append(other)
    bound = 2 * s * P["pd_decline"] / (P["income_months"] * P["pd_approve"])          # 8,333 RUB a month
    assert max(twins) - min(twins) >= bound, (min(twins), max(twins), income)

    # With the window (the default): the second request id for the link id, other bits, is answered
    # from the first evaluation: one equation in two unknowns, nothing to solve.
    with TestClient(bank_app(state, bank["ledger"], POLICY, "mtls", guards=Guards(Window(86400)))) as peer:
        w1, w2 = (_ask(peer, f"atk-window-{i}", lid, version, b).json() for i, b in enumerate((bits1, bits2)))
    same = ("decision", "limit", "pd_band", "reasons", "terms", "model_version")
    assert {k: w1[k] for k in same} == {k: w2[k] for k in same} and not w2["replayed"]
    rec = _recorded(bank, ["atk-window-0", "atk-window-1"])
    assert rec["atk-window-0"] == rec["atk-window-1"]                    # no second evaluation was made


def test_the_window_answers_a_new_amount_from_the_recorded_band_and_grid_limit_only(bank, target):
    state = bank["state"]
    version = state.current["customers"]
    lid, _income, _debt, bits1, bits2 = target
    guards = Guards(Window(86400))
    with TestClient(bank_app(state, bank["ledger"], POLICY, "mtls", guards=guards)) as peer:
        first = _ask(peer, "win-amount-0", lid, version, bits1).json()
        shown = first["limit"]
        over = _ask(peer, "win-amount-1", lid, version, bits2, amount=shown + 0.01).json()
        at = _ask(peer, "win-amount-2", lid, version, bits2, amount=shown).json()
        assert _ask(peer, "win-amount-3", lid, version, "!!").status_code == 422      # inputs still checked
    assert first["decision"] == "approve" and over["decision"] == "refer" and at["decision"] == "approve"
    assert over["pd_band"] == at["pd_band"] == first["pd_band"] and at["model_version"] == version
    assert over["limit"] is None and at["limit"] == shown                 # the limit only on approve
    assert guards.window.hits == 2 and len(guards.window) == 1
    # A restarted service reloads the window from the ledger: still no second evaluation.
    bank["ledger"].backend.copy()  # the journal into the table
    reloaded = Window(86400)
    for kind, link, outcome, pd, band, v, at_s in bank["ledger"].evaluations_since(86400):
        reloaded.put((kind, link), outcome, pd, band, v, at_s)
    assert reloaded.get(("installments", lid)).outcome.offered == shown


def test_a_peer_over_its_quota_is_refused_with_retry_after_and_counted(bank, capfd):
    state = bank["state"]
    version = state.current["customers"]
    lid = state.tables["customers"].link_ids[0]
    bits = encode_bits(np.zeros(state.model("customers").n_bits, bool))
    guards = Guards(Window(86400), PeerQuota("market", rate=1000, daily=5))
    with TestClient(bank_app(state, bank["ledger"], POLICY, "mtls", guards=guards)) as peer:
        codes = [_ask(peer, f"quota-{i:04d}", lid, version, bits).status_code for i in range(8)]
        refused = _ask(peer, "quota-last", lid, version, bits)
    assert codes == [200] * 5 + [429] * 3
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "quota" in refused.json()["detail"]
    assert guards.stats()["peer"]["refused"] == {"per_second": 0, "per_day": 4}
    assert capfd.readouterr().err.count("over its quota") == 1            # one log line per episode
    quick = PeerQuota("market", rate=3, daily=0)
    assert [quick.admit(now=10.0) for _ in range(4)][3] == ("per_second", 1.0)


def test_admin_routes_answer_the_operators_key_only_and_hide_exception_text(bank):
    state, ledger = bank["state"], bank["ledger"]
    clients, admins = ApiClients({key_hash(SHOP)}), ApiClients({key_hash(ADMIN)})
    with TestClient(bank_app(state, ledger, POLICY, "mtls", clients, Guards(), admins)) as peer:
        for headers in ({}, {"X-Admin-Key": ADMIN}):                       # the peer's certificate: never
            assert peer.post("/v1/admin/reload", headers=headers).status_code == 403
            assert peer.get("/v1/admin/stats", headers=headers).status_code == 403
    with TestClient(bank_app(state, ledger, POLICY, "api_key", clients, Guards(), admins)) as api:
        for headers in ({"X-API-Key": SHOP}, {"X-API-Key": SHOP, "X-Admin-Key": SHOP}):   # a shop key: never
            assert api.post("/v1/admin/reload", headers=headers).status_code == 403
        assert api.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN}).status_code == 200
        assert "peer" in api.get("/v1/admin/stats", headers={"X-Admin-Key": ADMIN}).json()
        model = bank["model"]
        good = open(model).read()
        try:
            with open(model, "w") as f:
                f.write("{not json")
            failed = api.post("/v1/admin/reload", headers={"X-Admin-Key": ADMIN})
        finally:
            with open(model, "w") as f:
                f.write(good)
    assert failed.status_code == 409
    assert failed.json() == {"detail": "reload failed, still serving the loaded models"}   # no exception text


def test_seller_answers_no_longer_give_business_debt_from_one_request():
    """Sellers: the marketplace knows the forecast GMV it sent, so one exact PD and limit gave the
    business debt; on the grid, debts 4 x limit_step apart give the same answer."""
    s = POLICY["sellers"]
    gmv, pd, debt = 2_000_000.0, 0.05, 1_234_567.0
    old = rules.seller_credit_line(pd, gmv, debt, None, {}, POLICY, [])
    recovered = 4 * (gmv * s["gmv_months"] * (1 - pd / s["pd_decline"]) - old.limit)
    assert abs(recovered - debt) < 1                                        # the old answer's limit
    said = (old.decision, old.offered, old.terms)
    start = s["min_limit"] + ((old.limit - s["min_limit"]) // s["limit_step"]) * s["limit_step"]
    cap = gmv * s["gmv_months"] * (1 - pd / s["pd_decline"])
    span = [4 * (cap - lim) for lim in (start + s["limit_step"] - 1, start + 1)]
    for other in np.linspace(span[0], span[1], 5):
        twin = rules.seller_credit_line(pd, gmv, other, None, {}, POLICY, [])
        assert (twin.decision, twin.offered, twin.terms) == said
    assert span[1] - span[0] >= 4 * s["limit_step"] - 8                     # 400,000 RUB of debt, one answer

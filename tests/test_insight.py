"""Insight between real node processes (and, for the bytes, the same job over an in-memory channel):
exact figures without noise against the plaintext join of the ground truth, suppression, noise,
the budget across restarts, a dead or garbling peer, and what the bytes do not contain."""

import dataclasses
import json
import shutil
import struct
import threading
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import run_cli

from tandem.crypto.he import SecretHe
from tandem.devcluster import write_configs
from tandem.insight import catalog
from tandem.insight.budget import InsightPolicy
from tandem.insight.job import NOISE_OFF_ENV, InsightParty, initiate, respond
from tandem.insight.query import FIXED_POINT, load_queries
from tandem.insight.records import load_records
from tandem.protocols.message import decode
from tandem.transport.base import memory_pair
from tandem.transport.session import Session

AS_OF = pd.Timestamp("2019-01-01")
EXACT_QUERIES = """
[defaults]
noise = false
min_group_size = 50

[[query]]
name = "average check and orders by income band"
group_by = "bank.income_band"
measures = ["mean(market.avg_check)", "sum(market.orders)"]

[[query]]
name = "top categories of mass and affluent clients"
group_by = "market.top_category"
measures = ["count"]
where = ["bank.segment in ['mass', 'affluent']"]

[[query]]
name = "card spend share to the marketplace by marketplace region"
group_by = ["market.region"]
measures = ["share(bank.card_spend_marketplace, bank.card_spend)"]
where = ["market.orders >= 3", "bank.card_spend > 5000"]

[[query]]
name = "parcels over a 100 EUR threshold by segment"
group_by = "bank.segment"
measures = ["sum(market.cross_border_over_threshold)", "share(market.installment_user)"]
params = {duty_free_eur = 100}
"""


@pytest.fixture(scope="module")
def linked(small_world, tmp_path_factory):
    world = tmp_path_factory.mktemp("insight") / "world"
    shutil.copytree(small_world, world)
    proc = run_cli("link", "--world", str(world), "--entities", "customers", "--json")
    assert proc.returncode == 0, proc.stderr
    return world


@pytest.fixture
def world(linked, tmp_path):
    """A private copy of the linked world (queries charge its budget ledgers)."""
    dst = tmp_path / "world"
    shutil.copytree(linked, dst)
    return dst


def _truth(world) -> pd.DataFrame:
    """Per linked customer, both parties' fields computed here from the raw tables and joined by the
    ground truth (who is who), not by the link ids."""
    bank = duckdb.connect(str(world / "bank.duckdb"), read_only=True)
    clients = bank.sql("SELECT client_id, segment FROM clients").df()
    linked = set(bank.sql("SELECT local_id FROM link_customers").df()["local_id"])
    salary = bank.sql("SELECT client_id, paid_on, amount FROM salary_inflows").df()
    cards = bank.sql("SELECT client_id, ts, amount, merchant FROM card_transactions").df()
    bank.close()
    market = duckdb.connect(str(world / "market.duckdb"), read_only=True)
    users = market.sql("SELECT user_id, region FROM users").df()
    orders = market.sql("SELECT * FROM orders").df()
    items = market.sql("SELECT order_id, category, price, quantity FROM order_items").df()
    market.close()

    salary = salary[(salary.paid_on < AS_OF) & (salary.paid_on >= AS_OF - pd.DateOffset(months=6))]
    income = salary.groupby("client_id")["amount"].median()
    cards = cards[(cards.ts < AS_OF) & (cards.ts >= AS_OF - pd.DateOffset(months=3))]
    spend = cards.groupby("client_id")["amount"].sum() / 3
    to_market = cards[cards.merchant == "Marketplace"].groupby("client_id")["amount"].sum() / 3
    b = clients[clients.client_id.isin(linked)].set_index("client_id")
    b["income"] = income
    b["income_band"] = pd.cut(b["income"], [-np.inf, 20000, 40000, 70000, 120000, np.inf], right=False,
                              labels=list(catalog.INCOME_BANDS[:5])).astype(object).fillna("no salary")
    b["card_spend"] = spend.reindex(b.index).fillna(0)
    b["card_spend_marketplace"] = to_market.reindex(b.index).fillna(0)

    o = orders[(orders.ordered_at < AS_OF) & (orders.ordered_at >= AS_OF - pd.DateOffset(months=12))
               & (orders.status != "cancelled")]
    m = users.set_index("user_id")
    m["avg_check"] = o.groupby("user_id")["total"].mean()
    m["orders"] = o.groupby("user_id").size().reindex(m.index).fillna(0)
    over = o[o.cross_border & (o.total > 100 * 73)]
    m["cross_border_over_threshold"] = over.groupby("user_id").size().reindex(m.index).fillna(0)
    m["installment_user"] = (o[o.payment_method == "installments"].groupby("user_id").size()
                             .reindex(m.index).fillna(0) > 0).astype(float)
    spent = o.merge(items, on="order_id").assign(v=lambda d: d.price * d.quantity) \
        .groupby(["user_id", "category"])["v"].sum().reset_index() \
        .sort_values(["user_id", "v", "category"], ascending=[True, False, True]).drop_duplicates("user_id")
    pay = o.groupby(["user_id", "payment_method"]).size().reset_index(name="n") \
        .sort_values(["user_id", "n", "payment_method"], ascending=[True, False, True]).drop_duplicates("user_id")
    m["main_payment"] = pay.set_index("user_id")["payment_method"].reindex(m.index).fillna("none")
    m["top_category"] = spent.set_index("user_id")["category"].reindex(m.index).fillna("none")

    who = pq.read_table(world / "truth.parquet", columns=["bank_client_id", "market_user_id"]).to_pandas().dropna()
    who = who[who.bank_client_id.isin(linked)].astype("int64")
    joined = who.join(b.add_prefix("bank."), on="bank_client_id").join(m.add_prefix("market."), on="market_user_id")
    assert len(joined) == len(linked)
    return joined


def _fixed(values: pd.Series, name: str) -> pd.Series:
    lo, hi = catalog.FIELDS[name].bounds
    return np.round(np.clip(values, lo, hi) * FIXED_POINT)


def _expected(truth: pd.DataFrame, query) -> pd.DataFrame:
    """The query on the plaintext join: per group, the count and each measure (fixed-point as the protocol)."""
    keep = pd.Series(True, index=truth.index)
    own = pd.Series(True, index=truth.index)              # the group holder's filters only
    for f in query.where:
        col = truth[f.field]
        hit = {"==": col == f.value, "!=": col != f.value, "<": col < f.value, "<=": col <= f.value,
               ">": col > f.value, ">=": col >= f.value}.get(f.op) if f.op not in ("in", "not in") else \
            col.isin(f.value) if f.op == "in" else ~col.isin(f.value)
        keep &= hit & col.notna()
        if catalog.FIELDS[f.field].party == query.group_party:
            own &= hit & col.notna()
    for name in query.slots[1:]:
        keep &= truth[name].notna()
    key = query.group_by[0]
    own_counts = truth[own].groupby(key).size()
    rows = []
    for label, g in truth[keep].groupby(key):
        if len(g) < query.min_group_size or own_counts.get(label, 0) < query.min_group_size:
            continue
        row = {key.split(".")[1]: label, "count": len(g)}
        for m in query.measures:
            if m.kind == "count":
                continue
            total = _fixed(g[m.fields[0]], m.fields[0]).sum() / FIXED_POINT
            if m.kind == "sum":
                row[m.label] = total
            elif len(m.fields) == 2:
                row[m.label] = total / (_fixed(g[m.fields[1]], m.fields[1]).sum() / FIXED_POINT)
            else:
                row[m.label] = total / len(g)
        rows.append(row)
    return pd.DataFrame(rows)


def test_without_noise_every_query_equals_the_plaintext_join_of_the_truth(world, tmp_path, monkeypatch):
    monkeypatch.setenv(NOISE_OFF_ENV, "1")
    qfile = tmp_path / "q.toml"
    qfile.write_text(EXACT_QUERIES)
    out = tmp_path / "figures.parquet"
    proc = run_cli("insight", "run", "--world", str(world), "-q", str(qfile), "--out", str(out),
                   "--initiator", "market")
    assert proc.returncode == 0, proc.stderr
    assert "NO NOISE (test mode)" in proc.stdout and "suppressed" in proc.stdout
    got = pd.read_parquet(out)
    truth = _truth(world)
    suppressed_any = False
    for query in load_queries(qfile):
        key = query.group_by[0].split(".")[1]
        expected = _expected(truth, query).sort_values(key).reset_index(drop=True)
        released = got[got["query"] == query.name].sort_values(key).reset_index(drop=True)
        assert len(expected) >= 2, query.name
        assert released[key].tolist() == expected[key].tolist(), query.name      # the same groups, no small one
        assert released["count"].tolist() == expected["count"].tolist(), query.name
        assert (released["count ±95%"] == 0).all()
        for m in query.measures:
            if m.kind != "count":
                assert np.allclose(released[m.label], expected[m.label], rtol=1e-12, atol=0), (query.name, m.label)
        suppressed_any |= len(expected) < query.n_groups
    assert suppressed_any
    report = (world / "insight" / "report.html").read_text()
    assert "top categories of mass and affluent clients" in report and report.count("<img") >= 6


def test_noisy_figures_honour_the_threshold_and_the_budget_holds_across_restarts(world, tmp_path):
    qfile = tmp_path / "q.toml"
    qfile.write_text('[[query]]\nname = "avg check"\ngroup_by = "bank.income_band"\n'
                     'measures = ["mean(market.avg_check)"]\nepsilon = 1.0\n'
                     '[[query]]\nname = "segments"\ngroup_by = "market.main_payment"\nmeasures = ["count"]\n'
                     'where = ["bank.segment == \'mass\'"]\nepsilon = 1.0\n')
    first = run_cli("insight", "run", "--world", str(world), "-q", str(qfile), "--budget", "2.5", "--json")
    assert first.returncode == 0, first.stderr
    results = json.loads(first.stdout)
    truth = _truth(world)
    for res, query in zip(results, load_queries(qfile)):
        expected = _expected(truth, dataclasses.replace(query, min_group_size=1))
        key = query.group_by[0].split(".")[1]
        exact = dict(zip(expected[key], expected["count"]))
        for row in res["rows"]:
            label, count, margin = row[0], row[1], row[2]
            assert exact[label] >= query.min_group_size                     # nothing small is ever released
            assert abs(count - exact[label]) <= 6 * margin / 1.96            # noise within 6 standard deviations
            assert margin > 0
    # a restart: new node processes, same stores; the budget left (0.5) no longer covers a query
    out = tmp_path / "never.csv"
    second = run_cli("insight", "run", "--world", str(world), "-q", str(qfile), "--budget", "2.5", "--out", str(out))
    assert second.returncode == 2
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "privacy budget" in line and "2 of 2.5 used" in line, line
    assert not out.exists()
    ledger = run_cli("insight", "budget", str(world))
    assert ledger.returncode == 0 and ledger.stdout.count("group holder") + ledger.stdout.count("measure holder") == 2


def _fake_market(world, behaviour: str):
    """A market node in this process that accepts the bank's query, then dies or sends garbage."""
    from tandem.node import Node
    from tandem.node_config import load_node_config
    from tandem.protocols.wire import EncryptedMeasures, InsightAccept, InsightKey

    configs = write_configs(world, timeout_s=6)

    class Fake(Node):
        def _respond(self, session_id, peer):
            session = self._session(peer, session_id, "insight/1")
            query = session.recv()
            session.send(InsightAccept(session_id, query.query_id))
            if behaviour == "dies":
                threading.Thread(target=self.close, daemon=True).start()
                return
            from tandem.crypto.he import SecretHe

            session.send(InsightKey(session_id, query.n_links, 2, SecretHe.generate(key_bits=1024).public_bytes()))
            session.send(EncryptedMeasures(session_id, 0, query.n_links, True, b"\x00garbage" * 50))

    fake = Fake(load_node_config(configs["market"]))
    fake.start()
    return configs, fake


@pytest.mark.parametrize("behaviour, message", [("dies", "unreachable"), ("garbage", "malformed ciphertexts")])
def test_a_peer_that_dies_or_sends_garbage_stops_the_query_with_one_line(world, tmp_path, behaviour, message):
    qfile = tmp_path / "q.toml"
    qfile.write_text('[[query]]\ngroup_by = "bank.income_band"\nmeasures = ["mean(market.avg_check)"]\n')
    configs, fake = _fake_market(world, behaviour)
    try:
        proc = run_cli("node", "--config", str(configs["bank"]), "--insight", "market", "--query", str(qfile))
    finally:
        if behaviour != "dies":
            fake.close()
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr and lines[-1].startswith("error: ")
    assert "market" in lines[-1] and message in lines[-1], lines[-1]


def test_bad_queries_name_what_is_wrong(world, tmp_path):
    cases = [(["-g", "bank.income_band", "-m", "mean(bank.income)"], "measures must come from the market"),
             (["-g", "bank.nothing", "-m", "count"], "unknown field 'bank.nothing'"),
             (["-g", "market.region", "--where", "bank.segment == 'vip'"], "has no label 'vip'"),
             (["-g", "bank.segment", "--epsilon", "3"], "more than the 2 this node allows per query"),
             (["-g", "bank.segment", "--min-group-size", "10"], "below this node's minimum 50")]
    for args, message in cases:
        out = tmp_path / "x.csv"
        proc = run_cli("insight", "run", "--world", str(world), *args, "--out", str(out))
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert not out.exists()


def test_every_byte_sent_holds_no_record_value_and_no_group_label(world):
    """Both sides of two queries (each party holding the groups once) over an in-memory channel: the
    same job as the nodes run. Neither side's bytes hold a label of any group key, a per-record value
    or group membership; the measure holder decrypts only masked sums, far from the exact ones."""
    policy = InsightPolicy(budget=10)
    queries = load_queries_text('[[query]]\ngroup_by = "bank.income_band"\nmeasures = ["mean(market.avg_check)", '
                                '"sum(market.spend)"]\nwhere = ["market.orders >= 1"]\n'
                                '[[query]]\ngroup_by = "market.top_category"\n'
                                'measures = ["mean(bank.card_spend)"]\nwhere = ["bank.card_spend > 1000"]\n')
    keys = []                                           # every key pair a party makes, in order

    def new_key():
        keys.append(SecretHe.generate())
        return keys[-1]

    parties = {p: InsightParty(p, str(world / f"{p}.duckdb"), policy, new_key) for p in ("bank", "market")}
    public_keys = []
    labels = {label for f in catalog.FIELDS.values() for label in f.labels if len(label) >= 6}
    for i, query in enumerate(queries):
        ca, cb = memory_pair("bank", "market")
        sid = f"{i:032x}"
        sessions = Session(ca, sid, "insight/1", None, 20), Session(cb, sid, "insight/1", None, 20)
        errors, results = [], {}

        def answer():
            try:
                results["market"] = respond(sessions[1], sessions[1].recv(), parties["market"])
            except Exception as exc:   # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=answer)
        t.start()
        results["bank"] = initiate(sessions[0], query, parties["bank"])
        t.join()
        assert not errors, errors
        assert results["bank"].groups == results["market"].groups and results["bank"].groups
        sent = {"bank": ca.sent, "market": cb.sent}
        holder, measurer = query.group_party, query.measure_party
        records = {p: load_records(parties[p].store, p, query) for p in ("bank", "market")}
        for side, frames in sent.items():
            blob = b"".join(frames)
            assert not [lab for lab in labels if lab.encode() in blob], side           # no group label at all
        # the measure holder's bytes: no per-record value, raw or fixed-point
        blob = b"".join(sent[measurer])
        raw = load_raw(parties[measurer].store, measurer, query)
        for value in raw[np.isfinite(raw) & (raw != np.round(raw))][:300]:
            assert struct.pack("<d", value) not in blob and struct.pack(">d", value) not in blob
        values = records[measurer].values
        for start in range(0, 40, 4):
            for order in ("<", ">"):
                assert values[start:start + 4].astype(f"{order}i8").tobytes() not in blob
                assert values[start:start + 8, 1].astype(f"{order}i8").tobytes() not in blob
        # the group holder's bytes: no per-record group membership
        blob = b"".join(sent[holder])
        groups = records[holder].groups
        for dtype in ("i1", "u1", "<i8", ">i8"):
            assert groups[:64].astype(dtype).tobytes() not in blob
        for g in range(query.n_groups):
            assert np.packbits(groups == g).tobytes()[:16] not in blob
        # what the measure holder decrypts is masked: nowhere near the exact sums
        masked_msg = next(decode(f) for f in sent[holder] if decode(f).name == "MaskedSums")
        he = keys[-1]                                   # this query's key pair, made for it
        key_msg = next(decode(f) for f in sent[measurer] if decode(f).name == "InsightKey")
        assert key_msg.payload == he.public_bytes()
        public_keys.append(key_msg.payload)
        masked = he.decrypt_slots(he.load(masked_msg.payload), len(query.slots))
        exact = np.array([values[groups == g].sum(axis=0) for g in range(query.n_groups)], dtype=object)
        assert all(int(v) >= 1 << 100 for v in (masked - exact).ravel())
    assert len(keys) == len(queries) and len(set(public_keys)) == len(queries)   # a fresh key per query


def load_queries_text(text: str):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "q.toml"
        path.write_text(text)
        return [q.at(AS_OF.date()) for q in load_queries(path)]     # as the asking node does ([node] as_of)


def load_raw(store: str, party: str, query) -> np.ndarray:
    """The raw values (before clamping and fixed point) of the party's measure fields, flattened."""
    from tandem.features.run import run_sql
    from tandem.store import open_store

    s = open_store(store, read_only=True)
    try:
        table = run_sql(s, catalog.TABLES[party], catalog.SQL[party], date.fromisoformat(query.as_of),
                        catalog.sql_params(party, query.params)).to_pandas()
    finally:
        s.close()
    names = [catalog.FIELDS[f].name for f in query.slots[1:]]
    return table[names].to_numpy(dtype=np.float64).ravel()

"""Linking on real, separate node processes over loopback with mutual TLS."""

import json
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import pyarrow.parquet as pq
import pytest
from helpers import one_error_line, run_cli

from tandem.audit import read_audit
from tandem.crypto.tls import make_ca, make_node_cert
from tandem.devcluster import write_configs
from tandem.world.generate import generate_world


@pytest.fixture(scope="module")
def world20k(tmp_path_factory):
    out = tmp_path_factory.mktemp("w20k") / "world"
    generate_world(20_000, 1, out, evaluate=False)
    return out


@pytest.fixture
def world(world20k, tmp_path):
    """A private copy (tests write link tables and certificates into it)."""
    dst = tmp_path / "world"
    shutil.copytree(world20k, dst)
    return dst


def _links(world, party, entity="customers"):
    con = duckdb.connect(str(world / f"{party}.duckdb"), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if f"link_{entity}" not in tables:
            return None
        return con.execute(f"SELECT * FROM link_{entity}").df()
    finally:
        con.close()


def test_link_equals_the_truth_and_honours_consent(world):
    proc = run_cli("link", "--world", str(world), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    bank, market = _links(world, "bank"), _links(world, "market")
    pairs = bank.merge(market, on="link_id", suffixes=("_b", "_m"))
    assert len(pairs) == len(bank) == len(market) and bank["link_id"].is_unique
    assert (pairs["matched_on_b"] == pairs["matched_on_m"]).all()
    both = truth.dropna(subset=["bank_client_id", "market_user_id"])
    same_person = set(zip(both["bank_client_id"].astype("int64"), both["market_user_id"].astype("int64")))
    correct = sum((b, m) in same_person for b, m in zip(pairs["local_id_b"], pairs["local_id_m"]))
    assert correct == len(pairs)                                              # precision 1.0
    matchable = set(zip(truth.loc[truth["matchable"], "bank_client_id"].astype("int64"),
                        truth.loc[truth["matchable"], "market_user_id"].astype("int64")))
    assert correct / len(matchable) >= 0.98                                   # recall
    # consent is honoured exactly: every linked record consented, on both sides
    con_b = duckdb.connect(str(world / "bank.duckdb"), read_only=True)
    consented_b = {r[0] for r in con_b.execute("SELECT client_id FROM clients WHERE consent_partner").fetchall()}
    con_m = duckdb.connect(str(world / "market.duckdb"), read_only=True)
    consented_m = {r[0] for r in con_m.execute("SELECT user_id FROM users WHERE consent_partner").fetchall()}
    assert set(pairs["local_id_b"]) <= consented_b and set(pairs["local_id_m"]) <= consented_m
    assert report["entities"]["customers"]["linked"] == len(pairs)
    assert set(report["entities"]["customers"]["keys"]) == {"phone", "email"}
    # sellers by INN
    sellers = _links(world, "bank", "sellers").merge(_links(world, "market", "sellers"), on="link_id")
    st = pq.read_table(world / "truth_sellers.parquet").to_pandas()
    expected = set(zip(st.loc[st["matchable"], "business_id"].astype("int64"), st.loc[st["matchable"], "seller_id"]))
    assert set(zip(sellers["local_id_x"], sellers["local_id_y"])) == expected
    # every message the bank node sent is in its audit log
    entries, torn = read_audit(world / "nodes" / "state-bank" / "audit.jsonl")
    out = [e for e in entries if e["direction"] == "out"]
    assert torn == 0 and {e["message"] for e in out} >= {"LinkRequest", "KeyStart", "Blinded", "Reblinded", "KeyDone"}
    assert sum(e["records"] for e in out if e["message"] == "Blinded") >= len(pairs)
    audit = run_cli("audit", str(world / "nodes" / "bank.toml"))
    assert audit.returncode == 0 and "Blinded" in audit.stdout


def test_count_only_writes_nothing_and_agrees_with_the_link(world):
    proc = run_cli("link", "--world", str(world), "--count-only", "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert _links(world, "bank") is None and _links(world, "market") is None
    assert counts["entities"]["customers"]["linked"] is None
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    assert counts["entities"]["customers"]["keys"]["phone"] == int((truth["matchable"] & truth["phone_matches"]).sum())
    market_audit, _ = read_audit(world / "nodes" / "state-market" / "audit.jsonl")
    assert "link_customers" not in json.dumps(market_audit)


def _node(config, *args):
    return subprocess.Popen([sys.executable, "-m", "tandem.cli", "node", "--config", str(config), "--events", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_event(proc, kind, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event["event"] == kind:
            return event
    raise AssertionError(f"no {kind} event; stderr: {proc.stderr.read()}")


def test_a_peer_killed_mid_protocol_stops_the_other_cleanly_and_a_rerun_works(world):
    configs = write_configs(world, timeout_s=10)
    market = _node(configs["market"], "--once")
    _wait_event(market, "ready")
    bank = _node(configs["bank"], "--link", "market")
    _wait_event(market, "progress")          # the market is inside the protocol
    market.send_signal(signal.SIGSTOP)        # freeze it mid-run, then kill it
    time.sleep(0.5)
    market.kill()
    market.wait()
    started = time.time()
    _, err = bank.communicate(timeout=30)
    assert bank.returncode != 0 and time.time() - started < 25
    one_error_line(err, "market")
    assert _links(world, "bank") is None and _links(world, "market") is None    # nothing partial
    proc = run_cli("link", "--world", str(world), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["entities"]["customers"]["linked"] > 0


def test_a_certificate_from_another_ca_is_refused(world, tmp_path):
    configs = write_configs(world, timeout_s=5)
    other = tmp_path / "other-ca"
    ca, key = make_ca(other, "Someone else's CA")
    make_node_cert(other, "market", ca, key)
    text = configs["market"].read_text().replace('cert = "certs/market/market.pem"', f'cert = "{other}/market.pem"') \
        .replace('key = "certs/market/market.key"', f'key = "{other}/market.key"')
    configs["market"].write_text(text)
    market = _node(configs["market"], "--once")
    _wait_event(market, "ready")
    bank = _node(configs["bank"], "--link", "market")
    _, err = bank.communicate(timeout=60)
    market.kill()
    assert bank.returncode != 0
    # one line naming the peer and the CA it was not told to trust
    one_error_line(err, "peer market", "issued by 'CN=Someone else", "not the CA this node trusts for market")
    assert _links(world, "bank") is None and _links(world, "market") is None


def test_a_wrong_protocol_version_and_malformed_frames_are_refused(world):
    """A hand-made peer (with a valid certificate) talks to a real node process."""
    from tandem.node import Node
    from tandem.node_config import load_node_config
    from tandem.protocols.errors import RemoteProtocolError
    from tandem.protocols.wire import OPENING, LinkRequest, TrainRequest
    from tandem.transport.base import TransportError

    configs = write_configs(world, timeout_s=10)
    market = _node(configs["market"])
    _wait_event(market, "ready")
    bank = Node(load_node_config(configs["bank"]))
    bank.start()
    try:
        with pytest.raises(TransportError, match="refused the message: malformed frame"):
            bank.clients["market"].deliver(b"not a frame at all", timeout=5)
        session = bank._session("market", "f" * 32)
        session.send(LinkRequest("f" * 32, "psi/9", ["customers"], ["customers:phone"], False, False))
        with pytest.raises(RemoteProtocolError, match="peer market stopped: peer bank speaks psi/9"):
            session.recv()
        # every message type that may open a session has the node's handler, and only those
        assert {m.CODE for m in bank._openers} == set(OPENING)
        train = bank._session("market", "e" * 32, "boost/5")
        train.send(TrainRequest("e" * 32, "boost/5", "m" * 16, 1, 300_000, 2, 2, 8, 0.3, 1.0, 1.0, False, 0, 0, 0,
                                100_000))
        with pytest.raises(RemoteProtocolError, match="node market was started without training data"):
            train.recv()                # the opener table sent it to training, which refuses (no TrainAccept)
    finally:
        bank.close()
        market.kill()
    assert _links(world, "market") is None


def test_node_config_errors_name_the_file_and_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[node]\nname = "bank"\n')
    proc = run_cli("node", "--config", str(cfg))
    assert proc.returncode == 2 and "bad.toml: [node] store is missing" in proc.stderr
    proc = run_cli("link", "--world", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "no bank.duckdb here" in proc.stderr


def test_incremental_mode_processes_only_new_records(world):
    first = run_cli("link", "--world", str(world), "--incremental", "--json", "--entities", "customers")
    assert first.returncode == 0, first.stderr
    links_before = _links(world, "bank").sort_values("link_id").reset_index(drop=True)
    # one new shared customer on both sides (consented, same phone)
    con = duckdb.connect(str(world / "bank.duckdb"))
    con.execute("INSERT INTO clients (client_id, phone, email, consent_partner) VALUES (1, '89990000011', NULL, true)")
    con.close()
    con = duckdb.connect(str(world / "market.duckdb"))
    con.execute("INSERT INTO users (user_id, phone, email, consent_partner) "
                "VALUES (2, '+7 (999) 000-00-11', NULL, true)")
    con.close()
    second = run_cli("link", "--world", str(world), "--incremental", "--json", "--entities", "customers")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)["entities"]["customers"]
    assert report["blinded_sent"]["phone"] == 1                # only the new record was blinded
    bank, market = _links(world, "bank"), _links(world, "market")
    new = bank[bank["local_id"] == 1].merge(market[market["local_id"] == 2], on="link_id")
    assert len(new) == 1 and new["matched_on_x"].item() == "phone"
    kept = bank[bank["local_id"] != 1].sort_values("link_id").reset_index(drop=True)
    assert kept.equals(links_before)                           # earlier links and their ids are unchanged
    assert (world / "nodes" / "state-bank" / "psi" / "market" / "customers-phone.npz").exists()


def test_records_keep_consented_rows_and_set_duplicates_aside(tmp_path):
    import pyarrow as pa

    from tandem.errors import InputError
    from tandem.link.records import load_records
    from tandem.parties import PRESETS
    from tandem.store import open_store

    store = open_store(tmp_path / "b.duckdb", create=True)
    store.write_table("clients", pa.table({
        "client_id": [1, 2, 3, 4, 5],
        "phone": ["89161234567", "+7 916 123-45-67", "89035550011", "89035550012", "garbage"],
        "email": ["a@b.ru", "c@d.ru", "A@B.ru", None, "e@f.ru"],
        "consent_partner": [True, True, True, False, True],
    }))
    recs = load_records(store, PRESETS["bank"]["customers"], ["phone", "email"])
    assert list(recs.ids) == [1, 2, 3, 5] and recs.total == 4           # client 4 did not consent
    assert list(recs.values["phone"]) == [None, None, "+79035550011", None]
    assert recs.reports["phone"].duplicate_values == 1 and recs.reports["phone"].duplicate_records == 2
    assert recs.reports["phone"].invalid == {"not a number": 1}
    assert list(recs.values["email"]) == [None, "c@d.ru", None, "e@f.ru"]   # a@b.ru twice (case differs)
    store.write_table("clients", pa.table({"client_id": [1, 1], "phone": ["x", "y"], "email": [None, None],
                                           "consent_partner": [True, True]}))
    with pytest.raises(InputError, match="duplicate ids in column 'client_id'"):
        load_records(store, PRESETS["bank"]["customers"], ["phone"])
    store.close()


def _link_once(configs, on_market_event=None):
    """One link run between two node processes (customers only); -> (bank proc, market proc, market events)."""
    market = _node(configs["market"], "--once")
    _wait_event(market, "ready")
    bank = _node(configs["bank"], "--link", "market", "--entities", "customers")
    events = []
    for line in market.stdout:
        events.append(json.loads(line))
        if on_market_event and on_market_event(events[-1]):
            market.kill()                           # SIGKILL: no handler runs, nothing is flushed or cleaned
            break
    market.wait(60)
    bank_out, bank_err = bank.communicate(timeout=60)
    bank_events = [json.loads(x) for x in bank_out.splitlines() if x.startswith("{")]
    return bank, bank_events, bank_err, market, events


def _result(events):
    return next(e for e in events if e["event"] == "result")


def _pairs(world):
    bank, market = _links(world, "bank"), _links(world, "market")
    pairs = bank.merge(market, on="link_id", suffixes=("_b", "_m"))
    assert len(pairs) == len(bank) == len(market)                      # one link id per link, on both sides
    return set(zip(pairs["local_id_b"], pairs["local_id_m"], pairs["matched_on_b"]))


def test_a_node_killed_at_60_percent_resumes_from_its_last_chunk(world):
    """SIGKILL the market node once its phone run is 60% done; the rerun continues from the chunks both
    sides completed (fewer multiplications than a full run) and links exactly what an uninterrupted run does."""
    configs = write_configs(world, timeout_s=10)
    for path in configs.values():  # openssl: on a crypto_mb CPU the last 40% can finish before the kill lands
        path.write_text(path.read_text() + '\n[link]\nchunk = 400\nbackend = "openssl"\n')
    bank, bank_events, err, market, events = _link_once(configs)
    assert bank.returncode == 0 and market.returncode == 0, err
    full = {n: sum(k["multiplied"] for k in _result(ev)["entities"]["customers"]["keys"].values())
            for n, ev in (("bank", bank_events), ("market", events))}
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    both = truth.dropna(subset=["bank_client_id", "market_user_id"])
    same_person = set(zip(both["bank_client_id"].astype("int64"), both["market_user_id"].astype("int64")))
    uninterrupted = _pairs(world)
    assert {(b, m) for b, m, _ in uninterrupted} <= same_person                   # precision 1.0

    def at_60(event):
        return event["event"] == "progress" and event["what"] == "customers/phone" and event["fraction"] >= 0.6

    bank, _, err, market, events = _link_once(configs, at_60)
    assert market.returncode == -signal.SIGKILL and bank.returncode != 0
    assert not any(e["event"] == "result" for e in events)
    kept = world / "nodes" / "state-market" / "psi-resume" / "bank" / "customers-phone"
    assert (kept / "meta.json").exists()

    bank, bank_events, err, market, events = _link_once(configs)
    assert bank.returncode == 0 and market.returncode == 0, err
    for name, ev in (("bank", bank_events), ("market", events)):
        keys = _result(ev)["entities"]["customers"]["keys"]
        assert keys["phone"]["resumed"], name
        assert sum(k["multiplied"] for k in keys.values()) < 0.8 * full[name], (name, keys, full)
        assert not any(e["event"] == "notice" for e in ev)
    assert _pairs(world) == uninterrupted                                    # the same links, precision 1.0
    assert not kept.exists()                                                  # removed once the table is written


def test_a_serving_node_shows_the_run_it_serves_and_its_result(world):
    configs = write_configs(world, timeout_s=30)
    market = subprocess.Popen([sys.executable, "-m", "tandem.cli", "node", "--config", str(configs["market"]), "--once"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "listening on port" in market.stdout.readline()
    bank = _node(configs["bank"], "--link", "market", "--entities", "customers")
    out, err = market.communicate(timeout=120)
    bank.communicate(timeout=30)
    assert (market.returncode, bank.returncode) == (0, 0), err
    assert "market: links written with bank" in out and "customers / phone" in out      # the result table
    assert "market serving" in err and "100%" in err                                    # the progress bar, finished

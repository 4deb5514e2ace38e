"""Attacks a dishonest partner can cheaply make with its own inputs, each performed against the defence
(docs/privacy.md, "Threat model")."""

import secrets

import numpy as np
import pandas as pd
import pytest

from tandem.devcluster import node_configs, serving
from tandem.learn.federated import active_job, read_party_file
from tandem.learn.options import DEFAULTS
from tandem.node import Node
from tandem.node_config import load_node_config
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.message import decode
from tandem.protocols.wire import InsightQuery, KeyStart, LinkRequest, PredictRequest, TrainAccept, TrainRequest

FIELDS = dict(DEFAULTS.request_fields(), n_trees=2, max_depth=2, bins=8)


def _train_request(model_id, session="a" * 32):
    return TrainRequest(session, "boost/5", model_id, **FIELDS)


@pytest.mark.parametrize("model_id", ["../../evil", "/tmp/evil", "a/b", "..", "", "x" * 65, "id\x00"])
def test_a_train_request_naming_a_path_is_refused_at_decode(model_id):
    with pytest.raises(RemoteProtocolError, match="malformed TrainRequest: field 'model_id' is not a valid"):
        decode(_train_request(model_id).encode())


@pytest.mark.parametrize("msg,field", [
    (_train_request("0123abcd0123abcd", session="../s"), "session"),
    (LinkRequest("s", "psi/1", ["../customers"], ["customers:phone"], False, False), "entities"),
    (LinkRequest("s", "psi/1", ["customers"], ["customers:../phone"], False, False), "keys"),
    (KeyStart("s", "customers", "phone/../../x", "00" * 16, 1, ""), "key"),
    (PredictRequest("s", "../m", 3), "model"),
    (InsightQuery("s", "insight/1", "../q", "{}", "bank", 0, ""), "query_id"),
    (InsightQuery("s", "insight/1", "q1", "{}", "../bank", 0, ""), "party"),
])
def test_every_identifier_from_a_peer_is_checked(msg, field):
    with pytest.raises(RemoteProtocolError, match=f"malformed {msg.name}: field '{field}' is not a valid"):
        decode(msg.encode())


def test_legitimate_identifiers_pass_and_the_bytes_are_unchanged():
    for msg in (_train_request(secrets.token_hex(8), secrets.token_hex(16)), PredictRequest("s-market", "", 3),
                LinkRequest("f" * 32, "psi/1", ["customers", "sellers"], ["customers:phone", "sellers:inn"], False,
                            False),
                KeyStart("s0", "rows", "id", "00" * 16, 1, "")):
        assert decode(msg.encode()) == msg
    assert _train_request("m1").encode()[:3] == b"TDM"


@pytest.mark.parametrize("target", ["relative", "absolute"])
def test_a_peer_cannot_make_a_passive_node_write_outside_its_state_folder(tmp_path, target):
    """A real passive node process; a hand-made TrainRequest over gRPC with mutual TLS whose model id
    points outside the node's state folder. Without the check the passive node trains and saves its model
    at ``state-market/models/{model_id}-market.json``, i.e. outside (the attacker then plays the label
    holder to the end so that the save would happen)."""
    rng = np.random.default_rng(0)
    n = 300
    X = rng.normal(size=(n, 2))
    ids = [f"C{i}" for i in range(n)]
    y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
    pd.DataFrame({"cid": ids, "income": X[:, 0], "default": y}).to_csv(tmp_path / "bank.csv", index=False)
    pd.DataFrame({"cid": ids, "returns": X[:, 1]}).to_csv(tmp_path / "market.csv", index=False)
    nodes = tmp_path / "nodes"
    configs = node_configs(nodes, {"bank": "bank.duckdb", "market": "market.duckdb"},
                           {"bank": "bank", "market": "market"}, timeout_s=20)
    evil = tmp_path / "outside" / "evil"
    evil.parent.mkdir()
    model_id = "../../../outside/evil" if target == "relative" else str(evil)
    assert (nodes / "state-market" / "models" / f"{model_id}-market.json").resolve() == evil.parent / "evil-market.json"
    before = {p for p in tmp_path.rglob("*")}
    with serving(configs, {"market": ["--data", str(tmp_path / "market.csv"), "--id", "cid", "--once"]}) as procs:
        bank = Node(load_node_config(configs["bank"]), train_data=read_party_file(tmp_path / "bank.csv", "cid",
                                                                                 "default"))
        bank.start()
        try:
            session = bank._session("market", secrets.token_hex(16), "boost/5")
            request = _train_request(model_id, session.id)
            session.send(request)
            try:
                reply = session.recv()
                assert isinstance(reply, TrainAccept)
                active_job([session], bank.train_data, request, bank.blinder, party="bank",
                           passive_parties=["market"], key_bits=1024)
            except RemoteProtocolError as exc:
                refused = str(exc)
            else:
                refused = ""
        finally:
            session.channel.close()
            bank.close()
        market = procs["market"]
        market.wait(60)
    assert not (evil.parent / "evil-market.json").exists()
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    state = nodes / "state-market"
    outside = [p for p in written if not (p.is_relative_to(state) or p.is_relative_to(nodes / "state-bank"))]
    assert outside == [], outside
    assert "peer market stopped: malformed TrainRequest: field 'model_id' is not a valid identifier" in refused
    assert market.proc.returncode != 0 and "field 'model_id' is not a valid identifier" in market.error()

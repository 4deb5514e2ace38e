"""Resuming an interrupted PSI run from its checkpoints, in memory (real blinding, real files)."""

import json
import threading

import pytest

from tandem.crypto.psi_group import new_secret
from tandem.engine import LocalEngine
from tandem.link.blinder import EngineBlinder
from tandem.link.checkpoint import KeyCheckpoint
from tandem.link.job import drive
from tandem.protocols.psi import KeyRun
from tandem.transport.base import memory_pair
from tandem.transport.session import Session

BLINDER = EngineBlinder(LocalEngine(0))
A = [f"+7916{i:07d}" for i in range(300)]
B = [f"+7916{i:07d}" for i in range(150, 420)]


class Killed(Exception):
    """Stands in for SIGKILL: the node stops mid-run."""


class DyingBlinder:
    """Blinds as ``BLINDER`` does, then dies at the ``after``-th re-blinding of a peer chunk."""

    def __init__(self, after):
        self.left = after

    def hash_and_blind(self, *args):
        return BLINDER.hash_and_blind(*args)

    def blind(self, secret, points):
        self.left -= 1
        if self.left < 0:
            raise Killed()
        return BLINDER.blind(secret, points)


def _pair(tmp_path, a=A, b=B, market_blinder=BLINDER, notices=None, keep=False):
    """One key between two sides with checkpoints under ``tmp_path``; -> runs, errors."""
    notices = notices if notices is not None else []
    ca, cb = memory_pair("bank", "market")
    runs = {
        "bank": KeyRun("s", "customers", "phone", a, initiator=True, count_only=False, secret=new_secret(),
                       blinder=BLINDER, chunk=16, keep_memory=keep,
                       checkpoint=KeyCheckpoint(tmp_path / "bank", notices.append)),
        "market": KeyRun("s", "customers", "phone", b, initiator=False, count_only=False, secret=new_secret(),
                         blinder=market_blinder, chunk=16, keep_memory=keep,
                         checkpoint=KeyCheckpoint(tmp_path / "market", notices.append)),
    }
    errors = {}

    def side(name, channel):
        try:
            drive(runs[name], Session(channel, "s", "psi/2", None, 1))
        except Exception as exc:  # noqa: BLE001 - the test looks at them
            errors[name] = exc

    t = threading.Thread(target=side, args=("market", cb))
    t.start()
    side("bank", ca)
    t.join()
    return runs, errors


def _by_value(run, values):
    return {values[p]: lid for p, lid in zip(*run.final.links, strict=True)}


@pytest.mark.parametrize("keep", [False, True])
def test_a_run_killed_part_way_resumes_from_its_checkpoints_with_the_same_result(tmp_path, keep):
    full, errors = _pair(tmp_path / "full", keep=keep)
    assert not errors
    full_mults = {n: r.multiplied for n, r in full.items()}
    assert full_mults == {"bank": 300 + 270, "market": 270 + 300}
    _, errors = _pair(tmp_path / "cut", market_blinder=DyingBlinder(after=9), keep=keep)
    assert "Killed" in str(errors["market"]) and "bank" in errors             # both stopped mid-run
    assert (tmp_path / "cut" / "bank" / "meta.json").exists()
    notices = []
    again, errors = _pair(tmp_path / "cut", notices=notices, keep=keep)
    assert not errors and not notices
    assert again["bank"].resumed and again["market"].resumed
    mults = {n: r.multiplied for n, r in again.items()}
    assert all(mults[n] < full_mults[n] for n in mults) and sum(mults.values()) < 0.8 * sum(full_mults.values())
    expected = set(A) & set(B)
    bank, market = _by_value(again["bank"], A), _by_value(again["market"], B)
    assert set(bank) == set(market) == expected and bank == market            # one link id per shared value
    if keep:
        assert len(again["bank"].kept.own_double) == 300 and len(again["bank"].kept.peer_double) == 270


def test_a_tampered_or_stale_checkpoint_starts_afresh_with_one_line(tmp_path):
    _pair(tmp_path, market_blinder=DyingBlinder(after=9))
    meta = tmp_path / "bank" / "meta.json"
    body = json.loads(meta.read_text())
    body["lengths"]["sent"][0] += 1                       # edited by hand
    meta.write_text(json.dumps(body))
    notices = []
    runs, errors = _pair(tmp_path, notices=notices)
    assert not errors and not runs["bank"].resumed and not runs["market"].resumed
    assert len(notices) == 2                               # the tampered one, and the peer's now unmatched one
    assert "bank: checkpoint dropped (unreadable or tampered" in notices[0]
    assert "market: checkpoint dropped (the peer holds no checkpoint of this run)" in notices[1]
    assert set(_by_value(runs["bank"], A)) == set(A) & set(B)
    # a stale one: the bank's values changed since the interrupted run
    _pair(tmp_path / "stale", market_blinder=DyingBlinder(after=9))
    notices = []
    runs, errors = _pair(tmp_path / "stale", a=A + ["+79990000000"], notices=notices)
    assert not errors and not runs["bank"].resumed
    assert [n.split("(")[1].split(")")[0] for n in notices] == [
        "this side's values changed since the checkpoint", "the peer holds no checkpoint of this run"]
    assert set(_by_value(runs["bank"], A + ["+79990000000"])) == set(A) & set(B)


def test_a_checkpoint_is_private_and_holds_no_identifier(tmp_path):
    _pair(tmp_path, market_blinder=DyingBlinder(after=9))
    folder = tmp_path / "bank"
    assert folder.stat().st_mode & 0o777 == 0o700
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o777 == 0o600, f
        data = f.read_bytes()
        assert not any(v.encode() in data for v in A[:50])


def test_a_run_killed_before_any_chunk_came_back_resumes(tmp_path):
    """The market dies at its first re-blinding: nothing has come back to either side yet."""
    _, errors = _pair(tmp_path, market_blinder=DyingBlinder(after=0))
    assert errors
    again, errors = _pair(tmp_path)
    assert not errors and again["bank"].resumed
    assert set(_by_value(again["bank"], A)) == set(_by_value(again["market"], B)) == set(A) & set(B)

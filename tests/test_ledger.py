"""The decision ledger on its own: durable before answered, every answered decision in the store's table
after a clean stop or a crash, replays and refusals, on DuckDB and on PostgreSQL."""

import asyncio
import json
import subprocess
import sys

import pytest

from tandem.decide.ledger import Ledger, ReusedRequestId
from tandem.store import open_store


def _response(i: int) -> dict:
    return {"kind": "installments", "link_id": f"{i:032x}", "decision": "approve" if i % 2 else "decline",
            "pd": i / 1000, "limit": 1000.0 * i, "model_version": "0" * 16, "terms": [], "reasons": []}


async def _record(ledger: Ledger, ids: range, tag: str = "r") -> list[tuple[dict, bool]]:
    return await asyncio.gather(*(ledger.record(f"{tag}-{i}", f"h{i}", lambda i=i: _response(i)) for i in ids))


def _stored(store: str) -> dict[str, str]:
    s = open_store(store)
    try:
        return dict(zip(*(s.query("SELECT request_id, decision FROM decisions").column(c).to_pylist()
                          for c in ("request_id", "decision"))))
    finally:
        s.close()


def test_decisions_are_journaled_then_stored_and_replayed_after_a_restart(store_target, tmp_path):
    journal = tmp_path / "journal"
    ledger = Ledger(store_target, journal)
    first = asyncio.run(_record(ledger, range(40)))
    assert [replayed for _, replayed in first] == [False] * 40
    journaled = {json.loads(line)["request_id"] for p in journal.glob("*.jsonl") for line in p.read_bytes().splitlines()}
    assert {f"r-{i}" for i in range(40)} <= journaled | set(_stored(store_target))       # durable once answered
    ledger.close()
    stored = _stored(store_target)
    assert {f"r-{i}": _response(i)["decision"] for i in range(40)}.items() <= stored.items()

    again = Ledger(store_target, journal)
    replays = asyncio.run(_record(again, range(35, 45)))
    assert [replayed for _, replayed in replays] == [True] * 5 + [False] * 5
    assert replays[0][0]["decision"] == first[35][0]["decision"] and replays[0][0]["pd"] == first[35][0]["pd"]
    with pytest.raises(ReusedRequestId):
        asyncio.run(again.record("r-1", "another body", lambda: _response(1)))
    again.close()
    assert len([r for r in _stored(store_target) if r.startswith("r-")]) == 45          # each request id once


CRASH = """
import asyncio, os, sys
import tandem.decide.journal as journal
import tandem.decide.ledger as led
journal.COPY_S = 3600                                  # the writer never runs: everything stays in the journal
sys.path.insert(0, {tests!r})
from test_ledger import _record
ledger = led.Ledger({store!r}, {journal!r})
asyncio.run(_record(ledger, range(25), "crash"))
print("answered", flush=True)
os._exit(0)                                        # die without closing: no copy into the store
"""


def test_a_crashed_process_leaves_its_decisions_in_the_journal_and_the_next_start_stores_them(store_target, tmp_path):
    journal = tmp_path / "journal"
    proc = subprocess.run([sys.executable, "-c", CRASH.format(tests=str(__import__("pathlib").Path(__file__).parent),
                                                              store=store_target, journal=str(journal))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "answered" in proc.stdout, proc.stderr
    stored = [r for r in _stored(store_target) if r.startswith("crash-")]
    if "://" in store_target:                          # PostgreSQL: answered only once committed to the table
        assert len(stored) == 25 and not list(journal.glob("*.jsonl"))
    else:                                              # DuckDB: answered once journaled, not yet in the table
        assert not stored
        with open(sorted(journal.glob("*.jsonl"))[-1], "ab") as f:
            f.write(b'{"request_id": "torn')                                    # a write cut short by the crash
    ledger = Ledger(store_target, journal)
    assert {f"crash-{i}" for i in range(25)} <= set(_stored(store_target))
    replays = asyncio.run(_record(ledger, range(25), "crash"))
    assert all(replayed for _, replayed in replays)
    ledger.close()
    assert all(p.stat().st_size == 0 for p in journal.glob("*.jsonl"))
    assert json.loads(json.dumps(replays[3][0]))["link_id"] == _response(3)["link_id"]

"""Audit log and decision ledger durability: a full disk mid-burst loses no answered decision and no
audit line and merges no lines; the audit log's hash chain exposes an edited or deleted line; a
malformed journal line is counted and reported; a short write is never left torn."""

import asyncio
import json
import subprocess
import sys
import textwrap

from typer.testing import CliRunner

from tandem.audit import AuditLog, read_audit, verify_audit
from tandem.cli import app
from tandem.decide.api import MESSAGES
from tandem.decide.journal import _segments
from tandem.decide.ledger import Ledger
from tandem.store import open_store
from tandem.transport.http_server import PeerGuard

PEER = "shop-node"


def _new_store(tmp_path) -> str:
    path = str(tmp_path / "bank.duckdb")
    open_store(path, create=True).close()
    return path


def _response(rid: str) -> dict:
    return {"kind": "installments", "link_id": "ab" * 16, "decision": "approve", "pd": 0.01, "limit": 1000.0,
            "model_version": "0" * 16, "terms": [], "reasons": ["x" * 200]}


def _app(ledger: Ledger):
    """A decision endpoint the way bank_app's is: ledger.record, 503 when the journal cannot take it."""
    async def app(scope, receive, send):
        body = json.loads((await receive())["body"])
        try:
            response, _ = await ledger.record(body["request_id"], "h", lambda: _response(body["request_id"]))
            status, out = 200, json.dumps(response).encode()
        except OSError:
            status, out = 503, b'{"detail":"not recorded"}'
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": out})
    return app


async def _call(guard: PeerGuard, request_id: str) -> int:
    scope = {"type": "http", "path": "/v1/checkout/installments",
             "extensions": {"tls": {"client_cert_names": (PEER,)}}}
    body = json.dumps({"request_id": request_id, "link_id": "ab" * 16}).encode()
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(guard(scope, receive, send), 10)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_a_full_disk_during_a_decision_burst_loses_no_answered_decision_and_no_audit_line(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], check=True, timeout=10)
    try:
        store = _new_store(tmp_path)  # the store lives elsewhere; the journal and audit log fill the disk
        ledger = Ledger(store, disk / "ledger")
        audit = AuditLog(disk / "audit.jsonl", "bank", sync_each=False)
        guard = PeerGuard(_app(ledger), PEER, audit, MESSAGES, "decide")

        async def burst():
            statuses = {}
            for wave in range(20):
                ids = [f"r-{wave}-{i}" for i in range(25)]
                for rid, status in zip(ids, await asyncio.gather(*(_call(guard, rid) for rid in ids))):
                    statuses[rid] = status
            return statuses

        statuses = asyncio.run(burst())
        answered = {rid for rid, s in statuses.items() if s == 200}
        assert set(statuses.values()) == {200, 503}, "the disk filled: later requests are refused, not answered"
        assert len(answered) >= 20
        ledger.close()
        audit.close()

        # a restart: every answered decision is in the ledger and has its audit line; nothing merged or torn
        again = Ledger(store, disk / "ledger")
        assert again.skipped == {}
        again.close()
        s = open_store(store)
        stored = set(s.query("SELECT request_id FROM decisions").column("request_id").to_pylist())
        s.close()
        assert answered <= stored
        entries, torn = read_audit(disk / "audit.jsonl")
        assert torn == 0
        outs = {e["session"] for e in entries if e["direction"] == "out"}
        assert answered <= outs
        lines, bad, why = verify_audit(disk / "audit.jsonl")
        assert bad is None, why
        AuditLog(disk / "audit.jsonl", "bank").close()  # reopening continues the chain
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True, timeout=10)  # lazy: even with files still open


def _log(path, n: int) -> None:
    audit = AuditLog(path, "bank")
    for i in range(n):
        audit.record(direction="out", peer=PEER, protocol="decide", session=f"s{i}", message="m", nbytes=i,
                     records=1)
    audit.close()


def _verify(path):
    """``tandem audit PATH --verify``, in process: -> (exit code, its output)."""
    result = CliRunner().invoke(app, ["audit", str(path), "--verify"])
    return result.exit_code, result.output


def test_tampering_with_an_audit_line_makes_verify_name_it(tmp_path):
    log = tmp_path / "audit.jsonl"
    _log(log, 3)
    _log(log, 3)  # a restart appends on the same chain
    code, out = _verify(log)
    assert code == 0 and "6 entries" in out, out
    lines = log.read_bytes().split(b"\n")

    edited = tmp_path / "edited.jsonl"
    lines_e = list(lines)
    lines_e[3] = lines_e[3].replace(b'"bytes":0', b'"bytes":9')
    assert lines_e[3] != lines[3]
    edited.write_bytes(b"\n".join(lines_e))
    code, out = _verify(edited)
    assert code != 0 and "line 5 " in out, out  # the line after the edited one

    deleted = tmp_path / "deleted.jsonl"
    deleted.write_bytes(b"\n".join(lines[:2] + lines[3:]))
    code, out = _verify(deleted)
    assert code != 0 and "line 3 " in out, out


def test_a_malformed_journal_line_is_counted_and_reported(tmp_path, capfd):
    store, journal = _new_store(tmp_path), tmp_path / "journal"
    ledger = Ledger(store, journal)
    ledger.backend._closing.set()  # keep the journal: what a crash leaves
    ledger.backend._writer.join(5)

    async def two(led):
        return await asyncio.gather(*(led.record(f"r{i}", "h", lambda: _response("r")) for i in range(2)))

    asyncio.run(two(ledger))
    seg = _segments(journal)[-1]
    good = seg.read_bytes().split(b"\n")
    seg.write_bytes(good[0] + b"\n" + b'{"request_id": "damaged\n' + good[1] + b"\n")
    again = Ledger(store, journal)
    assert again.skipped == {str(seg): [2]}
    assert "ledger_skipped_lines" in capfd.readouterr().err
    assert [replayed for _, replayed in asyncio.run(two(again))] == [True, True]  # both lines kept
    again.close()


def test_a_short_write_is_cut_back_and_raises_never_torn(tmp_path):
    log = tmp_path / "audit.jsonl"
    _log(log, 1)
    size = log.stat().st_size
    # RLIMIT_FSIZE lets the next line's write go only partly through, then fails: the line must not stay torn
    code = textwrap.dedent(f"""
        import resource, signal
        from tandem.audit import AuditLog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 50}, {size + 50}))
        audit = AuditLog({str(log)!r}, "bank")
        try:
            audit.record(direction="out", peer="p", protocol="decide", session="s", message="m", nbytes=1, records=1)
        except OSError as exc:
            print("refused", exc.errno)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused" in out.stdout, out.stdout + out.stderr
    assert log.stat().st_size == size
    _log(log, 1)
    assert verify_audit(log)[1] is None

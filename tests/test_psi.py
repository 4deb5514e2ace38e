"""The PSI protocol in memory: correctness, what the bytes do not contain, bad messages."""

import hashlib
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.crypto.psi_group import POINT_BYTES, hash_to_points, new_secret, run_salt
from tandem.engine import LocalEngine
from tandem.link.blinder import EngineBlinder
from tandem.link.job import run_entity
from tandem.link.records import EntityRecords, KeyReport
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.message import decode
from tandem.protocols.psi import KeyRun, State
from tandem.protocols.wire import Blinded, KeyStart
from tandem.transport.base import memory_pair
from tandem.transport.session import Session

BLINDER = EngineBlinder(LocalEngine(0))


def run_pair(a_values, b_values, count_only=False, chunk=7):
    """Run one key between two in-memory parties; return both results and both channels."""
    ca, cb = memory_pair("bank", "market")
    runs = {"bank": KeyRun("s", "customers", "phone", a_values, initiator=True, count_only=count_only,
                           secret=new_secret(), blinder=BLINDER, chunk=chunk),
            "market": KeyRun("s", "customers", "phone", b_values, initiator=False, count_only=count_only,
                             secret=new_secret(), blinder=BLINDER, chunk=chunk)}
    errors = []

    def drive(name, channel):
        from tandem.link.job import drive as drive_run
        try:
            drive_run(runs[name], Session(channel, "s", "psi/1", None, 5))
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=drive, args=("market", cb))
    t.start()
    drive("bank", ca)
    t.join()
    assert not errors, errors
    return runs["bank"].result, runs["market"].result, ca, cb


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 200), max_size=40), st.sets(st.integers(0, 200), max_size=40))
def test_both_sides_find_exactly_the_intersection(a, b):
    a_vals, b_vals = [f"+7900{x:07d}" for x in sorted(a)], [f"+7900{x:07d}" for x in sorted(b)]
    ra, rb, _, _ = run_pair(a_vals, b_vals)
    common = a & b
    assert ra.intersection == rb.intersection == len(common)
    assert {a_vals[i] for i in ra.positions} == {f"+7900{x:07d}" for x in common}
    assert {b_vals[i] for i in rb.positions} == {f"+7900{x:07d}" for x in common}
    # the same link id on both sides for the same identifier
    by_value_a = {a_vals[i]: lid for i, lid in zip(ra.positions, ra.link_ids)}
    by_value_b = {b_vals[i]: lid for i, lid in zip(rb.positions, rb.link_ids)}
    assert by_value_a == by_value_b


def test_count_only_reveals_the_size_and_returns_sorted_values():
    a = [f"a{i}@x.ru" for i in range(50)]
    b = [f"a{i}@x.ru" for i in range(30, 90)]
    ra, rb, ca, cb = run_pair(a, b, count_only=True)
    assert ra.intersection == rb.intersection == 20
    assert ra.positions is None and ra.link_ids is None
    for channel in (ca, cb):
        back = b"".join(m.payload for m in map(decode, channel.sent) if m.name == "Reblinded")
        points = [back[i:i + POINT_BYTES] for i in range(0, len(back), POINT_BYTES)]
        assert points == sorted(points)      # no position survives, so no record can be pinned


def test_sent_bytes_hold_no_identifier_raw_normalised_or_plainly_hashed():
    raw = ["+7 (916) 123-45-67", "8 903 555 00 11", "Ivan.Petrov@Mail.RU"]
    norm = ["+79161234567", "+79035550011", "ivan.petrov@mail.ru"]
    others = [f"+7999{i:07d}" for i in range(200)]
    market_values = ["+79161234567"] + others[:50]
    _, _, ca, cb = run_pair(norm[:2] + others, market_values, chunk=64)
    sent = b"".join(ca.sent)
    forbidden = []
    for value in raw + norm + others[:60]:
        digits = "".join(ch for ch in value if ch.isdigit())
        forbidden += [value.encode()] + ([digits.encode(), digits[-10:].encode()] if digits else [])
        for algo in ("md5", "sha1", "sha256", "sha512", "blake2b"):
            digest = hashlib.new(algo, value.encode()).digest()
            forbidden += [digest[:16], digest.hex().encode()[:32]]
        forbidden.append(hash_to_points("customers:phone", b"", [value]))     # hashed to the curve, unblinded
    hits = [f for f in forbidden if f in sent]
    assert hits == []
    # the points this run hashes to (under the salt both sides derived from the two nonces) are
    # never sent unblinded, by either side, in any message
    nonce = {side: next(m.nonce for m in map(decode, ch.sent) if isinstance(m, KeyStart))
             for side, ch in (("bank", ca), ("market", cb))}
    salt = run_salt(bytes.fromhex(nonce["bank"]), bytes.fromhex(nonce["market"]))
    everything = b"".join(ca.sent) + b"".join(cb.sent)
    for values in (norm[:2] + others, market_values):
        hashed = hash_to_points("customers:phone", salt, values)
        points = [hashed[i:i + POINT_BYTES] for i in range(0, len(hashed), POINT_BYTES)]
        assert len(points) == len(values) and not [p for p in points if p in everything]
    blinded = [m for m in map(decode, ca.sent) if m.name == "Blinded"]
    assert sum(len(m.payload) for m in blinded) == len(norm[:2] + others) * POINT_BYTES


def test_the_same_record_blinds_differently_on_every_run():
    values = ["+79161234567", "+79035550011"]          # no match with the peer: values that stay private
    payloads = []
    for _ in range(2):
        _, _, ca, _ = run_pair(values, ["+70000000000"])
        blinded = b"".join(m.payload for m in map(decode, ca.sent) if m.name == "Blinded")
        payloads.append({blinded[i:i + 32] for i in range(0, len(blinded), 32)})
    assert len(payloads[0]) == 2 and not payloads[0] & payloads[1]


def _started_pair():
    a = KeyRun("s", "customers", "phone", ["x"], initiator=True, count_only=False, secret=new_secret(),
               blinder=BLINDER)
    b = KeyRun("s", "customers", "phone", ["x"], initiator=False, count_only=False, secret=new_secret(),
               blinder=BLINDER)
    start_a, start_b = a.start()[0], b.start()[0]
    a.receive(start_b)
    b.receive(start_a)
    return a, b


def test_the_last_reblinded_chunk_goes_out_before_this_side_matches():
    """The receive that completes the exchange answers with the peer's re-blinded chunk and leaves the
    match to the next poll, so the peer is not kept waiting while this side matches."""
    a, b = _started_pair()
    [reblinded_a] = b.receive(a.poll()[0])
    [blinded_b] = b.poll()
    assert a.receive(reblinded_a) == [] and not a.has_work()    # a's own set is back; b's is still to come
    answer = a.receive(blinded_b)                                # the message that completes a's exchange
    assert [m.name for m in answer] == ["Reblinded"]
    assert a.state is State.EXCHANGING and a.result is None and a.has_work()
    [done] = a.poll()
    assert done.name == "KeyDone" and a.state is State.MATCHED and a.final.intersection == 1


@pytest.mark.parametrize("bad,message", [
    (Blinded("s", "customers", "phone", 3, True, bytes(32)), "out of order"),
    (Blinded("s", "customers", "phone", 0, True, b"\x01" * 33), "not whole points"),
    (Blinded("s", "customers", "phone", 0, True, bytes(32)), "malformed group element"),   # a low-order point
    (Blinded("s", "customers", "email", 0, True, bytes(32)), "expected a message for customers/phone"),
    (KeyStart("s", "customers", "phone", "00" * 16, 1, ""), "unexpected KeyStart"),
])
def test_bad_messages_stop_the_run_with_a_reason(bad, message):
    a, _ = _started_pair()
    with pytest.raises(RemoteProtocolError, match=message):
        a.receive(bad)
    assert a.state is State.ERROR


@pytest.mark.parametrize("frame,message", [
    (b"garbage", "shorter than a frame header"),
    (b"XYZ\x01\x01\x00\x00\x00\x02{}", "not a Tandem frame"),
    (b"TDM\x09\x01\x00\x00\x00\x02{}", "peer speaks wire version 9, this node speaks 1"),
    (b"TDM\x01\x63\x00\x00\x00\x02{}", "unknown message type 99"),
    (b"TDM\x01\x03\x00\x00\x00\x02{}", "missing field 'session'"),
    (b'TDM\x01\x03\x00\x00\x00\x05{"x":', "header is not JSON"),
])
def test_malformed_frames_are_refused(frame, message):
    with pytest.raises(RemoteProtocolError, match=message):
        decode(frame)


def test_wrong_field_types_are_refused():
    import struct

    header = b'{"session":"s","entity":"customers","key":"phone","nonce":"00","size":"5"}'
    frame = b"TDM" + struct.pack(">BBI", 1, KeyStart.CODE, len(header)) + header
    with pytest.raises(RemoteProtocolError, match="field 'size' has the wrong type"):
        decode(frame)


def _records(ids, phones, emails, dup_phone=0):
    return EntityRecords(ids=np.array(ids, dtype=np.int64),
                         values={"phone": np.array(phones, dtype=object), "email": np.array(emails, dtype=object)},
                         total=len(ids), reports={"phone": KeyReport(duplicate_records=dup_phone),
                                                  "email": KeyReport()})


def test_multi_key_priority_is_one_to_one_and_identical_on_both_sides():
    # bank 1 has phone P1 and email E2; market 10 has P1, market 20 has E2: phone wins, 20 stays unlinked
    bank = _records([1, 2], ["P1", None], ["E2", "E3"])
    market = _records([10, 20, 30], ["P1", "P9", None], ["E7", "E2", "E3"])
    ca, cb = memory_pair("bank", "market")
    out = {}

    def side(name, channel, recs, init):
        out[name] = run_entity(Session(channel, "s", "psi/1", None, 5), recs, "customers", ["phone", "email"],
                               initiator=init, count_only=False, blinder=BLINDER)

    t = threading.Thread(target=side, args=("market", cb, market, False))
    t.start()
    side("bank", ca, bank, True)
    t.join()
    rows_b = {r["link_id"]: (r["local_id"], r["matched_on"]) for r in out["bank"].rows.to_pylist()}
    rows_m = {r["link_id"]: (r["local_id"], r["matched_on"]) for r in out["market"].rows.to_pylist()}
    assert rows_b.keys() == rows_m.keys()
    pairs = {(rows_b[k][0], rows_m[k][0], rows_b[k][1]) for k in rows_b}
    assert pairs == {(1, 10, "phone"), (2, 30, "email")}


def _incremental_pair(a_values, b_values, mem_a=None, mem_b=None):
    ca, cb = memory_pair("bank", "market")
    runs = {"bank": KeyRun("s", "customers", "phone", a_values, initiator=True, count_only=False,
                           secret=new_secret(), blinder=BLINDER, chunk=5, memory=mem_a, keep_memory=True),
            "market": KeyRun("s", "customers", "phone", b_values, initiator=False, count_only=False,
                             secret=new_secret(), blinder=BLINDER, chunk=5, memory=mem_b, keep_memory=True)}
    from tandem.link.job import drive

    t = threading.Thread(target=drive, args=(runs["market"], Session(cb, "s", "psi/1", None, 5)))
    t.start()
    drive(runs["bank"], Session(ca, "s", "psi/1", None, 5))
    t.join()
    return runs, ca


def test_incremental_run_sends_only_changes_and_keeps_link_ids(tmp_path):
    from tandem.link.memory import load_memory, save_memory

    a = [f"+7916000{i:04d}" for i in range(40)]
    b = [f"+7916000{i:04d}" for i in range(20, 70)]
    first, _ = _incremental_pair(a, b)
    assert not first["bank"].incremental and first["bank"].result.intersection == 20
    ids_before = {a[p]: lid for p, lid in zip(first["bank"].result.positions, first["bank"].result.link_ids)}
    # the kept state survives a save/load round trip
    save_memory(tmp_path / "a.npz", first["bank"].memory)
    mem_a = load_memory(tmp_path / "a.npz")
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o600
    # bank adds 5 records (3 shared) and drops 4 shared ones; market adds 2 shared ones
    a2 = a[4:] + [f"+7916000{i:04d}" for i in (65, 66, 67, 90, 91)]
    b2 = b + ["+79160000002", "+79160000005"]
    second, ca = _incremental_pair(a2, b2, mem_a, first["market"].memory)
    assert second["bank"].incremental and second["market"].incremental
    blinded = sum(m.records for m in map(decode, ca.sent) if m.name == "Blinded")
    assert blinded == 5                                       # only the new records were blinded and sent
    expected = set(a2) & set(b2)
    got = {a2[p] for p in second["bank"].result.positions}
    assert got == expected and second["market"].result.intersection == len(expected)
    ids_after = {a2[p]: lid for p, lid in zip(second["bank"].result.positions, second["bank"].result.link_ids)}
    assert all(ids_after[v] == ids_before[v] for v in expected & set(ids_before))
    # a side that lost its state makes both start afresh, still correct
    third, _ = _incremental_pair(a2, b2, None, second["market"].memory)
    assert not third["bank"].incremental and not third["market"].incremental
    assert {a2[p] for p in third["bank"].result.positions} == expected


def test_the_send_order_comes_from_the_os_csprng_not_a_seeded_numpy_generator(monkeypatch):
    """A PCG64 seeded from 64 bits (the old shuffle) is out: the run succeeds with numpy's generators
    unusable, and two runs over the same set send in different orders."""
    from tandem.crypto.psi_group import secure_permutation

    def no_numpy_rng(*args, **kwargs):
        raise AssertionError("the PSI send order must not come from numpy's generators")

    monkeypatch.setattr(np.random, "default_rng", no_numpy_rng)
    values = [f"+7900{x:07d}" for x in range(60)]
    ra, rb, _, _ = run_pair(values, values[:30])
    assert ra.intersection == rb.intersection == 30
    first, second = secure_permutation(1000), secure_permutation(1000)
    assert sorted(first.tolist()) == list(range(1000)) and not np.array_equal(first, second)


def test_members_agrees_with_a_set_lookup_including_shared_heads_and_trailing_zeros():
    """The sorted-head lookup finds exactly the points a set would, also where two pool points share their
    first 8 bytes (the exact fallback) and where a point ends in zero bytes (which ``S32`` indexing strips)."""
    from tandem.protocols.psi import _members

    rng = np.random.default_rng(7)
    own = np.frombuffer(rng.integers(0, 256, (3000, 32), dtype=np.uint8).tobytes(), dtype="S32").copy()
    pool = np.frombuffer(rng.integers(0, 256, (2000, 32), dtype=np.uint8).tobytes(), dtype="S32").copy()
    pool[:700] = own[::3][:700]
    own[5] = bytes(range(1, 29)) + bytes(4)
    pool[700] = own[5]
    expected = np.isin(own, pool)
    assert _members(own, pool).tolist() == expected.tolist() and expected.sum() >= 701
    shared_head = np.array([b"\x01" * 8 + b"\x02" * 23 + b"\x00", b"\x01" * 8 + b"\x03" * 24, b"\x05" * 32], "S32")
    assert _members(shared_head, shared_head[:2][::-1]).tolist() == [True, True, False]
    assert _members(shared_head, shared_head[:1]).tolist() == [True, False, False]
    assert _members(own[:0], pool).tolist() == [] and not _members(own, pool[:0]).any()

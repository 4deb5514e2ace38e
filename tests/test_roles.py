"""The pieces every protocol and every tree share: payload framing and bitmaps, the role base's
terminal ERROR state, split decisions on the wire, and the one go-left rule."""

import numpy as np
import pytest

from tandem.learn.secureboost.passive import PassiveBoost
from tandem.learn.secureboost.shared import Leaf, Route, State
from tandem.learn.splitting import Split
from tandem.learn.tree import Tree, goes_left, leaves, predict_binned
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.framing import (
    bucket_sums_passes,
    bucket_sums_payload,
    frame_blobs,
    pack_mask,
    unframe_blobs,
    unpack_mask,
)
from tandem.protocols.wire import BoostStart, EncryptedGradients


def test_framing_keeps_the_wire_bytes():
    blobs = [b"abc", b"", b"\x00" * 5]
    assert frame_blobs(blobs) == b"\x00\x00\x00\x03abc\x00\x00\x00\x00\x00\x00\x00\x05" + b"\x00" * 5
    assert unframe_blobs(frame_blobs(blobs), 3) == blobs
    passes = [b"low", b"high", b"m"]
    old = b"".join(len(p).to_bytes(8, "big") + p for p in passes)  # crypto/he.py's framing before the move
    assert bucket_sums_payload(passes, 200) == old and bucket_sums_passes(old, 200) == passes
    assert bucket_sums_payload([b"one"], 16) == b"one" and bucket_sums_passes(b"one", 16) == [b"one"]
    for bad in (b"\x00\x00\x00\x09short", b"\x00\x00"):
        with pytest.raises(RemoteProtocolError, match="malformed framed payload"):
            unframe_blobs(bad)
    with pytest.raises(RemoteProtocolError, match="malformed framed payload"):
        unframe_blobs(frame_blobs(blobs), 2)
    with pytest.raises(RemoteProtocolError):
        bucket_sums_passes(b"", 200)


def test_bitmaps_round_trip_and_refuse_padding():
    mask = np.array([True, False, True, True, False, False, False, True, True])
    assert pack_mask(mask) == np.packbits(mask).tobytes()
    assert np.array_equal(unpack_mask(pack_mask(mask), len(mask)), mask)
    for blob, n in ((b"\xff\xff", 9), (b"\x00", 9), (b"\x00\x00", 3)):
        with pytest.raises(RemoteProtocolError, match="malformed row bitmap"):
            unpack_mask(blob, n)


def test_any_error_inside_receive_ends_the_role_for_good():
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="malformed framed payload"):  # raised by the framing itself
        passive.receive(BoostStart("s", 10, 1, 2, 16, 0, b"\x00\x00\x00\x09short"))
    assert passive.state is State.ERROR and passive.error == "malformed framed payload"
    with pytest.raises(LocalProtocolError, match="the run is over"):
        passive.receive(BoostStart("s", 10, 1, 2, 16, 0, b""))
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(RemoteProtocolError, match="unexpected EncryptedGradients while wait_ready"):
        passive.receive(EncryptedGradients("s", 0, b""))
    assert passive.state is State.ERROR


def test_split_decisions_name_themselves_on_the_wire():
    left = np.array([True, False])
    assert Leaf().wire(0) == "leaf"
    assert Route(left).wire(0) == "rows"  # the active party's own split
    theirs = Route(left, owner=1, split_id="ab12")
    assert theirs.wire(1) == "own:ab12" and theirs.wire(0) == "rows"


def test_the_go_left_rule_is_the_same_for_one_row_and_many():
    bins = np.array([0, 3, 4, 7, 7], dtype=np.uint8)  # bin 7 holds missing values
    for missing_left in (False, True):
        many = goes_left(bins, 3, missing_left, 7)
        one = [goes_left(int(b), 3, missing_left, 7) for b in bins]
        assert many.tolist() == one == [True, True, False, missing_left, missing_left]
    per_row = goes_left(bins, np.array([0, 3, 3, 0, 0]), np.array([0, 0, 0, 1, 0], bool), 7)
    assert per_row.tolist() == [True, True, False, True, False]


def test_leaves_follow_own_bins_and_other_parties_bits():
    tree = Tree()
    tree.add(0.0)
    li, ri = tree.split(0, Split(0, 1, False, 1.0, -2.0, 3.0), total_g=-1.0, total_h=5.0, learning_rate=0.5, l2=1.0)
    assert (tree.value[li], tree.value[ri]) == (0.5 * 2.0 / 4.0, 0.5 * -1.0 / 3.0)
    tree.split(ri, Split(5, 0, True, 0.5, 0.0, 1.0), total_g=1.0, total_h=3.0, learning_rate=0.5, l2=1.0)
    binned = np.array([[0], [2], [2], [3]], dtype=np.uint8)  # feature 5 is another party's slot
    bits = np.array([[False], [True], [False], [True]])
    column = np.array([-1, -1, 0, -1, -1])
    assert leaves(tree, binned, 3, bits, column).tolist() == [1, 3, 4, 3]
    own_only = Tree()
    own_only.add(0.25)
    own_only.split(0, Split(0, 1, True, 1.0, -2.0, 3.0), -1.0, 5.0, 1.0, 1.0)
    assert predict_binned(own_only, binned, 3).tolist() == [0.5, -1 / 3, -1 / 3, 0.5]


def test_a_bug_inside_receive_becomes_a_local_error_the_driver_can_report(monkeypatch):
    def broken(self, msg):
        raise IndexError("index 3 is out of bounds")

    monkeypatch.setitem(PassiveBoost.HANDLERS, (State.WAIT_READY, BoostStart), broken)
    passive = PassiveBoost("s", np.zeros((10, 2), dtype=np.uint8))
    passive.start()
    with pytest.raises(LocalProtocolError, match="internal error: IndexError: index 3") as caught:
        passive.receive(BoostStart("s", 10, 1, 2, 16, 0, b""))
    assert isinstance(caught.value.__cause__, IndexError)
    assert passive.state is State.ERROR and passive.error.startswith("internal error")

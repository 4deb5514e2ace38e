"""Attacks on ``insight/1`` by a dishonest partner, each performed by driving the real sans-I/O roles with a
forged message: a measure holder that encrypts inflated values, a group holder that returns a row's own
ciphertext or a repeated one as a group sum or replays ciphertexts of another query, and two queries that
must not share a key. The honest path with noise passes the same checks in test_insight_protocol.py."""

from functools import partial

import numpy as np
import pytest

from tandem.crypto.he import SecretHe
from tandem.insight.budget import InsightPolicy
from tandem.insight.dp import noise_share, share_margin, slot_scales, threshold_margin
from tandem.insight.job import InsightParty
from tandem.protocols.errors import LocalProtocolError, RemoteProtocolError
from tandem.protocols.insight import Bounds, GroupHolder, MeasureHolder, Release
from tandem.protocols.message import decode
from tandem.protocols.wire import EncryptedMeasures, InsightKey, InsightRelease, MaskedSums, NoisySums

HE = SecretHe.generate()
HI = 2_000_000                                    # the declared per-row bound of the measure, fixed point
SCALES = slot_scales(1.0, [1, HI])                # noise on: the checks allow one honest share's margin
BOUNDS = Bounds([(1, 1), (0, HI)], [share_margin(b) for b in SCALES], ["count", "market.avg_check"])
RELEASE = Release(20, threshold_margin(SCALES[0]))


def world(rng):
    """3 groups of 150 customers; honest values within the bounds."""
    groups = rng.permutation(np.repeat(np.arange(3), 150))
    values = np.stack([np.ones(450, np.int64), rng.integers(0, HI, 450)], axis=1)
    return values, groups


def group_holder(groups):
    gh = GroupHolder("s", groups, 3, SCALES, RELEASE, noise=noise_share, bounds=BOUNDS)
    gh.start()
    return gh


def measure_holder(values, he=HE):
    mh = MeasureHolder("s", values, 3, SCALES, RELEASE, he, noise=noise_share, bounds=BOUNDS)
    return mh, mh.start() + list(mh.chunks())


def wire(msg):
    return decode(msg.encode())


@pytest.mark.parametrize("slot, value, message", [
    (1, 10 ** 12, "market.avg_check sums to"),     # one customer's measure far beyond [0, HI]: tags its group
    (0, 1_000, "counts"),                          # one customer counted 1,000 times
])
def test_a_measure_holder_that_encrypts_an_inflated_value_is_refused(slot, value, message):
    """The measure holder encrypts one customer's value far beyond the declared bound (to see which group
    the customer is in), decrypts the masked sums honestly and adds no noise: the group holder checks the
    unmasked sums against its own group sizes and the bounds, and sends no release."""
    values, groups = world(np.random.default_rng(1))
    values[7, slot] = value
    gh = group_holder(groups)
    gh.receive(wire(InsightKey("s", 450, 2, HE.public_bytes())))
    masked = gh.receive(wire(EncryptedMeasures("s", 0, 450, True, HE.dump(HE.encrypt_slots(values)))))
    decrypted = HE.decrypt_slots(HE.load(masked[0].payload), 2)
    noisy = b"".join(int(v).to_bytes(16, "big", signed=True) for v in decrypted.ravel())
    with pytest.raises(RemoteProtocolError, match=f"group {groups[7]}.*{message}.*exceed the query's bounds"):
        gh.receive(wire(NoisySums("s", 3, noisy)))
    assert gh.state.value == "error" and not hasattr(gh, "groups_")


def test_the_measure_holder_cannot_even_start_with_rows_outside_its_declared_bounds():
    values, _ = world(np.random.default_rng(2))
    values[3, 1] = HI + 1
    with pytest.raises(LocalProtocolError, match=r"market.avg_check has values outside its bounds \[0, 2000000\]"):
        measure_holder(values)


def forged_sums(pick):
    """An honest run up to the group holder's masked sums; ``pick(inputs, honest)`` forges the sums it sends."""
    values, groups = world(np.random.default_rng(3))
    mh, sent = measure_holder(values)
    gh = group_holder(groups)
    for m in sent:
        out = gh.receive(wire(m))
    inputs = HE.load(b"".join(m.payload for m in sent[1:]))               # one chunk: the rows' ciphertexts
    honest = HE.load(out[0].payload)
    return mh, MaskedSums("s", 3, HE.dump(pick(inputs, honest)))


@pytest.mark.parametrize("pick, message", [
    (lambda inputs, honest: inputs[[4, 9, 11]], "not masked"),                 # single rows' own ciphertexts
    (lambda inputs, honest: inputs[[4, 4, 4]], "same ciphertext"),             # one row, repeated
    (lambda inputs, honest: honest[[0, 1, 1]], "same ciphertext"),             # another group's sum, repeated
])
def test_a_group_holder_that_returns_a_row_or_a_repeated_ciphertext_as_a_group_sum_is_refused(pick, message):
    """The measure holder refuses before it decrypts anything back, so the group holder learns nothing."""
    mh, forged = forged_sums(pick)
    with pytest.raises(RemoteProtocolError, match=message):
        mh.receive(wire(forged))
    assert mh.state.value == "error"


def test_each_query_has_its_own_key_and_ciphertexts_of_one_do_not_pass_in_another():
    """Two queries of the same node: two public keys; masked sums of the first, replayed as the sums of the
    second, are refused (they do not decrypt to masked sums under the second key)."""
    assert InsightParty("market", "unused", InsightPolicy()).new_key == SecretHe.generate   # the node's default
    party = InsightParty("market", "unused", InsightPolicy(), partial(SecretHe.generate, key_bits=1024))  # fast
    values, groups = world(np.random.default_rng(4))
    first, second = party.key_pair(), party.key_pair()
    assert first.public_bytes() != second.public_bytes()
    mh1, sent1 = measure_holder(values, first)
    mh2, sent2 = measure_holder(values, second)
    assert sent1[0].payload != sent2[0].payload                           # the InsightKey of each query
    gh = group_holder(groups)
    for m in sent1:
        old = gh.receive(wire(m))
    with pytest.raises(RemoteProtocolError, match="not masked|sums are out of range"):
        mh2.receive(wire(old[0]))


def test_a_release_of_a_group_below_the_threshold_is_refused():
    values, _ = world(np.random.default_rng(5))
    mh, _ = measure_holder(values)
    mh.state = mh.state.WAIT_RELEASE
    small = RELEASE.min_group_size + RELEASE.margin - 1
    with pytest.raises(RemoteProtocolError, match="below the minimum group size"):
        mh.receive(wire(InsightRelease("s", [2], small.to_bytes(8, "big") + (0).to_bytes(8, "big"))))

"""The homomorphic-encryption door: packing, serialisation, and encrypted histograms that equal the plaintext ones."""

import numpy as np
import pytest

from tandem.crypto.he import BucketSums, HeError, PublicHe, SecretHe, dequantise, pack, quantise, unpack
from tandem.learn.histogram import build_histogram, histogram_from_sums


@pytest.fixture(scope="module")
def keys():
    return SecretHe.generate("ou", 2048)


def test_pack_and_unpack_keep_signed_sums_exact():
    g = quantise(np.array([-0.75, 0.5, -0.01, 0.3]))
    h = quantise(np.array([0.1875, 0.25, 0.0099, 0.21]))
    packed = pack(g, h)
    gs, hs = unpack([sum(int(v) for v in packed[:, 0])])
    assert gs[0] == g.sum() and hs[0] == h.sum()
    assert dequantise(g[0]) == -0.75
    with pytest.raises(ValueError):
        pack(g, -h)


@pytest.mark.parametrize("n_bins", [16, 200, 256])
def test_encrypted_histogram_equals_the_plaintext_one_bit_for_bit(keys, n_bins):
    rng = np.random.default_rng(3)
    n, f = 1500, 3
    binned = rng.integers(0, n_bins, (n, f)).astype(np.uint8)
    binned[:, 2] = np.minimum(binned[:, 2], n_bins - 2)                # a feature without missing values
    p = rng.random(n)
    y = (rng.random(n) < p).astype(float)
    g_q, h_q = quantise(p - y), quantise(p * (1 - p))
    passive = PublicHe.from_bytes(keys.public_bytes())                 # only the public key crosses
    cts = passive.load(keys.dump(keys.encrypt_gh(g_q, h_q)))          # ciphertexts on the wire and back
    rows = np.sort(rng.choice(n, 600, replace=False))
    passes = passive.bucket_sums(cts, rows, binned[rows], n_bins)
    encrypted = histogram_from_sums(*keys.decrypt_bucket_sums(passes, f, n_bins))
    assert np.array_equal(encrypted, build_histogram(binned, g_q, h_q, rows, n_bins))
    with pytest.raises(HeError, match="wrong size|malformed"):
        keys.decrypt_bucket_sums(passes, f + 1, n_bins)


@pytest.mark.parametrize("scheme, n_bins", [("ou", 16), ("ou", 200), ("paillier", 32)])
def test_packed_sums_taken_over_parts_equal_the_plaintext_histogram(keys, scheme, n_bins):
    """Several sums per ciphertext (cipher compression), accumulated over parts of the rows as they
    arrive; extreme sums (GOSS-amplified gradients, both signs) keep every bit."""
    he = keys if scheme == "ou" else SecretHe.generate("paillier", 2048)
    rng = np.random.default_rng(5)
    n, f = 900, 3
    binned = rng.integers(0, n_bins, (n, f)).astype(np.uint8)
    g_q, h_q = quantise(rng.uniform(-8, 8, n)), quantise(rng.uniform(0, 2, n))
    g_q[binned[:, 0] == 1] = quantise(-8.0)                             # a bin of large negative sums
    cts = [he.encrypt_gh(g_q[a:b], h_q[a:b]) for a, b in ((0, 250), (250, 600), (600, n))]
    sums, rows = BucketSums(PublicHe.from_bytes(he.public_bytes()), n_bins), np.arange(n)
    for part, (a, b) in zip(cts, ((0, 250), (250, 600), (600, n))):
        picks = rows[a:b][rows[a:b] % 4 != 0] - a                       # some rows of each part
        sums.add(part, picks, binned[a + picks])
    picked = rows[rows % 4 != 0]
    packed, plain = sums.passes(packed=True), sums.passes()
    per = he.sums_per_ciphertext
    assert per == (5 if scheme == "ou" else 15)
    assert [he.load(b).rows for b in packed] == [-(-he.load(b).rows // per) for b in plain]
    assert sum(map(len, packed)) < 1.25 * sum(map(len, plain)) / per     # about per times fewer bytes
    expected = build_histogram(binned, g_q, h_q, picked, n_bins)
    assert np.array_equal(histogram_from_sums(*he.decrypt_bucket_sums(packed, f, n_bins, packed=True)), expected)
    assert np.array_equal(histogram_from_sums(*he.decrypt_bucket_sums(plain, f, n_bins)), expected)
    with pytest.raises(HeError, match="wrong size"):
        he.decrypt_bucket_sums(plain, f, n_bins, packed=True)            # unpacked sums read as packed
    with pytest.raises(HeError, match="wrong size"):
        he.decrypt_bucket_sums(packed, f + 1, n_bins, packed=True)


def test_bucket_sums_of_a_sample_pick_their_ciphertexts(keys):
    """GOSS: only sampled rows are encrypted; ``picks`` index them."""
    rng = np.random.default_rng(4)
    n, f, n_bins = 400, 2, 8
    binned = rng.integers(0, n_bins, (n, f)).astype(np.uint8)
    g_q, h_q = quantise(rng.normal(size=n)), quantise(rng.random(n))
    sample = np.sort(rng.choice(n, 100, replace=False))
    cts = keys.encrypt_gh(g_q[sample], h_q[sample])
    picks = np.arange(0, 100, 3)
    passes = keys.bucket_sums(cts, picks, binned[sample[picks]], n_bins)
    assert np.array_equal(histogram_from_sums(*keys.decrypt_bucket_sums(passes, f, n_bins)),
                          build_histogram(binned, g_q, h_q, sample[picks], n_bins))


def test_bad_keys_and_ciphertexts_are_refused(keys):
    with pytest.raises(HeError, match="public key"):
        PublicHe.from_bytes(b"not a key")
    with pytest.raises(HeError, match="malformed ciphertexts"):
        keys.load(b"\x00garbage")
    with pytest.raises(ValueError, match="one of"):
        SecretHe.generate("rsa")

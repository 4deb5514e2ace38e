"""Both X25519 backends (OpenSSL through ``cryptography``, Intel crypto_mb's multi-buffer ladder) give the
bytes RFC 7748 defines, on its vectors, random inputs and the edge cases; the choice reaches the workers,
the node and its ``--json``. Where the CPU cannot run crypto_mb, its comparisons skip naming what is missing,
and the tests that it is refused cleanly run instead."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import one_line_error, run_cli

from tandem.console import console
from tandem.crypto import x25519_mb
from tandem.crypto.backends import BackendUnavailable, check_backend, choose_backend
from tandem.crypto.psi_group import InvalidPoint, blind
from tandem.engine import LocalEngine
from tandem.errors import InputError
from tandem.link.blinder import EngineBlinder
from tandem.link.result import LinkResult
from tandem.node_config import load_node_config
from tandem.printers import print_link_results

P = 2**255 - 19
MB_REASON = x25519_mb.unavailable_reason()
needs_mb = pytest.mark.skipif(MB_REASON is not None, reason=f"crypto_mb cannot run here: {MB_REASON}")
BACKENDS = ["openssl", pytest.param("mb", marks=needs_mb)]


def reference_x25519(k: bytes, u: bytes) -> bytes:
    """RFC 7748 section 5 in plain Python integers: the answer both backends are held to."""
    scalar = bytearray(k)
    scalar[0] &= 248
    scalar[31] = (scalar[31] & 127) | 64
    n = int.from_bytes(scalar, "little")
    x1 = (int.from_bytes(u, "little") & ((1 << 255) - 1)) % P
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (n >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b, c, d = x2 + z2, x2 - z2, x3 + z3, x3 - z3
        aa, bb, da, cb = a * a % P, b * b % P, d * a % P, c * b % P
        e = (aa - bb) % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def le(n: int) -> bytes:
    return n.to_bytes(32, "little")


# RFC 7748 section 5.2
VECTORS = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]
ITERATED = {
    1: "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
    1000: "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
}
ORDER_8 = (
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
)
LOW_ORDER = [0, 1, P - 1, P, P + 1, *ORDER_8]  # every u whose product is all zero, canonical or not
TWIST = [u for u in range(2, 200) if pow((u**3 + 486662 * u**2 + u) % P, (P - 1) // 2, P) == P - 1][:12]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k, u, expected", VECTORS)
def test_rfc7748_vectors(backend, k, u, expected):
    assert blind(bytes.fromhex(k), bytes.fromhex(u), backend).hex() == expected
    assert reference_x25519(bytes.fromhex(k), bytes.fromhex(u)).hex() == expected  # the reference is right too


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("iterations", sorted(ITERATED))
def test_rfc7748_iterated(backend, iterations):
    k = u = le(9)
    for _ in range(iterations):
        k, u = blind(k, u, backend), k
    assert k.hex() == ITERATED[iterations]


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_inputs_and_edge_cases_equal_the_reference(backend):
    rng = np.random.default_rng(7)
    secret = os.urandom(32)
    random_points = [rng.bytes(32) for _ in range(13)]  # half with the top bit set
    noncanonical = [le(P + d) for d in range(2, 19)] + [le(u + 2**255) for u in (9, *TWIST[:3])]
    points = random_points + [le(u) for u in TWIST] + noncanonical
    got = blind(secret, b"".join(points), backend)  # 42 points: not a multiple of 8 lanes
    assert got == b"".join(reference_x25519(secret, p) for p in points)
    assert got[-4 * 32 : -3 * 32] == blind(secret, le(9), backend)  # 9 + 2^255 is the base point


def test_twist_points_are_on_the_twist():
    assert len(TWIST) == 12 and 9 not in TWIST  # the base point is on the curve


@needs_mb
def test_mb_equals_openssl_on_many_random_points():
    secret, points = os.urandom(32), os.urandom(32 * 20_003)
    assert blind(secret, points, "mb") == blind(secret, points, "openssl")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("u", [*LOW_ORDER, *(u + 2**255 for u in LOW_ORDER if u < 2**255)])
def test_low_order_points_are_refused(backend, u):
    with pytest.raises(InvalidPoint):
        blind(os.urandom(32), le(u), backend)
    with pytest.raises(InvalidPoint):  # also among ordinary points, in any lane
        blind(os.urandom(32), os.urandom(32 * 5) + le(u) + os.urandom(32 * 4), backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_8_points_plus_p_mask_to_ordinary_points(backend):
    # u + p >= 2^255 for both order-8 points: RFC 7748 masks bit 255, leaving u + p - 2^255 = u - 19,
    # an ordinary point (the "+p" forms are low order only to code that keeps that bit)
    secret = os.urandom(32)
    for u in ORDER_8:
        assert blind(secret, le(u + P), backend) == reference_x25519(secret, le(u - 19)) != bytes(32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_points_are_refused(backend):
    with pytest.raises(InvalidPoint):
        blind(os.urandom(32), os.urandom(33), backend)
    assert blind(os.urandom(32), b"", backend) == b""


def test_the_library_sees_only_canonical_field_elements():
    points = [le(9), le(P + 5), le(P - 1), le(2**255 + 7), le(2**256 - 1), le(P)]
    buf = x25519_mb.canonical_points(b"".join(points))
    assert buf.shape == (8, 32)
    decoded = [int.from_bytes(row.tobytes(), "little") for row in buf]
    assert decoded == [9, 5, P - 1, 7, 18, 0, 9, 9]  # the tail padded with the base point


def test_auto_falls_back_to_openssl_and_mb_is_refused_saying_why():
    if MB_REASON is None:
        pytest.skip("crypto_mb runs on this CPU: auto picks mb (the forced fallback is tested below)")
    assert choose_backend("auto") == "openssl"
    with pytest.raises(BackendUnavailable) as refused:
        choose_backend("mb")
    message = str(refused.value)
    assert "\n" not in message and "use auto or openssl" in message
    assert "avx512ifma" in message or "not installed" in message or "Linux x86-64" in message
    with pytest.raises(BackendUnavailable):
        blind(os.urandom(32), le(9), "mb")  # the crypto door itself refuses too


def test_the_library_status_is_checked_never_trusted():
    lib = x25519_mb.load_library()
    if isinstance(lib, str):
        pytest.skip(f"crypto_mb is not installed here: {lib}")
    with pytest.raises(ValueError, match="whole 32-byte u-coordinates, got 40 bytes"):
        x25519_mb.multiply_with(lib, os.urandom(32), os.urandom(40))
    if MB_REASON is None:
        assert x25519_mb.multiply_with(lib, *(bytes.fromhex(h) for h in VECTORS[0][:2])).hex() == VECTORS[0][2]
        return
    # on a CPU the library cannot serve, calling it anyway returns non-zero lane statuses: one clear error
    with pytest.raises(x25519_mb.MultiBufferError, match=r"failed on 20 of 20 points \(status 0x"):
        x25519_mb.multiply_with(lib, os.urandom(32), os.urandom(32 * 20))


def test_openssl_is_used_when_asked_even_where_mb_runs(monkeypatch):
    def no_mb(*args):
        raise AssertionError("crypto_mb called for backend openssl")

    monkeypatch.setattr(x25519_mb, "multiply", no_mb)
    assert choose_backend("openssl") == "openssl"
    secret, points = os.urandom(32), os.urandom(32 * 10)
    blinder = EngineBlinder(LocalEngine(0), choose_backend("openssl"))
    assert blinder.blind(secret, points) == b"".join(
        reference_x25519(secret, points[i : i + 32]) for i in range(0, 320, 32)
    )


def test_the_backend_reaches_the_worker_processes():
    secret, points = os.urandom(32), os.urandom(32 * 5000)  # above INLINE_BELOW: split over the workers
    with LocalEngine(2) as engine:
        expected = blind(secret, points)
        assert EngineBlinder(engine, "openssl").blind(secret, points) == expected
        if MB_REASON is None:
            assert EngineBlinder(engine, "mb").blind(secret, points) == expected
        else:  # a worker told to use mb where it cannot run says so (it never silently uses OpenSSL)
            with pytest.raises(BackendUnavailable, match="cannot run here"):
                EngineBlinder(engine, "mb").blind(secret, points)


def test_unknown_backend_names_are_refused(tmp_path, small_world):
    with pytest.raises(InputError, match="--backend must be one of auto, mb, openssl, got 'fast'"):
        check_backend("fast")
    shutil.copytree(small_world, tmp_path / "w")
    proc = run_cli("link", "--world", str(tmp_path / "w"), "--backend", "fast")
    one_line_error(proc, "--backend must be one of auto, mb, openssl")
    config = _bank_config(tmp_path / "w")
    config.write_text(config.read_text() + '\n[link]\nbackend = "fast"\n')
    with pytest.raises(InputError, match=r"bank\.toml: \[link\] backend must be one of auto, mb, openssl"):
        load_node_config(config)


def _bank_config(world):
    from tandem.devcluster import write_configs

    return write_configs(world)["bank"]


def test_config_backend_loads_and_defaults_to_auto(tmp_path, small_world):
    shutil.copytree(small_world, tmp_path / "w")
    config = _bank_config(tmp_path / "w")
    assert load_node_config(config).link_backend == "auto"
    config.write_text(config.read_text() + '\n[link]\nbackend = "openssl"\n')
    assert load_node_config(config).link_backend == "openssl"


@pytest.mark.skipif(MB_REASON is None, reason="crypto_mb runs on this CPU: --backend mb is accepted")
def test_link_with_mb_where_it_cannot_run_is_one_line(tmp_path, small_world):
    shutil.copytree(small_world, tmp_path / "w")
    proc = run_cli("link", "--world", str(tmp_path / "w"), "--backend", "mb")
    one_line_error(proc, "--backend mb: multi-buffer X25519 cannot run here", "use auto or openssl")
    config = _bank_config(tmp_path / "w")
    config.write_text(config.read_text() + '\n[link]\nbackend = "mb"\n')
    proc = run_cli("node", "--config", str(config), "--link", "market")
    one_line_error(proc, "[link] backend mb: multi-buffer X25519 cannot run here", "use auto or openssl")


def test_link_reports_the_backend_it_used(tmp_path, small_world):
    shutil.copytree(small_world, tmp_path / "w")
    proc = run_cli("link", "--world", str(tmp_path / "w"), "--entities", "customers", "--backend", "openssl", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == "openssl" and report["entities"]["customers"]["linked"] > 0


def test_the_printed_table_names_the_backend():
    result = LinkResult("bank", "market", "s", False, False, 1.0, {"node": 1, "workers": []}, "mb", {})
    with console.capture() as out:
        print_link_results({"bank": result})
    assert "(X25519: mb)" in out.get()


def test_without_the_wheels_mb_is_refused_and_auto_is_openssl(monkeypatch):
    monkeypatch.setattr(x25519_mb, "_wheel_file", lambda *names: None)  # as on a machine without them
    reason = x25519_mb.load_library.__wrapped__()
    assert isinstance(reason, str) and "not installed (pip install ipp-crypto intel-cmplr-lib-rt)" in reason
    monkeypatch.setattr(x25519_mb, "unavailable_reason", lambda: reason)
    assert choose_backend("auto") == "openssl" and blind(le(9), le(9), "auto") == reference_x25519(le(9), le(9))
    with pytest.raises(BackendUnavailable, match="not installed"):
        choose_backend("mb")


def test_crypto_mb_loads_only_when_a_backend_asks_for_it():
    code = (
        "from tandem.crypto.psi_group import blind; import tandem.node, tandem.cli; "
        "blind(bytes(32), bytes([9]) + bytes(31), 'openssl'); "
        "print('libcrypto_mb' in open('/proc/self/maps').read())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr

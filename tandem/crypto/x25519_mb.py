"""Multi-buffer X25519: Intel crypto_mb's ``mbx_x25519_mb8`` (eight Montgomery ladders at once with
AVX-512 IFMA), loaded with ctypes from the ``ipp-crypto`` wheel and its runtime, ``intel-cmplr-lib-rt``.

Nothing is loaded at import. ``unavailable_reason()`` loads the libraries once per process (from the
installed wheels' file lists, else ``sys.prefix/lib``: no system install, no download), asks the library
itself whether this CPU can run it (``mbx_get_cpu_features`` / ``mbx_is_crypto_mb_applicable``) and checks
RFC 7748's first test vector; it returns ``None`` when ``multiply`` may be used, else one line saying why not.

The wheels' libraries carry no RUNPATH, so the runtime (``libintlc``, ``libimf``, ``libirng``,
``libsvml``) is loaded ``RTLD_GLOBAL`` first; ``libcrypto_mb`` also needs the system's ``libcrypto.so.3``.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import platform
import sys
from pathlib import Path

import numpy as np

from tandem.errors import TandemError

POINT_BYTES = 32
LANES = 8
_RUNTIME = ("libintlc.so.5", "libimf.so", "libirng.so", "libsvml.so")  # in load order
_LIBRARY = ("libcrypto_mb.so.13", "libcrypto_mb.so")
_INSTALL = "pip install ipp-crypto intel-cmplr-lib-rt"
# crypto_mb/cpu_features.h: what mbx_is_crypto_mb_applicable requires (to name what this CPU lacks)
_REQUIRED = {
    "bmi2": 0x8000000000,
    "avx512f": 0x00100000,
    "avx512dq": 0x02000000,
    "avx512bw": 0x01000000,
    "avx512ifma": 0x100000000,
    "avx512vbmi2": 0x2000000000,
    "AVX-512 enabled by the OS": 0x200000000,
}
_LOW_ORDER_STATUS = 4  # MBX_STATUS_LOW_ORDER_ERR: the lane's result is all zero
_P_WORDS = (0xFFFFFFFFFFFFFFED, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF)  # 2^255 - 19
_BASE_POINT = b"\x09" + bytes(31)
# the canonical u of every point of order 1, 2, 4 or 8: their product with a clamped scalar is the identity.
# crypto_mb flags most of them itself, but not u = p - 1 (measured: a non-zero output), so they are named here
_P = 2**255 - 19
_LOW_ORDER_U = (
    np.array(
        [
            u.to_bytes(32, "little")
            for u in (
                0,
                1,
                _P - 1,
                325606250916557431795983626356110631294008115727848805560023387167927233504,
                39382357235489614581723060781553021112529911719440698176882885853963445705823,
            )
        ]
    )
    .view("<u8")
    .reshape(-1, 4)
)
# RFC 7748 section 5.2, first vector: (scalar, u, scalar * u)
_KAT = tuple(
    bytes.fromhex(h)
    for h in (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    )
)


class MultiBufferError(TandemError):
    """crypto_mb cannot be used here, or reported a failure: never a silent wrong result."""


class LowOrderPoint(ValueError):
    """An input point has low order (the product is all zero); ``psi_group`` turns it into ``InvalidPoint``."""


class Library:
    """The loaded ``libcrypto_mb`` (``path``), with the argument types of the three calls used."""

    def __init__(self, path: Path, lib: ctypes.CDLL):
        self.path = path
        self.lib = lib
        lib.mbx_get_cpu_features.restype = ctypes.c_uint64
        lib.mbx_get_cpu_features.argtypes = []
        lib.mbx_is_crypto_mb_applicable.restype = ctypes.c_int
        lib.mbx_is_crypto_mb_applicable.argtypes = [ctypes.c_uint64]
        self.x25519_mb8 = lib.mbx_x25519_mb8
        self.x25519_mb8.restype = ctypes.c_uint32
        self.x25519_mb8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]

    def cpu_features(self) -> int:
        return int(self.lib.mbx_get_cpu_features())

    def applicable(self) -> bool:
        """The library's own verdict on this CPU."""
        return bool(self.lib.mbx_is_crypto_mb_applicable(self.cpu_features()))

    def missing_features(self) -> list[str]:
        """The features crypto_mb needs that ``mbx_get_cpu_features`` does not report."""
        have = self.cpu_features()
        return [name for name, bit in _REQUIRED.items() if not have & bit]


def _wheel_file(distribution: str, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that ``distribution``'s installed files hold, else in ``sys.prefix/lib``."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for name in names:
        for f in files:
            if f.name == name:
                path = Path(str(f.locate()))
                if path.is_file():
                    return path.resolve()
        path = Path(sys.prefix) / "lib" / name
        if path.is_file():
            return path
    return None


@functools.cache
def load_library() -> Library | str:
    """Load the runtime and ``libcrypto_mb`` (once per process); the library, or why it cannot be loaded."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"the ipp-crypto wheel is for Linux x86-64 only (this is {sys.platform} {platform.machine()})"
    for name in _RUNTIME:
        path = _wheel_file("intel-cmplr-lib-rt", (name,))
        if path is None:
            return f"{name} (from the intel-cmplr-lib-rt wheel) is not installed ({_INSTALL})"
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            return f"cannot load {path} ({exc})"
    path = _wheel_file("ipp-crypto", _LIBRARY)
    if path is None:
        return f"libcrypto_mb (from the ipp-crypto wheel) is not installed ({_INSTALL})"
    try:
        return Library(path, ctypes.CDLL(str(path)))
    except (OSError, AttributeError) as exc:  # AttributeError: a build without the X25519 calls
        return f"cannot load {path} ({exc}; it needs the system's libcrypto.so.3)"


@functools.cache
def unavailable_reason() -> str | None:
    """``None`` if ``multiply`` runs here, else one line naming what is missing (CPU feature, library)."""
    lib = load_library()
    if isinstance(lib, str):
        return lib
    if not lib.applicable():
        missing = lib.missing_features()
        lacks = ", ".join(missing) if missing else f"a feature it needs (features 0x{lib.cpu_features():x})"
        return f"this CPU lacks {lacks} (crypto_mb's X25519 needs AVX-512 IFMA)"
    try:
        if multiply_with(lib, _KAT[0], _KAT[1]) != _KAT[2]:
            return f"{lib.path} failed RFC 7748's test vector on this CPU"
    except (MultiBufferError, LowOrderPoint) as exc:
        return f"{lib.path} failed its self-test ({exc})"
    return None


def multiply(secret: bytes, points: bytes) -> bytes:
    """``X25519(secret, u)`` for every u in ``points`` (``n * 32`` bytes), same order (``n * 32`` bytes).

    Raises ``MultiBufferError`` if crypto_mb is unusable here, ``LowOrderPoint`` if a point has low order."""
    reason = unavailable_reason()
    lib = load_library()
    if reason is not None or isinstance(lib, str):
        raise MultiBufferError(f"crypto_mb X25519 cannot run here: {reason}")
    return multiply_with(lib, secret, points)


def canonical_points(points: bytes) -> np.ndarray:
    """``points`` as RFC 7748 decodes them (shape ``(m, 32)`` uint8, m = n rounded up to 8 lanes, the tail
    padded with the base point): the top bit masked and u in [p, 2^255) reduced to u - p, so that the
    library sees only canonical field elements and agrees with OpenSSL whatever it does with others."""
    n = len(points) // POINT_BYTES
    m = -(-n // LANES) * LANES
    buf = np.empty((m, POINT_BYTES), dtype=np.uint8)
    buf[:n] = np.frombuffer(points, dtype=np.uint8, count=n * POINT_BYTES).reshape(n, POINT_BYTES)
    buf[n:] = np.frombuffer(_BASE_POINT, dtype=np.uint8)
    buf[:, 31] &= 0x7F
    words = buf.view("<u8")  # (m, 4) little-endian 64-bit limbs
    high = (words[:, 3] == _P_WORDS[3]) & (words[:, 2] == _P_WORDS[2]) & (words[:, 1] == _P_WORDS[1])
    high &= words[:, 0] >= np.uint64(_P_WORDS[0])
    if high.any():
        words[high, 0] -= np.uint64(_P_WORDS[0])
        words[high, 1:] = 0
    return buf


def _clamped(secret: bytes) -> np.ndarray:
    """RFC 7748's decodeScalar25519 (idempotent; the library may clamp too), shape ``(32,)`` uint8."""
    if len(secret) != 32:
        raise ValueError("an X25519 secret is 32 bytes")
    k = np.frombuffer(secret, dtype=np.uint8).copy()
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return k


def multiply_with(lib: Library, secret: bytes, points: bytes) -> bytes:
    """``multiply`` on ``lib`` without the CPU check (tests call it to see the status check at work).

    One library call per 8 points; each lane's 4-bit status is checked: low order -> ``LowOrderPoint``,
    anything else non-zero -> ``MultiBufferError`` (the outputs are then not used)."""
    n, partial = divmod(len(points), POINT_BYTES)
    if partial:
        raise ValueError(f"points must be whole {POINT_BYTES}-byte u-coordinates, got {len(points)} bytes")
    if n == 0:
        return b""
    src = canonical_points(points)
    words = src[:n].view("<u8")
    near = words[np.isin(words[:, 3], _LOW_ORDER_U[:, 3])]  # the top limb first: ordinary points leave here
    if len(near) and (near[:, None, :] == _LOW_ORDER_U[None, :, :]).all(axis=2).any():
        raise LowOrderPoint()
    out = np.zeros_like(src)
    key = _clamped(secret)
    keys = np.full(LANES, key.ctypes.data, dtype=np.uint64)  # the same scalar in every lane
    stride = np.arange(len(src), dtype=np.uint64) * np.uint64(POINT_BYTES)
    src_ptrs = np.uint64(src.ctypes.data) + stride  # (m,) pointers, 8 per call
    out_ptrs = np.uint64(out.ctypes.data) + stride
    call, k, s0, o0, step = lib.x25519_mb8, keys.ctypes.data, src_ptrs.ctypes.data, out_ptrs.ctypes.data, 8 * LANES
    status = np.array([call(o0 + i, k, s0 + i) for i in range(0, len(src) * 8, step)], dtype=np.uint32)
    key[:] = 0
    lanes = ((status[:, None] >> (4 * np.arange(LANES, dtype=np.uint32))) & 0xF).reshape(-1)[:n]
    failed = np.flatnonzero((lanes != 0) & (lanes != _LOW_ORDER_STATUS))
    if failed.size:
        i = int(failed[0])
        raise MultiBufferError(
            f"crypto_mb mbx_x25519_mb8 failed on {failed.size} of {n} points (status 0x{int(lanes[i]):x} "
            f"at point {i}); use backend openssl"
        )
    zero = ~out[:n].view("<u8").any(axis=1)
    if zero.any() or (lanes == _LOW_ORDER_STATUS).any():
        raise LowOrderPoint()
    return out[:n].tobytes()

"""X25519 as a commutative blinding group for ECDH-PSI.

An identifier is hashed (SHA-512 with a domain separator and a per-run salt, first 32
bytes) to an X25519 u-coordinate; blinding is the X25519 function with a secret scalar.
For clamped scalars ``a``, ``b`` the x-only ladder commutes: ``X(a, X(b, P)) ==
X(b, X(a, P))``, so a value blinded by both parties is the same whoever went first.

Points travel as concatenated 32-byte strings (shape ``(n * 32,)`` bytes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from tandem.crypto import x25519_mb
from tandem.crypto.backends import choose_backend

POINT_BYTES = 32
SCALAR_BYTES = 32
_DOMAIN = b"tandem/psi/x25519/v1\x00"


class InvalidPoint(ValueError):
    """A received value is not usable as a group element (opaque on purpose)."""

    def __init__(self):
        super().__init__("received a malformed group element")


def _public_key_reader() -> Callable[[bytes], X25519PublicKey]:
    """``X25519PublicKey.from_public_bytes`` without its per-call backend check (which costs ~1.7 us of the
    ~40 us a blinding takes): the same Rust constructor that method ends in, once X25519 is known to work.
    Falls back to the public method if a ``cryptography`` release moves it."""
    probe = b"\x09" + bytes(31)  # the base point
    X25519PublicKey.from_public_bytes(probe)  # raises UnsupportedAlgorithm where X25519 is missing
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        reader = rust_openssl.x25519.from_public_bytes
        if isinstance(reader(probe), X25519PublicKey):
            return reader
    except (ImportError, AttributeError):
        pass
    return X25519PublicKey.from_public_bytes


_read_public = _public_key_reader()


def secure_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` (shape ``(n,)`` int64) drawn from the OS's CSPRNG:
    the order in which a party sends its blinded set, so a position says nothing about a record.
    Sorting 64-bit random keys: ties (probability about n^2 / 2^65) keep their order."""
    keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable").astype(np.int64)


def new_secret() -> bytes:
    """A fresh secret scalar (32 random bytes; X25519 clamps it)."""
    return os.urandom(SCALAR_BYTES)


def hash_to_points(key_name: str, salt: bytes, values: Iterable[str]) -> bytes:
    """Hash normalised identifiers to u-coordinates; returns ``n * 32`` bytes in input order.

    ``key_name`` (``phone``, ``email``, ``inn``) separates domains so that equal strings
    under different keys never collide; ``salt`` is agreed per run.
    """
    prefix = _DOMAIN + key_name.encode() + b"\x00" + salt
    sha = hashlib.sha512
    return b"".join([sha(prefix + v).digest()[:POINT_BYTES] for v in map(str.encode, values)])


def blind(secret: bytes, points: bytes, backend: str = "openssl") -> bytes:
    """Multiply every point in ``points`` (``n * 32`` bytes) by ``secret``; same order.

    ``backend`` (``tandem.crypto.backends``): ``openssl``, ``mb`` or ``auto``; the same bytes either way.
    Raises ``InvalidPoint`` if the input is not whole points or a point is of low order.
    """
    if len(points) % POINT_BYTES:
        raise InvalidPoint()
    if backend != "openssl" and choose_backend(backend) == "mb":
        try:
            return x25519_mb.multiply(secret, points)
        except x25519_mb.LowOrderPoint:
            raise InvalidPoint() from None
    exchange, read = X25519PrivateKey.from_private_bytes(secret).exchange, _read_public
    try:
        return b"".join(exchange(read(points[i : i + POINT_BYTES])) for i in range(0, len(points), POINT_BYTES))
    except ValueError:
        raise InvalidPoint() from None


def hash_and_blind(secret: bytes, key_name: str, salt: bytes, values: list[str], backend: str = "openssl") -> bytes:
    """``blind(secret, hash_to_points(...), backend)`` in one step (one trip to a worker process)."""
    return blind(secret, hash_to_points(key_name, salt, values), backend)


def link_ids(key_name: str, doubly_blinded: bytes) -> list[str]:
    """Link ids (32 hex chars each) of values both parties blinded (``n * 32`` bytes): the same on both
    sides, opaque to anyone else. SHA-256 over a domain separator, the key name and the value, first 16 bytes."""
    prefix = hashlib.sha256(b"tandem/link-id/v1\x00" + key_name.encode() + b"\x00")

    def one(point: bytes) -> str:
        h = prefix.copy()
        h.update(point)
        return h.digest()[:16].hex()

    return [one(doubly_blinded[i : i + POINT_BYTES]) for i in range(0, len(doubly_blinded), POINT_BYTES)]


def run_salt(initiator_nonce: bytes, responder_nonce: bytes) -> bytes:
    """The per-run hashing salt both parties derive from each other's nonce."""
    return hashlib.sha256(b"tandem/psi/salt/v1\x00" + initiator_nonce + responder_nonce).digest()

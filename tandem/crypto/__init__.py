"""The only package that touches cryptographic libraries.

- ``psi_group``: the group for ECDH private set intersection (X25519 u-coordinates).
- ``backends``: which X25519 blinds (``[link] backend``: auto | mb | openssl), one definition.
- ``x25519_mb``: Intel crypto_mb's multi-buffer X25519 (AVX-512 IFMA) through ctypes, loaded lazily.
- ``tls``: development certificate authority and node certificates (X.509, ECDSA P-256).

Sizes and algorithms are fixed here, with safe defaults; callers never pick curves or hashes.
"""

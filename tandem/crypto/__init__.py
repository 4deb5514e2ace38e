"""The only package that touches cryptographic libraries.

- ``psi_group``: the group for ECDH private set intersection (X25519 u-coordinates).
- ``tls``: development certificate authority and node certificates (X.509, ECDSA P-256).

Sizes and algorithms are fixed here, with safe defaults; callers never pick curves or hashes.
"""

"""Incremental PSI: what a run with state kept from the last one sends, and how it merges the two.

A side holding ``KeyMemory`` from the last run with the same peer blinds and sends only its new
records and the blinded values of removed ones (``delta``); at the end it matches the kept values
still current plus the new ones against the peer's kept values less its removed ones plus its new
ones (``merged``). ``kept`` builds the state to store for the next run. Values are ``(n,)`` object
arrays of normalised identifiers; points are ``S32`` arrays.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tandem.crypto.psi_group import secure_permutation
from tandem.protocols.psi_sets import KeyMemory
from tandem.protocols.psi_sets import value_digests as _digests


def delta(mem: KeyMemory, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices of new values in a random sending order, the kept blinded points of removed ones)``."""
    digests = _digests(mem.salt, values.tolist())
    new = np.flatnonzero(~np.isin(digests, mem.own_digest))
    removed = ~np.isin(mem.own_digest, digests)
    return new[secure_permutation(len(new))], mem.own_blinded[removed]


def merged(
    mem: KeyMemory,
    values: np.ndarray,
    sent: tuple[np.ndarray, np.ndarray, np.ndarray],
    peer_removed: np.ndarray,
    received: tuple[np.ndarray, np.ndarray],
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The whole current sets: ``sent`` is this run's (indices, doubly blinded, blinded) of new values,
    ``received`` the peer's new (doubly blinded, blinded); kept values are prepended to each."""
    own_idx, own, own_blinded = sent
    peer, peer_blinded = received
    digests = _digests(mem.salt, values.tolist())
    pos = {d: i for i, d in enumerate(mem.own_digest.tolist())}
    still = np.flatnonzero(np.isin(digests, mem.own_digest))
    at = np.array([pos[d] for d in digests[still].tolist()], dtype=np.int64)
    stay = ~np.isin(mem.peer_blinded, peer_removed)
    return (
        (
            np.concatenate([still, own_idx]),
            np.concatenate([mem.own_double[at], own]),
            np.concatenate([mem.own_blinded[at], own_blinded]),
        ),
        (np.concatenate([mem.peer_double[stay], peer]), np.concatenate([mem.peer_blinded[stay], peer_blinded])),
    )


def kept(
    secret: bytes,
    salt: bytes,
    values: np.ndarray,
    sent: tuple[np.ndarray, np.ndarray, np.ndarray],
    received: tuple[np.ndarray, np.ndarray],
) -> KeyMemory:
    """The state to keep for the next incremental run, from the whole current sets (as ``merged`` gives)."""
    own_idx, own, own_blinded = sent
    peer, peer_blinded = received
    return KeyMemory(
        hashlib.sha256(b"tandem/psi/state/v1" + salt).hexdigest()[:32],
        secret,
        salt,
        _digests(salt, values[own_idx].tolist()),
        own_blinded,
        own,
        peer_blinded,
        peer,
    )

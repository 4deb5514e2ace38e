"""Blinding on the engine: chunks split across worker processes, inline for small inputs."""

from __future__ import annotations

from tandem.crypto.psi_group import POINT_BYTES, blind, hash_and_blind
from tandem.engine import LocalEngine

INLINE_BELOW = 4096  # points: below this a process hop costs more than it saves


class EngineBlinder:
    """``Blinder`` that spreads each chunk over the engine's workers; ``backend`` (``"mb"`` or
    ``"openssl"``, as ``tandem.crypto.backends.choose_backend`` picked it) travels with every chunk, so
    each worker process multiplies with the node's choice."""

    def __init__(self, engine: LocalEngine, backend: str = "openssl"):
        self.engine = engine
        self.backend = backend

    def hash_and_blind(self, secret: bytes, key: str, salt: bytes, values: list[str]) -> bytes:
        if len(values) < INLINE_BELOW or self.engine.workers == 0:
            return hash_and_blind(secret, key, salt, values, self.backend)
        futures = [
            self.engine.submit(hash_and_blind, secret, key, salt, values[s], self.backend)
            for s in self.engine.split(len(values))
        ]
        return b"".join(f.result() for f in futures)

    def blind(self, secret: bytes, points: bytes) -> bytes:
        n = len(points) // POINT_BYTES
        if n < INLINE_BELOW or self.engine.workers == 0:
            return blind(secret, points, self.backend)
        futures = [
            self.engine.submit(blind, secret, points[s.start * POINT_BYTES : s.stop * POINT_BYTES], self.backend)
            for s in self.engine.split(n)
        ]
        return b"".join(f.result() for f in futures)

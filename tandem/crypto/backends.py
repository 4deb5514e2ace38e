"""Which X25519 implementation blinds PSI values: one definition of the choice ``[link] backend`` and
``--backend`` make.

- ``openssl``: ``cryptography``'s X25519 (OpenSSL), everywhere.
- ``mb``: Intel crypto_mb's multi-buffer X25519 (``x25519_mb``), where the CPU has AVX-512 IFMA and the
  ``ipp-crypto`` and ``intel-cmplr-lib-rt`` wheels are installed; refused elsewhere with the reason.
- ``auto`` (default): ``mb`` where it runs, else ``openssl``.

Both give the same bytes for every input (RFC 7748), so the choice changes speed only, never what a
party sends or learns.
"""

from __future__ import annotations

from tandem.crypto import x25519_mb
from tandem.errors import InputError

BACKENDS = ("auto", "mb", "openssl")
DEFAULT_BACKEND = "auto"
BACKEND_HELP = (
    "X25519 for PSI blinding: auto (multi-buffer crypto_mb where the CPU has AVX-512 IFMA, else OpenSSL), "
    "mb or openssl."
)


class BackendUnavailable(InputError):
    """``mb`` was asked for where it cannot run."""


def check_backend(choice: object, where: str = "--backend") -> str:
    """``choice`` if it names a backend, else ``InputError`` naming ``where`` (the option or config key)."""
    if choice not in BACKENDS:
        raise InputError(f"{where} must be one of {', '.join(BACKENDS)}, got {choice!r}")
    return str(choice)


def choose_backend(choice: str, where: str = "--backend") -> str:
    """The backend that runs (``"mb"`` or ``"openssl"``) for ``choice``; ``mb`` where it cannot run raises
    ``BackendUnavailable`` with one line saying why and what to do."""
    check_backend(choice, where)
    if choice == "openssl":
        return "openssl"
    reason = x25519_mb.unavailable_reason()
    if reason is None:
        return "mb"
    if choice == "mb":
        raise BackendUnavailable(
            f"{where} mb: multi-buffer X25519 cannot run here: {reason}; use auto or openssl instead"
        )
    return "openssl"


def backend_note(choice: str, chosen: str) -> str:
    """Why ``chosen`` runs for ``choice``, for a node's log line (e.g. ``auto: this CPU lacks avx512ifma``)."""
    if choice == chosen:
        return f"{choice} (asked for)"
    reason = x25519_mb.unavailable_reason() if chosen == "openssl" else None
    return f"{choice}: {reason}" if reason else f"{choice}: crypto_mb runs on this CPU"

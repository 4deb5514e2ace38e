"""How large a homomorphic key must be (no heavy imports: the command line checks it early)."""

import os

MAX_KEY_BITS = 4096
# The test suite alone lowers the floor to 1024 bits: a 2048-bit OU key makes its trainings about
# 4x slower to encrypt and 5x slower to decrypt. Never set it for real data.
SMALL_TEST_KEYS = "TANDEM_INSECURE_SMALL_TEST_KEYS"


def min_key_bits() -> int:
    """The smallest key a node generates: 2048 bits (1024 only with ``SMALL_TEST_KEYS=1``)."""
    return 1024 if os.environ.get(SMALL_TEST_KEYS) == "1" else 2048

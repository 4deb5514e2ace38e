"""X25519 rate per core of each backend, as ``blind`` runs it (one process, batches of 4,096 points).

    python bench/x25519.py [--seconds 3]

Prints multiplications per second for openssl and, where crypto_mb runs, mb with its ratio; elsewhere
the reason mb cannot run (e.g. the CPU features it lacks).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from tandem.crypto import x25519_mb
from tandem.crypto.psi_group import blind


def rate(backend: str, seconds: float, batch: int = 4096) -> float:
    """Multiplications per second of ``blind(..., backend)`` on one core."""
    secret, points = os.urandom(32), os.urandom(32 * batch)
    blind(secret, points, backend)  # warm up (loads crypto_mb once)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        blind(secret, points, backend)
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    print(f"{platform.machine()}, {os.cpu_count()} cores, {model or platform.processor()}")
    openssl = rate("openssl", args.seconds)
    print(f"openssl: {openssl:,.0f} multiplications/s per core")
    reason = x25519_mb.unavailable_reason()
    if reason is None:
        mb = rate("mb", args.seconds)
        print(f"mb: {mb:,.0f} multiplications/s per core ({mb / openssl:.1f}x openssl)")
        return
    lib = x25519_mb.load_library()
    if not isinstance(lib, str):
        print(f"mb: {lib.path}, mbx_get_cpu_features 0x{lib.cpu_features():x}, applicable {lib.applicable()}")
    print(f"mb: cannot run here: {reason}")


if __name__ == "__main__":
    main()

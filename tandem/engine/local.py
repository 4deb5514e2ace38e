"""A process pool for CPU-bound chunks (within one party: nothing here crosses a party boundary)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor


class LocalEngine:
    """Run a function over chunks on ``workers`` processes (default: all cores).

    Workers are started with ``spawn``, never ``fork``: a node has gRPC threads, which
    must not be forked. ``workers=0`` runs chunks inline (tests, tiny inputs).
    """

    def __init__(self, workers: int | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def warm_up(self) -> None:
        """Start the worker processes now (in the background) rather than on the first chunk."""
        if self.workers > 0:
            for _ in range(self.workers):
                self._executor().submit(int)

    def submit(self, fn: Callable, *args) -> Future:
        """Start ``fn(*args)``; inline engines return an already finished future."""
        if self.workers == 0:
            f: Future = Future()
            try:
                f.set_result(fn(*args))
            except BaseException as exc:  # the caller sees it on result()
                f.set_exception(exc)
            return f
        return self._executor().submit(fn, *args)

    def map(self, fn: Callable, chunks: Sequence, *extra) -> list:
        """``[fn(chunk, *extra) for chunk in chunks]``, in parallel, in order."""
        futures = [self.submit(fn, chunk, *extra) for chunk in chunks]
        return [f.result() for f in futures]

    def split(self, n: int) -> list[slice]:
        """Slices cutting ``n`` items into one piece per worker."""
        parts = max(1, self.workers)
        step = -(-n // parts) if n else 1
        return [slice(i, min(i + step, n)) for i in range(0, n, step)] or [slice(0, 0)]

    def worker_peak_rss_mib(self) -> list[int]:
        """Peak resident memory of each live worker (Linux ``VmHWM``), MiB."""
        peaks = []
        for pid in list(getattr(self._pool, "_processes", {}) or {}):
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) // 1024)
            except OSError:
                pass
        return peaks

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""A process pool for CPU-bound chunks (within one party: nothing here crosses a party boundary)."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from tandem.errors import TandemError


class LocalEngine:
    """Run a function over chunks on ``workers`` processes (default: all cores).

    Workers are started with ``spawn``, never ``fork``: a node has gRPC threads, which
    must not be forked. ``workers=0`` runs chunks inline (tests, tiny inputs). A worker ends
    itself as soon as the process that started it is gone, however that one ended (SIGKILL
    included), and leaves Ctrl-C to it (``close`` stops the pool): no worker outlives its node.
    """

    def __init__(self, workers: int | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._started = multiprocessing.get_context("spawn").SimpleQueue()  # one pid per initialised worker

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(os.getpid(), self._started),
            )
        return self._pool

    def warm_up(self, timeout_s: float = 120.0) -> None:
        """Start the worker processes now rather than on the first chunk, and wait until each has run
        its initializer: from then on a Ctrl-C sent to the process group is the parent's alone (a
        worker interrupted while still importing would break the pool)."""
        if self.workers > 0:
            probes = [self._executor().submit(int) for _ in range(self.workers)]
            deadline = time.monotonic() + timeout_s
            for _ in range(self.workers):
                while self._started.empty():
                    broken = next((f.exception() for f in probes if f.done() and f.exception()), None)
                    if broken is not None:
                        raise TandemError(f"a worker process failed to start ({broken})")
                    if time.monotonic() > deadline:
                        raise TandemError(f"the {self.workers} worker processes did not start within {timeout_s:g} s")
                    time.sleep(0.02)
                self._started.get()

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


def _worker_start(parent: int, started) -> None:
    """Pool worker initializer: Ctrl-C (sent to the whole process group) is the parent's to handle;
    a thread ends this worker once ``parent`` is gone; ``started`` hears that this worker is up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="watch-parent", daemon=True).start()
    started.put(os.getpid())


def _exit_with_parent(parent: int) -> None:
    """Never returns: ``os._exit`` as soon as the process ``parent`` (this one's parent) has ended.

    Not ``prctl(PR_SET_PDEATHSIG)``: Linux sends that signal when the parent *thread* that started
    the worker ends, and the pool starts workers from whichever thread submits (a node's session
    threads come and go). A pidfd (Linux >= 5.3) wakes us the moment the parent ends; elsewhere, or
    where it is refused, we poll ``getppid`` (it changes once we are orphaned and re-parented)."""
    pidfd = None
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        pass
    # checked after opening: had the parent already ended (and its pid been reused), the pidfd would
    # watch some other process, but then our parent is no longer ``parent`` and we end at once
    if pidfd is not None and os.getppid() == parent:
        try:
            watch = select.poll()
            watch.register(pidfd, select.POLLIN)
            watch.poll()  # readable once the parent has ended
        except (AttributeError, OSError):
            pass
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)

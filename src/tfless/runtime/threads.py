"""How many CPU threads predict uses, and the pool that runs batch shards.

Policy: `OMP_NUM_THREADS` / `OPENBLAS_NUM_THREADS` / `MKL_NUM_THREADS`, when set, cap the
threads tfless uses (the smallest value set wins); otherwise every CPU this process may run
on. NumPy's BLAS reads the same variables at import, and a cap applied later with
threadpoolctl (as `tfless serve` does per batch thread) lowers the count further, so the
runtime never uses more threads than BLAS is allowed.

A large batch may run as shards on a thread pool (where `plan` measures that this wins),
each shard with single-threaded BLAS: NumPy
releases the GIL in matmul and in elementwise loops, so the elementwise work (depthwise
convolution, padding, bias, activations), which NumPy runs on one core, is spread over the
cores as well, and no BLAS thread ever waits on another one (OpenBLAS threads spin, which
costs several times the work itself when other processes load the cores). BLAS limits are
process-wide, so the single-thread limit is taken by the first concurrent sharded run and
restored by the last one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_lock = threading.Lock()
_controller: ThreadpoolController | None = None
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}  # (pid, workers) -> executor
_single_users = 0
_single_saved: list[tuple[Any, int]] = []  # (BLAS library, its thread count before)
_environment_applied = False


def env_threads() -> int | None:
    """The smallest positive thread count set in the environment, if any."""
    counts = []
    for var in THREAD_VARS:
        value = os.environ.get(var, "").strip().split(",")[0]
        if value.isdigit() and int(value) > 0:
            counts.append(int(value))
    return min(counts) if counts else None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _blas() -> ThreadpoolController:
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def blas_threads() -> int | None:
    """The thread count NumPy's BLAS currently allows (None: no BLAS found)."""
    # each controller's num_threads asks the library itself (~1 us); info() builds a dict
    # per library (~4 us), which plan pays on every call it measures
    counts = [lib.num_threads for lib in _blas().lib_controllers]
    return min(counts) if counts else None


def honour_environment() -> None:
    """Cap BLAS at the environment's thread count (once per process): OpenBLAS reads only
    OPENBLAS_NUM_THREADS and OMP_NUM_THREADS itself, MKL only its own two names."""
    global _environment_applied
    if _environment_applied:
        return
    _environment_applied = True
    cap = env_threads()
    blas = blas_threads()
    if cap is not None and blas is not None and blas > cap:
        _blas().limit(limits=cap)


def worker_count() -> int:
    """Threads predict may use: the environment's cap, else all CPUs, never more than BLAS
    is currently allowed (a threadpoolctl cap in force counts)."""
    honour_environment()
    threads = env_threads() or cpu_count()
    if _single_users == 0:  # while shards run, BLAS reports our own temporary limit of 1
        blas = blas_threads()
        if blas is not None:
            threads = min(threads, blas)
    return max(1, threads)


def pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of `workers` threads (a new one in a forked child)."""
    key = (os.getpid(), workers)
    with _lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="tfless-shard")
        return _pools[key]


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS runs on one thread inside this block (and in every thread while any such block
    is open); the previous limits come back when the last block closes."""
    global _single_users, _single_saved
    # set on each library directly (~1 us each) rather than through a threadpoolctl limiter
    # (~11 us per block): a batch-1 call that chose this way pays it on every call
    with _lock:
        if _single_users == 0:
            libs = _blas().lib_controllers
            _single_saved = [(lib, lib.num_threads) for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _single_users += 1
    try:
        yield
    finally:
        with _lock:
            _single_users -= 1
            if _single_users == 0:
                for lib, count in _single_saved:
                    lib.set_num_threads(count)
                _single_saved = []

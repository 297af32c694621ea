"""Let the C allocator keep freed activation buffers for reuse (glibc only).

By default glibc serves every allocation above 128 KB-32 MB (a threshold it adjusts) with
a fresh `mmap` and returns it to the kernel on free, so each activation array of every
call is a new mapping that page-faults on first touch: for a CNN batch that fault and
zero-fill traffic costs up to as much as the arithmetic (measured 1.2-1.7x on MobileNetV2 /
EfficientNetB0 at batch 32). Fixing the mmap threshold at its maximum (32 MB) and raising
the trim threshold keeps freed buffers in the process, where the next call reuses them.
The process's resident memory then stays at its high-water mark instead of shrinking
after a large batch. Applied once per process when the first plan is built, unless the
environment sets TFLESS_MALLOC_TUNING=0 (for hosts that must give memory back after peaks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 1 << 30

_applied = False


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above; False where there is no glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("TFLESS_MALLOC_TUNING") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied

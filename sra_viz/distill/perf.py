"""Process-level speed settings of a distillation run.

A step allocates and frees tensors of tens of MB (logits of 49k-262k columns). glibc serves blocks
above 32 MB with ``mmap`` and unmaps them on free, so each step pays page faults again for every
one: element-wise ops on a (178, 49152) fp32 tensor took 12-17 ms instead of 3-4 ms on the 2-core
test machine. :func:`reuse_freed_memory` tells glibc to keep such memory for reuse (the process then
keeps its peak size until it exits). It is a no-op elsewhere (macOS, musl, Windows).

That holds for the thread that made the process's main heap. A run in another thread (the app's worker)
allocates from a glibc thread arena, whose heaps hold at most 64 MB: a larger block (the student's
embedding gradient, 49152 x 576 fp32 = 113 MB) is mapped afresh at every step whatever the setting.
``app.py`` therefore sets ``THP_MEM_ALLOC_ENABLE=1`` before torch loads, so PyTorch puts its large blocks
on transparent huge pages: measured in a truncated-student SRA step (4 x 64 tokens) on the 2-core test
machine, minor page faults per step in a worker thread fell from 7153 to 895 (6 on the main thread).

Example:
    >>> reuse_freed_memory() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DONE: list[bool] = []


def reuse_freed_memory() -> bool:
    """Serve large allocations from the heap and never give freed heap memory back (glibc only).

    Returns True when the setting is in effect. Idempotent; affects the whole process.
    """
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc
            mallopt = None
        if mallopt is not None:
            ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _DONE.append(ok)
    return ok

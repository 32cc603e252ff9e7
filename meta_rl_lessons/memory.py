"""Keep freed tensor memory for reuse on Linux (glibc), instead of returning it to the system after every op.

PyTorch allocates CPU tensors with the C library's allocator. glibc serves a block above its *mmap
threshold* (dynamic, starting at 128 KiB) with a fresh ``mmap`` and unmaps it when freed, so every new
tensor of that size costs page faults and the kernel zeroing its pages. A MAML-TRPO step on 2D navigation
allocates and frees hundreds of 10 MB intermediates ([20 tasks, 2,000 steps, 64 units] in float32), and
the page faults can cost more than the arithmetic (``bench/alloc.py`` measures both ways; figures in
``bench/README.md``). Raising the threshold to its maximum (32 MiB on 64-bit glibc) and the trim threshold
serves such blocks from the heap, where freed memory is reused.

This changes where memory comes from, never a number computed. It is called by the trainers whose steps
allocate large intermediates (MAML-TRPO), by the command line and by the benchmarks; it does nothing (and
returns ``False``) where the C library is not glibc (macOS, musl) or when ``META_RL_MALLOC=default`` is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper bound on 64-bit systems
_TRIM_THRESHOLD = 1024 * 1024 * 1024  # keep up to 1 GiB of freed memory at the top of the heap

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks up to 32 MiB from its heap and to keep freed memory (idempotent).

    Returns:
        whether the setting is in effect in this process.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("META_RL_MALLOC", "") == "default" or platform.system() != "Linux":
        return _done
    name = ctypes.util.find_library("c")
    if not name or platform.libc_ver()[0] != "glibc":
        return _done
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                   _TRIM_THRESHOLD))
    return _done

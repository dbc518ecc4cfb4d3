"""CPU runtime settings that matter for large-tensor inference."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_large_allocations_on_heap() -> bool:
    """Stop glibc from serving every allocation above 32 MiB with a fresh ``mmap`` (page-faulted anew on each op).

    Equivalent to ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>``. Measured on a 2-core AVX-512 CPU
    (``benchmarks/notes_diffwave.md``): a DiffWave denoiser call at batch 4 went from 20.1 s to 9.5 s in fp32;
    the cost is that freed memory is kept by the process instead of returned to the OS. Process-wide, so only the
    command-line tools call it. Returns whether the setting was applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 36))
    except (OSError, AttributeError):
        return False

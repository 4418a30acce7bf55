# -*- test-case-name: tests.test_net_allocator -*-
"""
Keeping glibc's allocator from returning bulk read buffers to the kernel
after every read.

Bulk bodies and tunnels read 512 KiB per C{recv()}
(L{squeak.net.tunnel.BULK_READ_SIZE}): each read is a new Python C{bytes} of
that size, freed once written on.  glibc's C{malloc} serves blocks above
its I{mmap threshold} (128 KiB to start with) with a fresh C{mmap} and
frees them with C{munmap}; it raises that threshold as such blocks are
freed, and it gives the top of its heap back to the kernel whenever more
than its I{trim threshold} is free there.  Depending on what the process
did before, a 100 MiB download either reuses the same heap memory for
every read, or maps and faults in new pages for each one: about 25,000
page faults and half the speed (600 against 1,650 MB/s through a tunnel,
1,150 against 1,800 MB/s for a plain download, measured on the benchmark
machine; docs/performance.md).

L{tune_malloc} fixes both thresholds at start-up: blocks under 4 MiB come
from the heap (the reads, and the larger blocks Twisted makes when it
joins a connection's pending writes before sending them), and up to 16 MiB
of free heap is kept for the next reads rather than trimmed.  With a 1 MiB
threshold the first download through a tunnel still faulted every page.
The cost is that much resident memory kept after a burst.  An operator
who set glibc's own variables (C{MALLOC_MMAP_THRESHOLD_},
C{MALLOC_TRIM_THRESHOLD_}, C{GLIBC_TUNABLES}) keeps them; on a C library
without C{mallopt} (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

#: Blocks at least this large are mmapped (large cache bodies); smaller
#: ones, the 512 KiB read buffers and joined writes among them, come from
#: the heap.
MMAP_THRESHOLD = 4 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse rather than trimmed.
TRIM_THRESHOLD = 16 * 1024 * 1024

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Environment variables through which an operator tunes glibc's malloc.
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc(environ: Mapping[str, str] = os.environ, libc: object | None = None) -> bool:
    """
    Fix glibc's mmap and trim thresholds (L{MMAP_THRESHOLD},
    L{TRIM_THRESHOLD}), unless the operator tuned malloc through the
    environment or the C library has no C{mallopt}.

    @param environ: The process environment (a test passes its own).
    @param libc: The C library (a test passes a fake); by default the
        process's own.
    @return: Whether both thresholds were set.
    """
    if any(name in environ for name in _OPERATOR_SETTINGS):
        return False
    if libc is None:
        try:
            libc = ctypes.CDLL(None)
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    # mallopt returns 1 on success.  The mmap threshold first: setting it
    # is what turns off glibc's dynamic adjustment of both.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )

"""Keeping a worker's memory near what it uses, not what a burst once took.

A loaded server frees most of what a request allocated, but glibc's allocator keeps
freed memory for reuse: it raises its mmap threshold after large frees (so the next
large buffers come from the heap and stay there) and gives each thread an arena of its
own. `tune_allocator` fixes the threshold and caps the arenas, the settings glibc
documents for long-running servers (``mallopt``; the same as the ``MALLOC_*``
variables, which are read only when a process starts). Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Allocations above this get their own mapping and go back to the OS when freed.
MMAP_THRESHOLD_BYTES = 128 * 1024
#: Arenas per process: the event loop's thread, and one for the rest.
ARENA_MAX = 2


def tune_allocator() -> bool:
    """Apply the settings above to this process (and the processes it forks later);
    False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_ARENA_MAX, ARENA_MAX)
    )
    if not ok:
        log.debug("mallopt refused the allocator settings; keeping the defaults")
    return ok

"""Keeping a worker's memory near what it uses, not what a burst once took.

A loaded server frees most of what a request allocated, but glibc's allocator keeps
freed memory for reuse: it raises its mmap threshold after large frees (so the next
large buffers come from the heap and stay there) and gives each thread an arena of its
own. `tune_allocator` fixes the threshold and caps the arenas, the settings glibc
documents for long-running servers (``mallopt``; the same as the ``MALLOC_*``
variables, which are read only when a process starts). `release_free_memory` hands
the free pages inside the heaps back to the OS (``malloc_trim``), for threads that have
just dropped a burst of small buffers (the prediction log once traffic stops). Elsewhere
both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Allocations above this get their own mapping and go back to the OS when freed.
MMAP_THRESHOLD_BYTES = 128 * 1024
#: Arenas per process: the event loop's thread, and one for the rest.
ARENA_MAX = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_allocator() -> bool:
    """Apply the settings above to this process (and the processes it forks later);
    False where the C library is not glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_ARENA_MAX, ARENA_MAX)
    )
    if not ok:
        log.debug("mallopt refused the allocator settings; keeping the defaults")
    return ok


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; False where there is no glibc.

    A few hundred microseconds for a heap of tens of megabytes; other threads'
    allocations wait for it, so call it after a burst, not per request.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True

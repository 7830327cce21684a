"""The allocator settings and the trim the prediction log calls after each write."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from modelport.serving.memory import release_free_memory, tune_allocator

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("c") is None or not Path("/proc/self/status").exists(),
    reason="glibc on Linux only",
)


def resident_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_free_pages_inside_the_heap_go_back_to_the_os() -> None:
    assert tune_allocator()
    # 64 MB of 64 KB blocks (the heap, below the mmap threshold); every other one is
    # freed, and the survivors pin the heap's top, so only a trim can return the gaps.
    blocks = [bytearray(64 * 1024) for _ in range(1024)]
    for block in blocks:
        block[::4096] = b"x" * 16  # touched: resident
    del blocks[::2]
    before = resident_kb()
    assert release_free_memory()
    after = resident_kb()
    assert before - after > 16 * 1024, (before, after)  # most of the 32 MB of gaps
    del blocks

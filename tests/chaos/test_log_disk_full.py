"""The prediction log's disk fills up under load (a small tmpfs, filled to the last
byte): predictions go on, the dropped rows are counted, what was written stays intact
and readable, and writing resumes by itself once there is space again."""

from __future__ import annotations

import errno
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from modelport.client import Client
from tests.chaos.conftest import logged, wait_for
from tests.chaos.load import Load, report, unclean
from tests.integration.conftest import LiveServer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own (needs root, as mount does)."""
    mountpoint = tmp_path / "logdisk"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(disk: Path) -> Path:
    """Write one file until the disk says ENOSPC; the file, to free it later."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with filler.open("ab", buffering=0) as out:  # the last partial block's room
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def dropped(server: LiveServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    found = re.search(
        r'^modelport_prediction_log_rows_total\{outcome="dropped"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def segments(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*.parquet")}


def test_a_full_log_disk_costs_no_prediction_and_no_written_row(
    servers: Callable[..., LiveServer], deployed_clf: Client, small_disk: Path, tmp_path: Path
) -> None:
    settings = deployed_clf.settings.model_copy(update={"log_dir": small_disk})
    server = servers(settings, MODELPORT_LOG_DIR=str(small_disk))
    load = Load(server.url, "clf", tmp_path / "load", concurrency=4)
    load.wait_answered()
    wait_for(lambda: logged(settings) > 0, "the first rows on disk")

    filler = fill(small_disk)
    wait_for(lambda: dropped(server) > 0, "dropped rows")
    kept = segments(small_disk)
    rows_kept = logged(settings)
    time.sleep(0.5)
    assert segments(small_disk) == kept  # a failed write leaves every segment as it was

    filler.unlink()
    wait_for(lambda: logged(settings) > rows_kept, "writing to resume")
    time.sleep(0.3)
    outcomes = load.finish()
    counts = report("log disk full and freed", outcomes)
    assert unclean(outcomes) == [] and counts["ok"] == len(outcomes)

    # Every answered request is on disk or counted as dropped: none is unaccounted for.
    wait_for(lambda: logged(settings) + dropped(server) == counts["ok"], "the last flush")
    print(f"rows written {logged(settings)}, dropped while full {dropped(server):.0f}")
    after = segments(small_disk)
    assert all(after[p] == content for p, content in kept.items())
    assert not list(small_disk.rglob("*.tmp"))
    assert "No space left on device" in server.output()

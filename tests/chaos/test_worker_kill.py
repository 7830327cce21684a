"""kill -9 of a worker under load with two workers: its requests fail cleanly, a new
worker takes its place and serves, the other worker never stops."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from modelport.client import Client
from tests.chaos.conftest import logged, wait_for
from tests.chaos.load import Load, report, unclean
from tests.integration.conftest import LiveServer
from tests.integration.test_workers import workers_of

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def established(pid: int, port: int) -> int:
    """How many of the port's accepted connections process ``pid`` holds."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "01":  # 01: ESTABLISHED
            inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held += os.readlink(fd) in inodes
    return held


def test_a_killed_worker_is_replaced_and_costs_only_its_own_requests(
    servers: Callable[..., LiveServer], deployed_clf: Client, tmp_path: Path
) -> None:
    server = servers(deployed_clf.settings, MODELPORT_WORKERS="2")
    wait_for(lambda: len(workers_of(server.process.pid, server.port)) == 2, "two workers")
    before = workers_of(server.process.pid, server.port)

    load = Load(server.url, "clf", tmp_path / "load", concurrency=8)
    load.wait_answered()
    victim = max(before, key=lambda pid: established(pid, server.port))
    assert established(victim, server.port) > 0  # it holds some of the load's connections
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    wait_for(
        lambda: len(workers_of(server.process.pid, server.port) - {victim}) == 2,
        "a replacement worker",
    )
    replacement = workers_of(server.process.pid, server.port) - before
    time.sleep(1.0)
    outcomes = load.finish()

    counts = report("kill -9 a worker", outcomes)
    assert unclean(outcomes) == [], unclean(outcomes)[:5]
    assert len(replacement) == 1 and server.process.poll() is None
    assert any(o["kind"] == "ok" and o["t"] > killed_at + 0.5 for o in outcomes)
    # Fresh connections land on either worker: all answered, the new one's included.
    body = {"dataframe_records": [ROW]}
    answers = [
        httpx.post(f"{server.url}/v1/endpoints/clf/predict", json=body, timeout=10)
        for _ in range(20)
    ]
    assert [a.status_code for a in answers] == [200] * 20
    # The victim's unflushed log rows (at most log_flush_seconds' worth) die with it;
    # every row written before is intact and readable.
    wait_for(lambda: logged(deployed_clf.settings) >= counts["ok"] + 20 - 500, "the log flushed")
    lost = counts["ok"] + 20 - logged(deployed_clf.settings)
    print(f"log rows lost with the killed worker's buffer: {lost}")
    assert lost >= 0

"""`modelport serve --workers 2`: one port, metrics summed, a dead worker replaced."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelport.client import Client
from modelport.serving.metrics import PUBLISH_SECONDS
from modelport.serving.supervisor import WATCH_NICENESS
from tests.integration.conftest import LiveServer

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def children_of(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])


def listening_inode(port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def workers_of(pid: int, port: int) -> set[int]:
    """The server's workers: the children its supervisor forked that hold the port's
    listening socket (the watch process, also a child, closed it)."""
    socket_link = f"socket:[{listening_inode(port)}]"
    found = set()
    for child in children_of(pid):
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{child}/fd")
            if any(os.readlink(fd) == socket_link for fd in fds.iterdir()):
                found.add(child)
    return found


def requests_total(server: LiveServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelport_requests_total" and s.labels.get("code") == "200"
    )


def predict_fresh_connection(server: LiveServer) -> int:
    body = {"dataframe_records": [ROW]}
    return httpx.post(f"{server.url}/v1/endpoints/clf/predict", json=body, timeout=10).status_code


def test_two_workers_share_a_port_sum_metrics_and_replace_the_dead(
    serve: Callable[..., LiveServer], deployed_clf: Client
) -> None:
    server = serve(deployed_clf.settings, "--workers", "2")
    deadline = time.monotonic() + 30
    while len(workers_of(server.process.pid, server.port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = workers_of(server.process.pid, server.port)
    assert len(workers) == 2

    statuses = [predict_fresh_connection(server) for _ in range(60)]
    assert statuses == [200] * 60
    time.sleep(2 * PUBLISH_SECONDS)  # the other worker's counts reach its metrics file
    assert requests_total(server) == 60  # whichever worker answers /metrics

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    replaced: set[int] = set()
    while time.monotonic() < deadline:
        current = workers_of(server.process.pid, server.port)
        replaced = current - workers
        if len(current) == 2 and replaced:
            break
        time.sleep(0.2)
    assert replaced, "the dead worker was not replaced"
    ready_deadline = time.monotonic() + 60
    while time.monotonic() < ready_deadline:
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200:
                statuses = [predict_fresh_connection(server) for _ in range(40)]
                if statuses == [200] * 40:
                    break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    assert statuses == [200] * 40
    time.sleep(2 * PUBLISH_SECONDS)
    assert requests_total(server) >= 100  # the dead worker's counts are kept


def test_the_watch_loops_run_in_a_process_of_their_own_and_it_is_replaced(
    serve: Callable[..., LiveServer], deployed_clf: Client
) -> None:
    server = serve(deployed_clf.settings, "--workers", "2")
    deadline = time.monotonic() + 30
    watch: set[int] = set()
    while time.monotonic() < deadline:
        workers = workers_of(server.process.pid, server.port)
        watch = children_of(server.process.pid) - workers
        if len(workers) == 2 and len(watch) == 1:
            break
        time.sleep(0.2)
    assert len(watch) == 1, "no watch process beside the two workers"
    (watcher,) = watch
    # it yields the CPU to the workers: its niceness is above theirs
    assert niceness(watcher) == niceness(next(iter(workers))) + WATCH_NICENESS
    # ps and top tell the processes apart
    assert comm(server.process.pid) == "modelport" and comm(watcher) == "modelport-watch"
    assert {comm(w) for w in workers} == {"modelport-w0", "modelport-w1"}
    os.kill(watcher, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        again = children_of(server.process.pid) - workers_of(server.process.pid, server.port)
        if again and watcher not in again:
            break
        time.sleep(0.2)
    assert again and watcher not in again, "the watch process was not replaced"
    assert predict_fresh_connection(server) == 200

"""`/metrics` with two workers: counters summed exactly, never reset or doubled, and a
replaced worker's counts kept while its live gauges go."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from modelport.client import Client
from modelport.serving.metrics import PUBLISH_SECONDS
from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.integration.test_workers import workers_of

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}
BAD = {"dataframe_records": [{"a": "x", "b": 1, "c": 1, "d": 1}]}


@pytest.fixture
def two_workers(deployed_clf: Client, tmp_path: Path) -> Iterator[LiveServer]:
    settings = deployed_clf.settings
    env = os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
        "MODELPORT_WORKERS": "2",
    }
    if settings.registry_url:
        env["MODELPORT_REGISTRY_URL"] = settings.registry_url
    server = start_server(env, tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 30
        while len(workers_of(server.process.pid, server.port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers_of(server.process.pid, server.port)) == 2
        yield server
    finally:
        stop_server(server)


def scrape(server: LiveServer) -> dict[str, float]:
    """Each metric's samples summed over their labels (one fresh connection: any worker);
    ``modelport_requests_total`` counts the 200s, ``modelport_requests_failed`` the rest."""
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    text = response.text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_bucket"):
                continue
            failed = s.name == "modelport_requests_total" and s.labels["code"] != "200"
            name = "modelport_requests_failed" if failed else s.name
            totals[name] = totals.get(name, 0.0) + s.value
    return totals


def send(server: LiveServer, body: Mapping[str, object], n: int, status: int = 200) -> None:
    """``n`` requests, eight at a time, each on a fresh connection (so on either worker)."""
    url = f"{server.url}/v1/endpoints/clf/predict"

    def one(_: int) -> int:
        return httpx.post(url, json=body, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(n)))
    assert set(statuses) == {status}


def answered_by_worker(server: LiveServer, settings_home: Path) -> dict[int, float]:
    """Requests each worker answered with 200, from its own file in the metrics folder
    (once each has published what it counted in memory)."""
    time.sleep(2 * PUBLISH_SECONDS)
    folder = settings_home / "run" / f"metrics-{server.port}"
    counts = {}
    for path in glob.glob(str(folder / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        counts[pid] = sum(
            s.value
            for metric in MultiProcessCollector.merge([path], accumulate=False)
            if metric.name == "modelport_requests"
            for s in metric.samples
            if s.labels["code"] == "200"
        )
    return counts


def assert_exact(server: LiveServer, ok: int, bad: int) -> None:
    # Live counts (in flight, queued) reach their gauges every PUBLISH_SECONDS; a worker
    # that did not answer the scrape shows what it published last.
    time.sleep(2 * PUBLISH_SECONDS)
    for _ in range(6):  # several scrapes, answered by either worker
        found = scrape(server)
        assert found["modelport_requests_total"] == ok
        assert found["modelport_requests_failed"] == bad
        assert found["modelport_request_errors_total"] == bad
        assert found["modelport_predicted_rows_total"] == ok
        assert found["modelport_request_duration_seconds_count"] == ok + bad
        assert found["modelport_batch_queue_wait_seconds_count"] == ok
        assert (
            found["modelport_model_duration_seconds_count"]
            == found["modelport_batch_size_rows_count"]
        )
        assert found["modelport_requests_in_flight"] == 0
        assert found["modelport_batch_queue_requests"] == 0


def test_counters_sum_over_workers_exactly(two_workers: LiveServer, deployed_clf: Client) -> None:
    server, home = two_workers, deployed_clf.settings.home
    send(server, BAD, 10, status=400)
    ok = 0
    while len([n for n in answered_by_worker(server, home).values() if n]) < 2 and ok < 1000:
        send(server, {"dataframe_records": [ROW]}, 40)
        ok += 40
    per_worker = {pid: n for pid, n in answered_by_worker(server, home).items() if n}
    assert len(per_worker) == 2
    assert sum(per_worker.values()) == ok
    assert_exact(server, ok, 10)

    send(server, {"dataframe_records": [ROW]}, 20)
    assert_exact(server, ok + 20, 10)  # grown by exactly what was sent

    victim = max(per_worker, key=lambda pid: per_worker[pid])
    before = workers_of(server.process.pid, server.port)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = workers_of(server.process.pid, server.port)
        if len(current) == 2 and current - before:
            break
        time.sleep(0.2)
    assert workers_of(server.process.pid, server.port) - before, "the dead worker was not replaced"
    assert_exact(server, ok + 20, 10)  # the dead worker's counts are kept, not doubled
    folder = home / "run" / f"metrics-{server.port}"
    assert not glob.glob(str(folder / f"gauge_live*_{victim}.db"))  # its live gauges went
    assert glob.glob(str(folder / f"counter_{victim}.db"))


MONITOR = """
import sys
from modelport.serving.metrics import ServingMetrics
m = ServingMetrics()
m.set_alerts([("Down", "critical", "clf")])
m.set_drift("clf", "clf", 1, "a", "ks", 0.5, True, 0.3)
print("set", flush=True)
sys.stdin.read()
"""
NEXT_MONITOR = """
from modelport.serving.metrics import ServingMetrics
m = ServingMetrics()
m.set_alerts([])
print(m.exposition()[0].decode())
"""


def monitoring_values(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("modelport_alerts_firing", "modelport_drift_score")
    }


def test_the_monitor_gauges_show_the_latest_value_of_live_processes(tmp_path: Path) -> None:
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    python = [sys.executable, "-c"]
    first = subprocess.Popen(
        [*python, MONITOR], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "set"
        # another worker runs the monitor now: the alert it does not see firing resolves
        after = subprocess.run([*python, NEXT_MONITOR], env=env, capture_output=True, text=True)
        assert monitoring_values(after.stdout) == {
            "modelport_alerts_firing": 0,
            "modelport_drift_score": 0.5,
        }
    finally:
        first.communicate("", timeout=30)
    # both have exited: their gauges went with them, until the next monitor run sets them
    gone = subprocess.run([*python, NEXT_MONITOR], env=env, capture_output=True, text=True)
    assert monitoring_values(gone.stdout) == {}

"""SIGTERM under load: readiness turns false at once, the drain keeps answering, every
accepted request is answered and logged, and the server exits by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelport.client import Client
from modelport.monitoring.logstore import LogStore
from modelport.settings import Settings
from tests.chaos.load import Load, report, unclean
from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.integration.test_workers import workers_of

DRAIN_SECONDS = 2.0


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    return os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
        "MODELPORT_WORKERS": "1",
        **extra,
    }


def logged(settings: Settings) -> int:
    rows = LogStore(settings).query("SELECT count(*) AS n FROM predictions").to_pylist()
    return int(rows[0]["n"])


def probe(url: str) -> tuple[int, dict[str, object]]:
    response = httpx.get(url, timeout=5)
    body: dict[str, object] = response.json()
    return response.status_code, body


def wait_not_ready(server: LiveServer) -> dict[str, object]:
    """The first readiness answer after the signal that says 503 (polled, since the
    signal is handled asynchronously)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        status, body = probe(f"{server.url}/health/ready")
        if status == 503:
            return body
        time.sleep(0.02)
    raise AssertionError("readiness still 200 after SIGTERM")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_under_load_loses_no_accepted_request(
    settings: Settings, deployed_clf: Client, tmp_path: Path, workers: str
) -> None:
    env = server_env(
        settings,
        MODELPORT_WORKERS=workers,
        MODELPORT_DRAIN_SECONDS=str(DRAIN_SECONDS),
        MODELPORT_SHUTDOWN_GRACE_SECONDS="20",
        # Longer than the test: the rows on disk are those the shutdown flushed.
        MODELPORT_LOG_FLUSH_SECONDS="120",
    )
    server = start_server(env, tmp_path / "server.log")
    try:
        assert probe(f"{server.url}/health/ready")[0] == 200
        load = Load(server.url, "clf", tmp_path / "load", concurrency=8)
        load.wait_answered()
        signalled = time.time()
        server.process.send_signal(signal.SIGTERM)

        draining = wait_not_ready(server)
        assert draining["draining"] is True and draining["ready"] is False
        assert "shutting down" in str(draining["reason"])
        assert probe(f"{server.url}/health/live") == (200, {"live": True})
        assert probe(f"{server.url}/v2/health/ready")[0] == 503

        code = server.process.wait(timeout=60)
        time.sleep(0.3)  # the load meets a closed port
        outcomes = load.finish()
    finally:
        stop_server(server)

    counts = report(f"shutdown, {workers} worker(s)", outcomes)
    assert code in (0, -signal.SIGTERM), server.output()
    assert "did not stop in time" not in server.output()
    assert unclean(outcomes) == []
    assert counts["json_5xx"] == 0
    assert any(o["kind"] == "ok" and o["t"] > signalled + 0.5 for o in outcomes), (
        "no request answered during the drain"
    )
    assert counts["refused"] > 0  # the port closed once the server stopped
    assert logged(settings) == counts["ok"]


def test_drain_must_leave_time_for_the_requests() -> None:
    with pytest.raises(ValueError, match=r"drain_seconds \(5\) must be below"):
        Settings(shutdown_grace_seconds=5, drain_seconds=5)


def test_the_grace_period_is_shared_by_drain_requests_and_flush() -> None:
    from modelport.serving.server import requests_seconds

    assert requests_seconds(Settings()) == 25  # 30 s: 25 for requests, 5 for the flush
    assert requests_seconds(Settings(shutdown_grace_seconds=30, drain_seconds=5)) == 20
    assert requests_seconds(Settings(shutdown_grace_seconds=4, drain_seconds=1)) == 1


def test_a_worker_that_does_not_stop_is_killed_at_the_end_of_the_grace_period(
    settings: Settings, deployed_clf: Client, tmp_path: Path
) -> None:
    """A stopped (SIGSTOP) worker cannot act on SIGTERM: the supervisor kills it once
    the grace period is over, and exits."""
    env = server_env(settings, MODELPORT_WORKERS="2", MODELPORT_SHUTDOWN_GRACE_SECONDS="2")
    server = start_server(env, tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 30
        while len(workers_of(server.process.pid, server.port)) < 2:
            assert time.monotonic() < deadline, "two workers"
            time.sleep(0.1)
        stuck = min(workers_of(server.process.pid, server.port))
        os.kill(stuck, signal.SIGSTOP)
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=60)
    finally:
        stop_server(server)
    assert code == 0, server.output()
    assert f"worker {stuck} did not stop in time; killing it" in server.output()
    assert not Path(f"/proc/{stuck}").exists()


def test_a_process_still_stopping_at_the_end_of_the_grace_period_exits() -> None:
    """The single-process server's last resort (a flush stuck on a dead disk, say)."""
    stuck = (
        "import logging, time\n"
        "from modelport.serving.server import _exit_after\n"
        "logging.basicConfig()\n"
        "_exit_after(0.2)\n"
        "time.sleep(60)\n"
    )
    done = subprocess.run([sys.executable, "-c", stuck], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "still stopping 0.2 s after the signal; exiting now" in done.stderr

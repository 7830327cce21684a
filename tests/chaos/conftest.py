"""Chaos tier: the real server under load while a process, Redis, PostgreSQL, the log's
disk or an alert receiver fails; each test prints what the requests got."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelport.monitoring.logstore import LogStore
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
        "MODELPORT_WORKERS": "1",
        "MODELPORT_LOG_FLUSH_SECONDS": "0.2",
        "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
        "MODELPORT_ROLLOUT_INTERVAL_SECONDS": "0",
        "MODELPORT_BATCH_INTERVAL_SECONDS": "0",
        **extra,
    }
    if settings.registry_url:
        env["MODELPORT_REGISTRY_URL"] = settings.registry_url
    return env


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start `modelport serve` with ``server_env``; every one is stopped after the test."""
    started: list[LiveServer] = []

    def run(settings: Settings, **extra: str) -> LiveServer:
        log = tmp_path / f"server-{len(started)}.log"
        server = start_server(server_env(settings, **extra), log)
        started.append(server)
        return server

    yield run
    for server in started:
        stop_server(server)


def logged(settings: Settings) -> int:
    """Rows in the prediction log (every segment readable, or this raises)."""
    rows = LogStore(settings).query("SELECT count(*) AS n FROM predictions").to_pylist()
    return int(rows[0]["n"])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

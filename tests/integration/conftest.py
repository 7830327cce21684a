"""Integration tier: the real server in its own process on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelport.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


#: How a test runs the ``modelport`` command.
MODELPORT = (sys.executable, "-m", "modelport.cli.main")


def start_server(
    env: dict[str, str],
    log: Path,
    *args: str,
    port: int | None = None,
    timeout: float = 60,
    command: Sequence[str] = MODELPORT,
) -> LiveServer:
    """``modelport serve`` on a free port (``command`` runs it), once it is ready."""
    port = port or free_port()
    cmd = [
        *command,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", port, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.output()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start `modelport serve` for a settings object; stopped after the test."""
    started: list[LiveServer] = []

    def run(settings: Settings, *args: str) -> LiveServer:
        env = os.environ | {
            "MODELPORT_HOME": str(settings.home),
            "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
            "MODELPORT_WORKERS": "1",
        }
        if settings.registry_url:
            env["MODELPORT_REGISTRY_URL"] = settings.registry_url
        server = start_server(env, tmp_path / f"server-{len(started)}.log", *args)
        started.append(server)
        return server

    yield run
    for server in started:
        stop_server(server)

"""Running the server: one process, or N worker processes behind one port.

With several workers, uvicorn's supervisor forks them, replaces one that dies, and
each worker builds its own app (and loads its own models) from the same settings,
handed over as ``MODELPORT_*`` variables. Nothing is shared between workers but the
listening socket, the registry and the artifact store; metrics are summed across
workers through prometheus_client's multiprocess directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from modelport.settings import Settings

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``MODELPORT_*`` variables that rebuild ``settings`` in a worker process."""
    env = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"MODELPORT_{name.upper()}"] = text
    return env


def worker_count(settings: Settings) -> int:
    return settings.workers or os.cpu_count() or 1


def run_server(settings: Settings, *, log_level: str = "info") -> None:
    """Serve ``settings.env`` on ``settings.host:settings.port`` until interrupted."""
    workers = worker_count(settings)
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "access_log": False,
        "http": "httptools",
        "loop": "uvloop",
        "timeout_graceful_shutdown": 10,
    }
    metrics_dir = Path(tempfile.mkdtemp(prefix="modelport-metrics-"))
    os.environ[METRICS_DIR_VARIABLE] = str(metrics_dir)
    try:
        if workers == 1:
            from modelport.serving.app import create_app

            uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
            return
        os.environ.update(settings_environment(settings))
        uvicorn.run(
            "modelport.serving.app:create_app",
            factory=True,
            workers=workers,
            **options,  # type: ignore[arg-type]
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

"""Running the server: one process, or N worker processes behind one port.

With one worker the app runs in this process. With several, this process becomes
uvicorn's supervisor (``exec``, so the supervisor carries uvicorn alone, not the CLI):
it starts the workers, replaces one that dies, and each worker builds its own app
(and loads its own models) from the same settings, handed over as ``MODELPORT_*``
variables. Nothing is shared between workers but the listening socket, the registry
and the artifact store; metrics are summed across workers through prometheus_client's
multiprocess directory, ``MODELPORT_HOME/run/metrics-PORT``, emptied at every start.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from modelport.settings import Settings

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Thread pools of native libraries (OpenMP in scikit-learn/LightGBM/XGBoost, BLAS in
#: NumPy): one worker per core must not start a pool per core each.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``MODELPORT_*`` variables that rebuild ``settings`` in a worker process."""
    env = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"MODELPORT_{name.upper()}"] = text
    return env


def worker_count(settings: Settings) -> int:
    return settings.workers or os.cpu_count() or 1


def fresh_metrics_dir(settings: Settings) -> Path:
    """This server's multiprocess metrics folder, emptied: counters start at zero."""
    path = (settings.home / "run" / f"metrics-{settings.port}").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_server(settings: Settings, *, log_level: str = "info") -> None:
    """Serve ``settings.env`` on ``settings.host:settings.port`` until interrupted."""
    workers = worker_count(settings)
    os.environ[METRICS_DIR_VARIABLE] = str(fresh_metrics_dir(settings))
    for variable in THREAD_VARIABLES:  # read when the libraries load, so set them first
        os.environ.setdefault(variable, str(settings.runtime_threads))
    if workers == 1:
        import uvicorn

        from modelport.serving.app import create_app

        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=False,
            http="httptools",
            loop="uvloop",
            timeout_graceful_shutdown=10,
        )
        return
    argv = [
        sys.executable, "-m", "uvicorn", "modelport.serving.app:create_app", "--factory",
        "--host", settings.host, "--port", str(settings.port), "--workers", str(workers),
        "--http", "httptools", "--loop", "uvloop", "--log-level", log_level,
        "--no-access-log", "--timeout-graceful-shutdown", "10",
    ]  # fmt: skip
    os.execve(sys.executable, argv, os.environ | settings_environment(settings))

"""Running the server: one process, or N worker processes behind one port.

With one worker the app runs in this process. With several, this process becomes
their supervisor (`modelport.serving.supervisor`): it imports the serving stack once,
forks the workers (which share those pages) and replaces one that dies; each worker
builds its own app and loads its own models from the same settings. Nothing is shared
between workers but the listening socket, the imported code, the registry and the
artifact store; metrics are summed across workers through prometheus_client's
multiprocess directory, ``MODELPORT_HOME/run/metrics-PORT``, emptied at every start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from modelport.serving.memory import tune_allocator
from modelport.settings import Settings

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Thread pools of native libraries (OpenMP in scikit-learn/LightGBM/XGBoost, BLAS in
#: NumPy): one worker per core must not start a pool per core each.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Arrow's allocator: the system's, which returns freed memory to the OS, where Arrow's
#: default (mimalloc) keeps what a burst of prediction-log tables took, per worker.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


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
    os.environ.setdefault(ARROW_POOL_VARIABLE, "system")
    tune_allocator()
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
    from modelport.serving.supervisor import serve_forked

    serve_forked(settings, workers, log_level=log_level)

"""Running the server: one process, or N worker processes behind one port.

With one worker the app runs in this process. With several, this process becomes
their supervisor (`modelport.serving.supervisor`): it imports the serving stack once,
forks the workers (which share those pages) and replaces one that dies; each worker
builds its own app and loads its own models from the same settings. Nothing is shared
between workers but the listening socket, the imported code, the registry and the
artifact store; metrics are summed across workers through prometheus_client's
multiprocess directory, ``MODELPORT_HOME/run/metrics-PORT``, emptied at every start.

Stopping (SIGTERM or SIGINT), in every process that answers requests
(`GracefulServer`):

1. readiness turns false at once (``/health/ready`` answers 503, ``"draining": true``);
   liveness stays 200;
2. for ``drain_seconds`` the server keeps accepting and answering, so load balancers
   that probe readiness stop sending before the listener closes;
3. the listener closes; requests in flight finish (`requests_seconds` at most);
4. the app's shutdown flushes the prediction log and stops the watch loops;
5. a process still running ``shutdown_grace_seconds`` after the signal exits anyway
   (code 1), so a stuck flush never outlives Kubernetes' grace period.

HTTPS: with ``tls_certfile`` and ``tls_keyfile`` uvicorn wraps the socket (the inherited
one too, in forked workers); `check_tls` loads the pair before anything starts, so a
missing or unreadable file stops the server with a message saying which.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidInput
from modelport.serving.memory import tune_allocator
from modelport.settings import Settings, worker_count

if TYPE_CHECKING:
    import uvicorn

    from modelport.serving.dataplane import DataPlane

log = logging.getLogger("modelport.server")

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Thread pools of native libraries (OpenMP in scikit-learn/LightGBM/XGBoost, BLAS in
#: NumPy): one worker per core must not start a pool per core each.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Arrow's allocator: the system's, which returns freed memory to the OS, where Arrow's
#: default (mimalloc) keeps what a burst of prediction-log tables took, per worker.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
#: Of the grace period after the drain, at most this much is kept for the app's
#: shutdown (flushing the prediction log, stopping the watch loops) ...
FLUSH_SECONDS = 5.0
#: ... and never less than this is given to the requests in flight (whole seconds:
#: uvicorn's setting).
MIN_REQUEST_SECONDS = 1


def fresh_metrics_dir(settings: Settings) -> Path:
    """This server's multiprocess metrics folder, emptied: counters start at zero."""
    path = (settings.home / "run" / f"metrics-{settings.port}").resolve()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def requests_seconds(settings: Settings) -> int:
    """How long requests in flight may run once the listener closed (uvicorn's
    ``timeout_graceful_shutdown``): the grace period less the drain and the flush."""
    left = settings.shutdown_grace_seconds - settings.drain_seconds
    return max(MIN_REQUEST_SECONDS, int(left - min(FLUSH_SECONDS, left / 2)))


def check_tls(settings: Settings) -> None:
    """Load the certificate and key once, so a bad pair stops the start with its cause."""
    if settings.tls_certfile is None and settings.tls_keyfile is None:
        return
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        given = "certificate" if settings.tls_keyfile is None else "key"
        raise InvalidInput(
            f"a TLS {given} is set but not its "
            f"{'key' if given == 'certificate' else 'certificate'}: HTTPS needs both",
            hint="pass both --tls-cert and --tls-key (MODELPORT_TLS_CERTFILE and "
            "MODELPORT_TLS_KEYFILE), or neither for plain HTTP",
        )
    for what, path in (("certificate", settings.tls_certfile), ("key", settings.tls_keyfile)):
        if not path.is_file():
            raise InvalidInput(
                f"TLS {what} file {str(path)!r} does not exist or is not a file",
                hint="set --tls-cert/--tls-key (MODELPORT_TLS_CERTFILE/_KEYFILE) to PEM files",
            )
        if not os.access(path, os.R_OK):
            raise InvalidInput(
                f"TLS {what} file {str(path)!r} is not readable by this user",
                hint=f"give the server's user read access: chmod or chown {path}",
            )
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_certfile, settings.tls_keyfile
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInput(
            f"cannot use TLS certificate {str(settings.tls_certfile)!r} with key "
            f"{str(settings.tls_keyfile)!r}: {exc}",
            hint="both must be PEM, and the key must belong to the certificate "
            "(openssl x509 -noout -modulus -in CERT vs openssl rsa -noout -modulus -in KEY)",
        ) from exc


def uvicorn_config(app: Any, settings: Settings, log_level: str, **where: Any) -> uvicorn.Config:
    """uvicorn's settings for a process that answers requests (``where``: host and
    port, or nothing when serving on an inherited socket)."""
    import uvicorn

    from modelport.serving.protocol import HttpProtocol

    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        http=HttpProtocol,  # uvicorn's httptools protocol, one send per response
        loop="uvloop",
        timeout_graceful_shutdown=requests_seconds(settings),
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        **where,
    )


def serve_app(settings: Settings, log_level: str, sockets: list[socket.socket] | None) -> None:
    """Build the app and serve it until a signal: on ``settings.host:settings.port``, or
    on ``sockets`` inherited from the supervisor."""
    from modelport.serving.app import create_app

    planes: list[DataPlane] = []
    app = create_app(settings, with_plane=planes.append)
    where = {} if sockets is not None else {"host": settings.host, "port": settings.port}
    config = uvicorn_config(app, settings, log_level, **where)
    graceful_server(config, settings, planes).run(sockets=sockets)


def graceful_server(
    config: uvicorn.Config, settings: Settings, planes: list[DataPlane]
) -> uvicorn.Server:
    """A uvicorn server that drains before it stops (see the module docstring);
    ``planes`` are marked draining at the signal."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        def __init__(self) -> None:
            super().__init__(config)
            self.stopping = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.stopping:  # a second signal: stop now, as uvicorn does
                super().handle_exit(sig, frame)
                return
            self.stopping = True
            for plane in planes:
                plane.draining = True
            _exit_after(settings.shutdown_grace_seconds)
            log.info(
                "%s: draining for %g s, then finishing requests in flight",
                signal.Signals(sig).name,
                settings.drain_seconds,
            )
            if settings.drain_seconds <= 0:
                super().handle_exit(sig, frame)
                return
            # Called from a signal handler: a timer thread flips uvicorn's flag, which
            # its main loop reads every tenth of a second.
            timer = threading.Timer(settings.drain_seconds, super().handle_exit, (sig, None))
            timer.daemon = True
            timer.start()

    return GracefulServer()


def _exit_after(seconds: float) -> None:
    """End this process ``seconds`` from now whatever it is doing: the grace period's
    promise, as Kubernetes would keep it with SIGKILL."""

    def hard_exit() -> None:
        log.error("still stopping %g s after the signal; exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True
    timer.start()


def run_server(settings: Settings, *, log_level: str = "info") -> None:
    """Serve ``settings.env`` on ``settings.host:settings.port`` until interrupted."""
    check_tls(settings)
    if not logging.getLogger().handlers:  # Modelport's own lines (auth, drain) beside uvicorn's
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(message)s")
    workers = worker_count(settings)
    os.environ[METRICS_DIR_VARIABLE] = str(fresh_metrics_dir(settings))
    for variable in THREAD_VARIABLES:  # read when the libraries load, so set them first
        os.environ.setdefault(variable, str(settings.runtime_threads))
    os.environ.setdefault(ARROW_POOL_VARIABLE, "system")
    tune_allocator()
    if workers == 1:
        serve_app(settings, log_level, sockets=None)
        return
    from modelport.serving.supervisor import serve_forked

    serve_forked(settings, workers, log_level=log_level)

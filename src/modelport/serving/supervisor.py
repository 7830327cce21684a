"""N worker processes behind one port, forked from a parent that imported the stack.

The parent binds the listening socket, imports the serving stack (NumPy, Arrow,
onnxruntime, FastAPI, SQLAlchemy: most of a worker's memory), moves those objects out
of the garbage collector's reach (`gc.freeze`, so collections never write to their
pages), and forks the workers. Each worker builds its own app and loads its own
models; the imported code and data stay shared between the workers, copy on write, so
N workers cost far less memory than N fresh interpreters (gunicorn's ``--preload``).

The watch loops (monitor, alerts, rollouts, batch schedule: `serving.watcher`) run in
one more forked process of their own, not in the workers, so a drift report over a
busy log never takes the GIL or the memory of a process answering requests.

The parent starts no thread and no event loop, before forking or after: it replaces a
worker (or the watch process) that dies, clearing its live metrics, and passes SIGTERM
and SIGINT on at once. Then it closes its own copy of the listening socket (so the
port refuses connections once the workers close theirs), replaces no one, and waits:
each worker drains and finishes its requests (`modelport.serving.server`), and one
still running ``shutdown_grace_seconds`` after the signal is killed.

Example::

    serve_forked(settings, workers=2, log_level="info")   # returns once stopped
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from types import FrameType

from modelport.settings import Settings

log = logging.getLogger("modelport.supervisor")

#: Imported in the parent so that every worker shares their pages; those not installed
#: are skipped (a flavor costs nothing until used, as ever).
PRELOAD = (
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "onnxruntime",
    "uvicorn",
    "uvloop",
    "httptools",
    "modelport.serving.app",
)
#: How often the parent looks for dead workers and signals.
POLL_SECONDS = 0.2
#: A worker that dies sooner than this after its start counts as failing to start...
QUICK_DEATH_SECONDS = 10.0
#: ... and the next is started after a delay that doubles each time, up to this.
MAX_RESTART_DELAY = 30.0
#: The slot of the watch process (workers have 0..N-1).
WATCH_SLOT = -1
#: How much the watch process yields the CPU to the workers when both want it: a
#: drift report over a window of the log is work that can wait a little, a request is
#: not. (Alert and rollout ticks take milliseconds; they keep their pace.)
WATCH_NICENESS = 10
#: What ps and top show for each process (Linux: 15 characters at most).
SUPERVISOR_NAME, WORKER_NAME, WATCH_NAME = "modelport", "modelport-w", "modelport-watch"


def name_process(name: str) -> None:
    """Set this process's name as ps, top and /proc/PID/comm show it, where the OS lets."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    gc.collect()
    gc.freeze()


class Supervisor:
    """Forks ``workers`` workers on one socket, replaces the dead, stops them on a signal."""

    def __init__(self, settings: Settings, workers: int, *, log_level: str = "info") -> None:
        self.settings, self.workers, self.log_level = settings, workers, log_level
        self.worker_settings = settings.model_copy(update={"watch_in_server": False})
        self.children: dict[int, int] = {}  # pid -> slot
        self._started: dict[int, float] = {}  # slot -> when its worker was forked
        self._failures: dict[int, int] = {}  # slot -> quick deaths in a row
        self._due: dict[int, float] = {}  # slot -> when to fork its next worker
        self._stopping = False
        self._signalled_at = 0.0
        self._terminated: set[int] = set()

    def run(self) -> None:
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=self.log_level.upper(), format="%(levelname)s:     %(message)s"
            )
        sock = listening_socket(self.settings.host, self.settings.port)
        name_process(SUPERVISOR_NAME)
        preload()
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.workers):
                self._fork(sock, slot)
            if settings_watch(self.settings):
                self._fork(sock, WATCH_SLOT)
            log.info(
                "serving on %s://%s:%d with %d workers",
                "https" if self.settings.tls_certfile else "http",
                self.settings.host,
                self.settings.port,
                self.workers,
            )
            while not self._stopping:
                self._reap()
                self._restart(sock)
                time.sleep(POLL_SECONDS)
            self._shutdown(sock)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            sock.close()

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._signalled_at = time.monotonic()
        for pid in list(self.children):  # at once: each worker's drain starts now
            self._terminate(pid)

    def _terminate(self, pid: int) -> None:
        """SIGTERM once: a second one would cut a worker's drain short."""
        if pid not in self._terminated:
            self._terminated.add(pid)
            _signal(pid, signal.SIGTERM)

    def _fork(self, sock: socket.socket, slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: it never returns into the parent's code
            code = 1
            try:
                for s in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(s, signal.SIG_DFL)
                name_process(WATCH_NAME if slot == WATCH_SLOT else f"{WORKER_NAME}{slot}")
                if slot == WATCH_SLOT:
                    sock.close()
                    run_watch(self.settings)
                else:
                    run_worker(sock, self.worker_settings, self.log_level)
                code = 0
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        self.children[pid] = slot
        self._started[slot] = time.monotonic()

    def _reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            _forget_metrics(pid)
            if self._stopping:
                continue
            # A worker that dies right after starting (a bad setting, a registry that is
            # away) is restarted with a growing delay, not in a tight loop.
            quick = time.monotonic() - self._started.get(slot, 0.0) < QUICK_DEATH_SECONDS
            self._failures[slot] = self._failures.get(slot, 0) + 1 if quick else 0
            delay = min(2.0 ** self._failures[slot] - 1, MAX_RESTART_DELAY) if quick else 0.0
            log.warning(
                "worker %d (slot %d) exited with %s; starting another%s",
                pid,
                slot,
                _how(status),
                f" in {delay:.0f} s" if delay else "",
            )
            self._due[slot] = time.monotonic() + delay

    def _restart(self, sock: socket.socket) -> None:
        now = time.monotonic()
        for slot, due in list(self._due.items()):
            if due <= now:
                del self._due[slot]
                self._fork(sock, slot)

    def _shutdown(self, sock: socket.socket) -> None:
        sock.close()  # the workers hold their own copies until they stop accepting
        self._due.clear()
        for pid in list(self.children):  # one forked just as the signal came
            self._terminate(pid)
        log.info(
            "stopping %d processes (at most %g s)",
            len(self.children),
            self.settings.shutdown_grace_seconds,
        )
        deadline = self._signalled_at + self.settings.shutdown_grace_seconds
        while self.children and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(POLL_SECONDS / 2)
            else:
                self.children.pop(pid, None)
                _forget_metrics(pid)
        for pid in self.children:
            log.warning("worker %d did not stop in time; killing it", pid)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _forget_metrics(pid)
        self.children.clear()


def run_worker(sock: socket.socket, settings: Settings, log_level: str) -> None:
    """One worker: its own app and models, serving on the inherited socket."""
    from modelport.serving.server import serve_app

    serve_app(settings, log_level, sockets=[sock])


def settings_watch(settings: Settings) -> bool:
    """Whether any watch loop is on (else no watch process is started)."""
    return settings.watch_in_server and any(
        interval > 0
        for interval in (
            settings.monitor_interval_seconds,
            settings.rollout_interval_seconds,
            settings.batch_interval_seconds,
        )
    )


def run_watch(settings: Settings) -> None:
    """The watch process: the server's watch loops until SIGTERM or SIGINT."""
    import asyncio

    from modelport.client import Client
    from modelport.serving.metrics import ServingMetrics
    from modelport.serving.watcher import Watcher

    os.nice(WATCH_NICENESS)

    async def watch() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        client = Client(settings)
        watcher = Watcher(client, metrics=ServingMetrics())
        watcher.start()
        try:
            await stop.wait()
        finally:
            await watcher.stop()
            client.close()

    asyncio.run(watch())


def serve_forked(settings: Settings, workers: int, *, log_level: str = "info") -> None:
    Supervisor(settings, workers, log_level=log_level).run()


def _forget_metrics(pid: int) -> None:
    """A dead worker's live gauges (requests in flight, ...) leave the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"code {os.waitstatus_to_exitcode(status)}"

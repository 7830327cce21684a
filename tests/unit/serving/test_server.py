"""What a multi-worker server starts from."""

from __future__ import annotations

import os
from pathlib import Path

from modelport.serving.server import fresh_metrics_dir, worker_count
from modelport.settings import Settings


def test_worker_count_defaults_to_cores(tmp_path: Path) -> None:
    assert worker_count(Settings(home=tmp_path)) == (os.cpu_count() or 1)
    assert worker_count(Settings(home=tmp_path, workers=1)) == 1


def test_metrics_dir_starts_empty(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, port=9001)
    first = fresh_metrics_dir(settings)
    (first / "counter_123.db").write_bytes(b"stale")
    again = fresh_metrics_dir(settings)
    assert again == first and list(again.iterdir()) == []


def _exited_child(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    return pid


def test_a_worker_that_dies_at_start_is_restarted_later_each_time(tmp_path: Path) -> None:
    import time

    from modelport.serving.supervisor import MAX_RESTART_DELAY, Supervisor

    supervisor = Supervisor(Settings(home=tmp_path), workers=1)
    delays = []
    for _ in range(7):
        pid = _exited_child(1)
        supervisor.children[pid] = 0
        supervisor._started[0] = time.monotonic()
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
        supervisor._reap()
        delays.append(round(supervisor._due.pop(0) - time.monotonic()))
    assert delays == [1, 3, 7, 15, MAX_RESTART_DELAY, MAX_RESTART_DELAY, MAX_RESTART_DELAY]
    assert supervisor.children == {}


def test_a_worker_that_ran_a_while_is_restarted_at_once(tmp_path: Path) -> None:
    import time

    from modelport.serving.supervisor import QUICK_DEATH_SECONDS, Supervisor

    supervisor = Supervisor(Settings(home=tmp_path), workers=1)
    pid = _exited_child(0)
    supervisor.children[pid] = 0
    supervisor._started[0] = time.monotonic() - QUICK_DEATH_SECONDS - 1
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    supervisor._reap()
    assert supervisor._due[0] <= time.monotonic()

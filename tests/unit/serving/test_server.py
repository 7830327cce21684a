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

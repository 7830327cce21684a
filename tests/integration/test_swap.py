"""Swapping versions under continuous load fails no request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd

from modelport.client import Client
from tests.integration.conftest import LiveServer

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def test_twenty_swaps_under_load_fail_nothing(
    serve: Callable[..., LiveServer],
    deployed_clf: Client,
    sklearn_classifier: tuple[Path, pd.DataFrame],
) -> None:
    path, frame = sklearn_classifier
    deployed_clf.register_model("clf", path, sample_input=frame, description="v2")
    server = serve(deployed_clf.settings)
    stop = threading.Event()
    failures: list[str] = []
    versions: list[int] = []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                response = http.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                else:
                    versions.append(response.json()["version"])

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for i in range(20):
            target = 2 if i % 2 == 0 else 1
            deployed_clf.deploy("clf", f"models:/clf/{target}", env="production")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (not versions or versions[-1] != target):
                time.sleep(0.05)
            assert versions[-1] == target
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    assert failures == []
    assert set(versions) == {1, 2}
    assert len(versions) > 100

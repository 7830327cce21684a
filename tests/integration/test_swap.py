"""Swapping versions under continuous load fails no request, and every answer comes
from a version that was deployed at that moment."""

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
#: How long after a registry change a server may still answer with what it replaced
#: (it polls every 0.2 s and swaps once the new version is loaded).
SWAP_LAG_S = 3.0


def test_twenty_swaps_by_deploy_rollback_promote_and_rollout_fail_nothing(
    serve: Callable[..., LiveServer],
    deployed_clf: Client,
    sklearn_classifier: tuple[Path, pd.DataFrame],
) -> None:
    client = deployed_clf
    path, frame = sklearn_classifier
    client.register_model("clf", path, sample_input=frame, description="v2")
    client.deploy("clf", "models:/clf/2", env="staging")
    server = serve(client.settings)
    stop = threading.Event()
    failures: list[str] = []
    answers: list[tuple[float, float, int]] = []  # sent, answered, version
    deployed: list[tuple[float, set[int]]] = [(0.0, {1})]  # from when, which versions

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                sent = time.monotonic()
                response = http.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                else:
                    answers.append((sent, time.monotonic(), response.json()["version"]))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for i in range(20):
            target = swap(client, i, deployed)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (not answers or answers[-1][2] != target):
                time.sleep(0.05)
            assert answers[-1][2] == target
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    assert failures == []
    assert {a[2] for a in answers} == {1, 2} and len(answers) > 100
    assert [e.action for e in client.history("clf")].count("rollback") >= 5

    wrong = [a for a in answers if a[2] not in deployed_between(deployed, a[0] - SWAP_LAG_S, a[1])]
    assert wrong == []


def deployed_between(deployed: list[tuple[float, set[int]]], start: float, end: float) -> set[int]:
    """The versions deployed at any moment of [start, end], from (since, versions) notes."""
    versions: set[int] = set()
    for i, (since, live) in enumerate(deployed):
        until = deployed[i + 1][0] if i + 1 < len(deployed) else float("inf")
        if since <= end and until >= start:
            versions |= live
    return versions


def swap(client: Client, i: int, deployed: list[tuple[float, set[int]]]) -> int:
    """One swap, by each way in turn (deploy, rollback, promote, a rollout's steps);
    notes what is deployed in ``deployed`` and returns the version it ends on."""

    def note() -> None:
        live = {v.version for v in client.get_deployment("clf").spec.live}
        deployed.append((time.monotonic(), live))

    way = i % 4
    if way == 0:
        client.deploy("clf", "models:/clf/2")
    elif way == 1:
        client.rollback("clf")
    elif way == 2:
        client.promote("clf", source="staging", target="production")
    else:  # a rollout to v1: a 50% step, then promoted to 100%
        client.rollouts("production").start("clf", "models:/clf/1", steps=[50, 100])
        note()
        time.sleep(0.3)
        client.rollouts("production").promote("clf")
    note()
    return next(iter(deployed[-1][1]))

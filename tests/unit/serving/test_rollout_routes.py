"""Rollout routes: start, read, pause, resume, promote, abort a rollout; roll back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelport.client import Client


@pytest.fixture
def rollout_server(
    deployed: Client,
    sklearn_classifier: tuple[Path, pd.DataFrame],
    make_server: Callable[..., TestClient],
) -> TestClient:
    """production/clf serves clf/1, clf/2 is registered; no background loops, so no
    step is judged while a test runs."""
    path, frame = sklearn_classifier
    deployed.register_model("clf", path, owner="ana@example.com", sample_input=frame)
    return make_server(rollout_interval_seconds=0, monitor_interval_seconds=0)


def weights(server: TestClient, endpoint: str = "clf") -> dict[str, float]:
    spec = server.get(f"/v1/deployments/production/{endpoint}").json()["spec"]
    return {
        f"{v['model']}-v{v['version']}": (-1.0 if v.get("shadow") else v["weight"])
        for v in spec["variants"]
    }


def test_start_steer_and_finish_a_rollout(rollout_server: TestClient) -> None:
    server = rollout_server
    started = server.post(
        "/v1/rollouts",
        json={
            "endpoint": "clf",
            "to": "models:/clf/2",
            "steps": "shadow,10,50,100",
            "interval": "5m",
            "reason": "retrained",
        },
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["state"] == "running" and body["step"] == 0 and body["percent"] == 0.0
    assert body["steps"] == [0.0, 10.0, 50.0, 100.0] and body["policy"]["interval_s"] == 300.0
    assert body["environment"] == "production" and body["reason"] == "retrained"
    assert weights(server) == {"clf-v1": 100.0, "clf-v2": -1.0}

    status = server.get("/v1/rollouts/clf").json()
    assert status["id"] == body["id"] and status["candidate"]["uri"] == "models:/clf/2"

    assert server.post("/v1/rollouts/clf/pause").json()["state"] == "paused"
    assert server.post("/v1/rollouts/clf/pause").status_code == 409
    assert server.post("/v1/rollouts/clf/resume").json()["state"] == "running"
    promoted = server.post("/v1/rollouts/clf/promote").json()
    assert promoted["step"] == 1 and promoted["percent"] == 10.0
    assert weights(server) == {"clf-v2": 10.0, "clf-v1": 90.0}
    done = server.post("/v1/rollouts/clf/promote", params={"full": "true"}).json()
    assert done["state"] == "succeeded" and weights(server) == {"clf-v2": 100.0}
    assert server.post("/v1/rollouts/clf/abort").status_code == 404  # nothing active

    listed = server.get("/v1/rollouts", params={"endpoint": "clf"}).json()["rollouts"]
    assert [(r["id"], r["state"]) for r in listed] == [(body["id"], "succeeded")]
    assert server.get("/v1/rollouts", params={"endpoint": "reg"}).json()["rollouts"] == []
    history = server.get("/v1/deployments/production/clf/history").json()["events"]
    assert [e["actor"] for e in history][-3:] == [f"rollout/{body['id']}"] * 3


def test_abort_and_rollback(rollout_server: TestClient) -> None:
    server = rollout_server
    started = server.post(
        "/v1/rollouts", json={"endpoint": "clf", "to": "models:/clf/2", "steps": [25, 100]}
    )
    assert started.status_code == 201, started.text
    assert weights(server) == {"clf-v2": 25.0, "clf-v1": 75.0}
    aborted = server.post("/v1/rollouts/clf/abort", json={"reason": "looks off"}).json()
    assert aborted["state"] == "aborted" and aborted["message"] == "looks off"
    assert weights(server) == {"clf-v1": 100.0}

    # rollback of an active rollout aborts it
    server.post("/v1/rollouts", json={"endpoint": "clf", "to": "models:/clf/2", "steps": [50, 100]})
    back = server.post("/v1/deployments/clf/rollback", json={"reason": "pager"})
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 1 and weights(server) == {"clf-v1": 100.0}
    assert server.get("/v1/rollouts/clf").json()["state"] == "aborted"

    # without a rollout: the deployment before the last change
    server.put("/v1/deployments/production/clf", json={"model": "models:/clf/2"})
    rolled = server.post("/v1/deployments/clf/rollback")
    assert rolled.json()["version"] == 1
    history = server.get("/v1/deployments/production/clf/history").json()["events"]
    assert history[-1]["action"] == "rollback"


def test_rollout_errors(rollout_server: TestClient) -> None:
    server = rollout_server
    start = {"endpoint": "clf", "to": "models:/clf/2"}
    assert server.get("/v1/rollouts/clf").status_code == 404  # never had one
    missing = server.post("/v1/rollouts", json=start | {"endpoint": "nope"})
    assert missing.status_code == 404
    bad = server.post("/v1/rollouts", json=start | {"steps": [5, 200]})
    assert bad.status_code == 400 and "invalid rollout policy" in bad.json()["error"]
    assert server.post("/v1/rollouts", json=start | {"steps": "5,x,100"}).status_code == 400
    assert server.post("/v1/rollouts", json=start | {"interval": "soon"}).status_code == 400
    assert server.post("/v1/rollouts", json=start | {"extra": 1}).status_code == 400
    assert server.post("/v1/rollouts", json=start | {"to": "models:/clf/1"}).status_code == 409
    assert weights(server) == {"clf-v1": 100.0}

    assert server.post("/v1/rollouts", json=start).status_code == 201
    second = server.post("/v1/rollouts", json=start)
    assert second.status_code == 409 and "already has an active rollout" in second.json()["error"]
    assert server.post("/v1/rollouts/clf/explode").status_code == 404
    assert server.post("/v1/deployments/nope/rollback").status_code == 404
    paths = server.get("/openapi.json").json()["paths"]
    assert "/v1/rollouts/{endpoint}/{action}" in paths
    assert "/v1/deployments/{endpoint}/rollback" in paths

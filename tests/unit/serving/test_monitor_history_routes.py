"""Monitor history over HTTP: the runs the server's monitor loop kept, oldest first, and
one column's live histogram counted on its reference profile's bins."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.serving.conftest import ROW


@pytest.fixture
def watched(make_server: Callable[..., TestClient]) -> TestClient:
    """A server that answered four clf requests of two rows and monitored them."""
    server = make_server(log_flush_seconds=0.05, monitor_interval_seconds=0.2)
    for value in (-0.5, 0.0, 0.5, 5.0):
        rows = [ROW | {"a": value}, ROW | {"a": value}]
        reply = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": rows})
        assert reply.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = server.get("/v1/endpoints/clf/monitor/history").json()["runs"]
        if len(runs) >= 2 and runs[-1]["rows"] == 8:
            return server
        time.sleep(0.05)
    raise AssertionError("the monitor kept no run over the eight rows")


def test_history_oldest_first_with_drift_per_column(watched: TestClient) -> None:
    body: dict[str, Any] = watched.get(
        "/v1/endpoints/clf/monitor/history", params={"limit": 2}
    ).json()
    assert (body["environment"], body["endpoint"]) == ("production", "clf")
    first, last = body["runs"]
    assert first["id"] < last["id"] and first["computed_at"] <= last["computed_at"]
    assert (last["model"], last["version"]) == ("clf", 1)
    columns = {c["column"]: c for c in last["drift"]["columns"]}
    assert set(columns) == {"a", "b", "c", "d"}
    assert columns["a"]["threshold"] > 0 and "score" in columns["a"]
    assert "missing_rate" in columns["a"] and "out_of_range_rate" in columns["a"]
    assert watched.get("/v1/endpoints/reg/monitor/history").json()["runs"][-1]["rows"] == 0
    assert watched.get("/v1/endpoints/nope/monitor/history").json()["runs"] == []
    assert watched.get("/v1/endpoints/clf/monitor/history?limit=0").status_code in (400, 422)


def test_histogram_on_the_reference_bins(watched: TestClient) -> None:
    body: dict[str, Any] = watched.get(
        "/v1/endpoints/clf/monitor/histogram", params={"column": "a", "window": "5m"}
    ).json()
    edges, reference, current = body["edges"], body["reference"], body["current"]
    assert len(edges) == len(reference["counts"]) + 1 == len(current["counts"]) + 1
    assert reference["rows"] == sum(reference["counts"]) > 0
    assert current["rows"] == 8 and current["above"] == 2  # a = 5 is past the reference
    assert sum(current["counts"]) + current["below"] + current["above"] == 8
    output = watched.get("/v1/endpoints/clf/monitor/histogram", params={"column": "label"})
    assert output.status_code == 200 and output.json()["current"]["rows"] == 8


def test_histogram_of_an_unknown_column_says_so(watched: TestClient) -> None:
    reply = watched.get("/v1/endpoints/clf/monitor/histogram", params={"column": "zz"})
    assert reply.status_code == 404
    assert "zz" in reply.json()["error"] and reply.json()["hint"]

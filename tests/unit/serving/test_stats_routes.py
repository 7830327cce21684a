"""Traffic statistics over HTTP: /v1/stats for every endpoint, /v1/endpoints/{e}/stats
per variant, from the prediction log the server writes; bad windows and steps are 400s
that say what to send."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.serving.conftest import ROW


@pytest.fixture
def logged(make_server: Callable[..., TestClient]) -> TestClient:
    """A server that answered five clf requests and refused one, all logged."""
    server = make_server(log_flush_seconds=0.05)
    for _ in range(5):
        reply = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW, ROW]})
        assert reply.status_code == 200
    bad = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW | {"a": "x"}]})
    assert bad.status_code == 400
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = server.get("/v1/endpoints/clf/stats", params={"window": "5m"}).json()
        if body["totals"]["requests"] == 6:
            return server
        time.sleep(0.05)
    raise AssertionError("the log did not show the six requests")


def test_every_endpoint_with_its_figures(logged: TestClient) -> None:
    body: dict[str, Any] = logged.get(
        "/v1/stats", params={"window": "5m", "step": "1m", "series": "requests,error_rate"}
    ).json()
    assert body["step_s"] == 60 and len(body["times"]) in (5, 6)
    (clf,) = body["endpoints"]
    assert (clf["environment"], clf["endpoint"]) == ("production", "clf")
    assert (clf["requests"], clf["errors"]) == (6, 1)
    assert clf["rows_per_request"] == 2 and clf["p99_s"] is not None
    assert set(clf["series"]) == {"requests", "error_rate"}
    assert sum(clf["series"]["requests"]) == 6
    assert logged.get("/v1/stats", params={"environment": "staging"}).json()["endpoints"] == []


def test_one_endpoint_per_variant_and_error_kind(logged: TestClient) -> None:
    body: dict[str, Any] = logged.get("/v1/endpoints/clf/stats", params={"window": "1h"}).json()
    assert body["environment"] == "production" and body["step_s"] == 60
    (variant,) = body["variants"]
    assert (variant["variant"], variant["model"], variant["version"]) == ("clf-v1", "clf", 1)
    assert variant["requests"] == 6 and len(variant["series"]["p90_s"]) == len(body["times"])
    (kind,) = body["errors"]
    assert (kind["kind"], kind["errors"]) == ("signature_mismatch", 1)
    before = logged.get("/v1/endpoints/clf/stats", params={"window": "1h", "until": "2h"}).json()
    assert before["totals"]["requests"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window": "0s"}, "must be above 0"),
        ({"window": "soon"}, "not a duration"),
        ({"window": "1d", "step": "1s"}, "buckets"),
        ({"until": "yesterday"}, "neither a duration nor a timestamp"),
        ({"series": "requests,qps"}, "no series named qps"),
    ],
)
def test_bad_parameters_are_400s(server: TestClient, params: dict[str, str], message: str) -> None:
    reply = server.get("/v1/stats", params=params)
    assert reply.status_code == 400 and message in reply.json()["error"], reply.json()


def test_a_bad_endpoint_name_is_a_400(server: TestClient) -> None:
    reply = server.get("/v1/endpoints/a%20b/stats")
    assert reply.status_code == 400 and "not an endpoint name" in reply.json()["error"]

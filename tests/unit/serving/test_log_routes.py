"""Prediction log search over HTTP: /v1/predictions filters the rows the server logged
by id, endpoint and time, newest first, with inputs, outputs and label; its limit is
bounded, and bad parameters are 400s that say what to send."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.serving.conftest import ROW


@pytest.fixture
def logged(make_server: Callable[..., TestClient]) -> tuple[TestClient, list[str]]:
    """A server that answered three clf requests of two rows, all logged; one labelled."""
    server = make_server(log_flush_seconds=0.05)
    ids: list[str] = []
    for _ in range(3):
        reply = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW, ROW]})
        assert reply.status_code == 200
        ids += reply.json()["prediction_ids"]
    labelled = server.post("/v1/feedback", json={"prediction_id": ids[0], "label": 1})
    assert labelled.status_code == 200, labelled.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(server.get("/v1/predictions").json()["rows"]) == 6:
            return server, ids
        time.sleep(0.05)
    raise AssertionError("the log did not show the six rows")


def rows(server: TestClient, **params: Any) -> list[dict[str, Any]]:
    reply = server.get("/v1/predictions", params=params)
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["rows"]
    return found


def test_one_prediction_with_inputs_output_and_label(
    logged: tuple[TestClient, list[str]],
) -> None:
    server, ids = logged
    (row,) = rows(server, id=ids[0])
    assert (row["prediction_id"], row["endpoint"], row["status"]) == (ids[0], "clf", "ok")
    assert row["variant"] == "clf-v1" and row["latency_s"] > 0
    assert row["inputs"] == ROW and row["outputs"]
    assert row["label"]["label"] == "1"
    (other,) = rows(server, id=ids[1])
    assert other["label"] is None
    request_id = ids[0].rsplit("-", 1)[0]
    assert {r["prediction_id"] for r in rows(server, id=request_id)} == set(ids[:2])


def test_filters_and_limit(logged: tuple[TestClient, list[str]]) -> None:
    server, ids = logged
    newest = rows(server, endpoint="clf", since="5m")
    assert len(newest) == 6 and newest[0]["ts"] >= newest[-1]["ts"]
    assert rows(server, endpoint="reg") == []
    assert rows(server, since="1h", until="30m") == []
    assert rows(server, environment="staging") == []
    reply = server.get("/v1/predictions", params={"limit": 2}).json()
    assert len(reply["rows"]) == 2 and reply["truncated"] and reply["limit"] == 2


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"limit": "0"}, "limit '0' must be a whole number from 1 to 500"),
        ({"limit": "501"}, "from 1 to 500"),
        ({"limit": "many"}, "limit 'many'"),
        ({"since": "yesterday"}, "since: 'yesterday' is neither a duration nor a timestamp"),
        ({"since": "1h", "until": "2h"}, "since must be before until"),
        ({"id": "x' OR 1=1 --"}, "is not a valid id"),
        ({"endpoint": "../etc"}, "is not a valid endpoint"),
    ],
)
def test_bad_parameters_are_400s(
    make_server: Callable[..., TestClient], params: dict[str, str], said: str
) -> None:
    reply = make_server().get("/v1/predictions", params=params)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert said in body["error"] and body["code"] == "invalid_input"

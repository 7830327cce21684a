"""POST /v1/feedback and GET /v1/endpoints/{endpoint}/performance over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelport.artifacts import ArtifactRef
from modelport.client import Client
from modelport.errors import ModelportError
from modelport.monitoring.labels import LabelStore
from modelport.serving import http
from modelport.serving.dataplane import DataPlane
from modelport.serving.routes import feedback
from modelport.serving.state import AppState
from modelport.signature import Signature


def build_app(client: Client, labels: LabelStore | None) -> FastAPI:
    app = FastAPI()
    plane = DataPlane(client.settings, client.registry, client.artifacts)
    app.state.modelport = AppState(client.settings, client, plane, labels=labels)
    app.add_exception_handler(ModelportError, http.modelport_error_handler)
    app.add_exception_handler(StarletteHTTPException, http.http_error_handler)
    app.add_exception_handler(RequestValidationError, http.validation_error_handler)
    app.include_router(feedback.router)
    return app


@pytest.fixture
def store(client: Client) -> LabelStore:
    return LabelStore(client.settings, registry=client.registry)


@pytest.fixture
def api(client: Client, store: LabelStore) -> Iterator[TestClient]:
    with TestClient(build_app(client, store), raise_server_exceptions=False) as test_client:
        yield test_client


def log_predictions(client: Client, labels: list[int]) -> list[str]:
    """A classifier's answered predictions in the prediction log: one per label."""
    mv = client.registry.create_version(
        "fraud",
        artifact=ArtifactRef(sha256="0" * 64, name="model.bin", size=0),
        flavor="sklearn",
        signature=Signature.infer({"a": [0.5]}),
        task="classification",
        classes=[0, 1],
    )
    now = datetime.now(UTC) - timedelta(hours=1)
    ids = [f"{'ab' * 12}-{i}" for i in range(len(labels))]
    n = len(ids)
    table = pa.table(
        {
            "prediction_id": ids,
            "ts": pa.array([now] * n, pa.timestamp("us", "UTC")),
            "model": ["fraud"] * n,
            "version": pa.array([mv.version] * n, pa.int64()),
            "status": ["ok"] * n,
            "out_label": pa.array(labels, pa.int64()),
        }
    )
    folder = client.settings.logs_path / "predictions/endpoint=fraud" / f"date={now:%Y-%m-%d}"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "host-1-00000001.parquet")
    return ids


def test_feedback_in_every_shape_then_performance(client: Client, api: TestClient) -> None:
    ids = log_predictions(client, [1, 0, 1, 0])
    one = api.post("/v1/feedback", json={"prediction_id": ids[0], "label": 1})
    assert one.status_code == 200, one.text
    assert one.json() == {"accepted": 1}
    items = [{"prediction_id": ids[1], "label": 0}, {"prediction_id": ids[2], "label": 0}]
    assert api.post("/v1/feedback", json={"feedback": items}).json() == {"accepted": 2}
    columns = {"prediction_ids": [ids[3]], "labels": [0]}
    assert api.post("/v1/feedback", json=columns).json() == {"accepted": 1}

    response = api.get("/v1/endpoints/fraud/performance", params={"since": "7d", "bucket": "1d"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["endpoint"] == "fraud" and body["bucket"] == "1d" and body["since"]
    [row] = body["performance"]
    assert row["model"] == "fraud" and row["n_labelled"] == 4 and row["accuracy"] == 0.75
    assert row["task"] == "classification" and row["bucket"].endswith("T00:00:00+00:00")

    nothing = api.get("/v1/endpoints/other/performance").json()
    assert nothing["performance"] == [] and nothing["since"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "must be a JSON object, not list"),
        ({"prediction_id": "a-0"}, "unexpected feedback fields ['prediction_id']"),
        ({"prediction_id": "a-0", "label": 1, "x": 2}, "unexpected feedback fields"),
        ({"prediction_id": 5, "label": 1}, "prediction_id must be a non-empty string, not 5"),
        ({"prediction_id": "a-0", "label": None}, "label is null"),
        ({"prediction_id": "a-0", "label": [1]}, "label must be one value, not a list"),
        ({"feedback": []}, "'feedback' must be a non-empty list"),
        ({"feedback": "a-0"}, "'feedback' must be a non-empty list"),
        ({"feedback": [{"prediction_id": "a-0", "label": 1}, 3]}, "feedback[1] must be an object"),
        (
            {"feedback": [{"prediction_id": "a-0", "label": 1}, {"label": 1}]},
            "feedback[1] has no 'prediction_id'",
        ),
        ({"feedback": [{"prediction_id": "a-0"}]}, "feedback[0] has no 'label'"),
        (
            {"feedback": [{"prediction_id": "a-0", "label": 1, "weight": 2}]},
            "feedback[0] has unexpected field(s) ['weight']",
        ),
        ({"feedback": [{"prediction_id": "", "label": 1}]}, "feedback[0].prediction_id must be"),
        ({"feedback": [{"prediction_id": "a-0", "label": {"a": 1}}]}, "feedback[0].label must be"),
        ({"prediction_ids": ["a-0"], "labels": [1, 2]}, "1 prediction_ids but 2 labels"),
        ({"prediction_ids": ["a-0", None], "labels": [1, 2]}, "prediction_ids[1] must be"),
        ({"prediction_ids": ["a-0"], "labels": [None]}, "labels[0] is null"),
    ],
)
def test_malformed_feedback_gets_a_precise_400(
    api: TestClient, store: LabelStore, body: Any, message: str
) -> None:
    response = api.post("/v1/feedback", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert message in error["error"] and error["code"] == "invalid_input"
    assert "hint" in error
    assert not list(store.root.glob("*/*"))


def test_bodies_that_are_not_json_get_a_400(api: TestClient) -> None:
    for content in (b"", b"{not json", b"\xff"):
        response = api.post(
            "/v1/feedback", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_input"


def test_too_many_items_get_a_413(api: TestClient) -> None:
    items = [
        {"prediction_id": f"a-{i}", "label": 1} for i in range(feedback.MAX_FEEDBACK_ITEMS + 1)
    ]
    response = api.post("/v1/feedback", json={"feedback": items})
    assert response.status_code == 413
    assert "feedback-import" in response.json()["hint"]


def test_performance_parameters_are_checked(api: TestClient) -> None:
    bad_since = api.get("/v1/endpoints/fraud/performance", params={"since": "last week"})
    assert bad_since.status_code == 400 and "neither a duration" in bad_since.json()["error"]
    bad_bucket = api.get("/v1/endpoints/fraud/performance", params={"bucket": "daily"})
    assert bad_bucket.status_code == 400 and "not a duration" in bad_bucket.json()["error"]


def test_a_server_without_a_label_store_answers_503(client: Client) -> None:
    with TestClient(build_app(client, None)) as api:
        response = api.post("/v1/feedback", json={"prediction_id": "a-0", "label": 1})
    assert response.status_code == 503 and "does not take labels" in response.json()["error"]

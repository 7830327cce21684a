"""The native predict route through the in-process ASGI app."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.registry.entities import MAX_BATCH_SIZE
from modelport.runtimes.loading import compiled_artifact
from tests.unit.serving.conftest import ROW


def predict(server: TestClient, endpoint: str, body: object) -> dict:
    response = server.post(f"/v1/endpoints/{endpoint}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_mlflow_shape_gives_the_same_answer(server: TestClient, deployed: Client) -> None:
    rows = [ROW, {"a": -2.0, "b": 0.0, "c": 1.5, "d": 0.0}]
    columns = list(ROW)
    bodies = [
        {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}},
        {"dataframe_records": rows},
        {"instances": rows},
        {"instances": [[r[c] for c in columns] for r in rows]},
        {"inputs": {c: [r[c] for r in rows] for c in columns}},
    ]
    answers = [predict(server, "clf", body) for body in bodies]
    expected = deployed.predict("models:/clf/1", pd.DataFrame(rows))
    for answer in answers:
        assert answer["predictions"] == expected.outputs["label"].tolist()
        # served from the compiled (ONNX, float32) form: equal within the compile tolerance
        np.testing.assert_allclose(
            answer["probabilities"], expected.outputs["probabilities"], atol=1e-5
        )
        assert answer["classes"] == [0, 1]
        assert answer["model"] == "clf" and answer["version"] == 1
        assert len(answer["prediction_ids"]) == 2 and len(set(answer["prediction_ids"])) == 2


def test_regressor_and_csv(server: TestClient) -> None:
    body = "a,b,c,d\n0.5,-1.0,0.2,1.0\n1,2,3,4\n"
    response = server.post(
        "/v1/endpoints/reg/predict", content=body, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["predictions"]) == 2 and isinstance(data["predictions"][0], float)
    assert "classes" not in data


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"dataframe_records": [', "not valid JSON"),
        (
            b'{"dataframe_records": [{"a": "x", "b": 1, "c": 1, "d": 1}]}',
            "column 'a' expects double, got str 'x' at row 0",
        ),
        (b'{"dataframe_records": [{"a": 1, "b": 1, "c": 1}]}', r"missing input column(s) ['d']"),
        (
            b'{"dataframe_records": [{"a": null, "b": 1, "c": 1, "d": 1}]}',
            "column 'a' has a missing value",
        ),
        (b'{"instances": [[1, 2, 3]]}', "expected rows of 4 values"),
        (b'{"rows": []}', "exactly one of"),
    ],
)
def test_bad_input_is_a_400_and_the_server_keeps_serving(
    server: TestClient, body: bytes, message: str
) -> None:
    response = server.post(
        "/v1/endpoints/clf/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    predict(server, "clf", {"dataframe_records": [ROW]})


def test_unknown_endpoint_is_404_listing_known(server: TestClient) -> None:
    response = server.post("/v1/endpoints/nope/predict", json={"dataframe_records": [ROW]})
    assert response.status_code == 404
    assert "endpoints served here: ['clf', 'reg']" in response.json()["error"]


def test_body_over_the_limit_is_413(make_server: Callable[..., TestClient]) -> None:
    server = make_server(max_body_bytes=1000)
    big = {"dataframe_records": [ROW] * 100}
    response = server.post("/v1/endpoints/clf/predict", json=big)
    assert response.status_code == 413
    assert "over the limit of 1000 bytes" in response.json()["error"]
    predict(server, "clf", {"dataframe_records": [ROW]})


def test_health_and_endpoint_listing(server: TestClient) -> None:
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").status_code == 200
    listing = server.get("/v1/endpoints").json()
    assert [(e["endpoint"], e["version"], e["state"]) for e in listing["endpoints"]] == [
        ("clf", 1, "ready"),
        ("reg", 1, "ready"),
    ]
    info = server.get("/v1/endpoints/clf").json()
    assert [c["name"] for c in info["signature"]["inputs"]] == ["a", "b", "c", "d"]
    assert info["serving"]["max_batch_size"] == MAX_BATCH_SIZE and info["batching"] is None
    server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW, ROW]})
    batching = server.get("/v1/endpoints/clf").json()["batching"]
    assert batching["rows"] == 2 and batching["requests"] == 1


def test_new_deployment_takes_over_without_restart(
    server: TestClient, deployed: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    path, frame = sklearn_classifier
    deployed.register_model("clf", path, sample_input=frame, description="retrained")
    deployed.deploy("clf", "models:/clf/2", env="production")
    deadline = time.monotonic() + 10
    version = 1
    while version != 2 and time.monotonic() < deadline:
        version = predict(server, "clf", {"dataframe_records": [ROW]})["version"]
        time.sleep(0.05)
    assert version == 2


def test_corrupt_artifact_marks_only_its_endpoint_unavailable(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    mv = deployed.get_version("models:/reg/1")
    for ref in (mv.artifact, compiled_artifact(mv)):  # whichever form is served
        if ref is not None:
            deployed.artifacts.local_path(ref).write_bytes(b"tampered")
    server = make_server()
    response = server.post("/v1/endpoints/reg/predict", json={"dataframe_records": [ROW]})
    assert response.status_code == 503
    assert "is corrupt" in response.json()["error"]
    assert "Retry-After" in response.headers
    predict(server, "clf", {"dataframe_records": [ROW]})


def test_model_still_loading_is_503_with_retry_after(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "model.py").write_text(
        "import time\n"
        "class Model:\n"
        "    def load(self, path):\n"
        "        time.sleep(1.5)\n"
        "    def predict(self, frame):\n"
        "        return frame['a'] * 2\n"
    )
    deployed.register_model(
        "slow", folder, flavor="custom", trust=True, sample_input=pd.DataFrame({"a": [1.0, 2.0]})
    )
    deployed.deploy("slow", "models:/slow/1", env="production")
    server = make_server(load_mode="lazy", load_wait_seconds=0.0)
    response = server.post("/v1/endpoints/slow/predict", json={"inputs": {"a": [1.0]}})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "still loading" in response.json()["error"]
    deadline = time.monotonic() + 10
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = server.post("/v1/endpoints/slow/predict", json={"inputs": {"a": [1.0]}})
    assert response.json()["predictions"] == [2.0]

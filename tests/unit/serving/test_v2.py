"""Open Inference Protocol routes through the in-process ASGI app."""

from __future__ import annotations

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from modelport.client import Client
from tests.unit.serving.conftest import ROW


def test_server_and_model_metadata(server: TestClient) -> None:
    assert server.get("/v2").json()["name"] == "modelport"
    meta = server.get("/v2/models/clf").json()
    assert meta["name"] == "clf" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
    assert meta["inputs"][0] == {"name": "a", "datatype": "FP64", "shape": [-1]}
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {
        "label": [-1],
        "probabilities": [-1, 2],
    }
    assert server.get("/v2/models/clf/versions/1").json()["versions"] == ["1"]
    assert server.get("/v2/models/clf/ready").json() == {"name": "clf", "ready": True}


def test_infer_with_named_columns_and_with_one_matrix(server: TestClient, deployed: Client) -> None:
    named = {
        "id": "req-1",
        "inputs": [
            {"name": k, "shape": [1, 1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()
        ],
    }
    matrix = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": list(ROW.values())}]
    }
    expected = deployed.predict("models:/clf/1", pd.DataFrame([ROW]))
    for body in (named, matrix):
        response = server.post("/v2/models/clf/infer", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        outputs = {o["name"]: o for o in data["outputs"]}
        assert outputs["label"]["data"] == expected.outputs["label"].tolist()
        assert outputs["probabilities"]["shape"] == [1, 2]
        assert outputs["probabilities"]["datatype"] == "FP64"
        np.testing.assert_allclose(
            outputs["probabilities"]["data"], expected.outputs["probabilities"].ravel(), atol=1e-5
        )
        assert data["model_name"] == "clf" and data["model_version"] == "1"
    assert server.post("/v2/models/clf/infer", json=named).json()["id"] == "req-1"


def test_requested_outputs_only(server: TestClient) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": list(ROW.values())}],
        "outputs": [{"name": "probabilities"}],
    }
    data = server.post("/v2/models/clf/versions/1/infer", json=body).json()
    assert [o["name"] for o in data["outputs"]] == ["probabilities"]


def test_errors_are_json_with_an_error_message(server: TestClient) -> None:
    cases = [
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2]}]},
            400,
            "needs 3 values",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
            400,
            "expected rows of 4",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
            400,
            "missing input column",
        ),
        (
            {
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ["a", 1, 2, 3]}
                ]
            },
            400,
            "non-numeric",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [0, 1, 2, 3]}]},
            400,
            "unknown datatype",
        ),
        ({"nope": 1}, 400, "'inputs' list"),
    ]
    for body, status, message in cases:
        response = server.post("/v2/models/clf/infer", json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"]
    missing = server.post("/v2/models/nope/infer", json=cases[0][0])
    assert missing.status_code == 404 and "error" in missing.json()
    assert server.get("/v2/models/clf/versions/9").status_code == 404


def test_numeric_tensors_flat_or_nested_give_the_same_answers(
    server: TestClient, deployed: Client
) -> None:
    rows = [list(ROW.values()), [0.0, 1.0, 0.0, 1.0], [1, 0, 2, 3]]  # 0 and 1 are numbers too
    expected = deployed.predict("models:/clf/1", pd.DataFrame(rows, columns=list(ROW)))
    flat = [v for row in rows for v in row]
    bodies = [
        {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": rows}]},
        {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": flat}]},
        {
            "inputs": [
                {"name": k, "shape": [3, 1], "datatype": "FP64", "data": [[r[i]] for r in rows]}
                for i, k in enumerate(ROW)
            ]
        },
    ]
    for body in bodies:
        response = server.post("/v2/models/clf/infer", json=body)
        assert response.status_code == 200, (body, response.text)
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        assert outputs["label"] == expected.outputs["label"].tolist()


def test_booleans_and_nulls_in_a_numeric_tensor_are_refused(
    server: TestClient,
) -> None:
    values = list(ROW.values())
    for data, message in [
        ([values[0], True, *values[2:]], "non-numeric"),  # numpy would read True as 1
        ([[values[0], 1], [values[2], False]], "non-numeric"),
        ([values[0], None, *values[2:]], "non-numeric"),
    ]:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": data}]}
        response = server.post("/v2/models/clf/infer", json=body)
        assert response.status_code == 400, (data, response.text)
        assert message in response.json()["error"]

"""The real server over real sockets: raw HTTP and an independent V2 client library."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from modelport.client import Client
from tests.integration.conftest import LiveServer

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def raw(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_raw_requests(serve: Callable[..., LiveServer], deployed_clf: Client) -> None:
    server = serve(deployed_clf.settings)
    body = json.dumps({"dataframe_records": [ROW, ROW]}).encode()
    status, headers, data = raw(
        server, "POST", "/v1/endpoints/clf/predict", body, {"Content-Type": "application/json"}
    )
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(data)
    assert answer["version"] == 1 and len(answer["predictions"]) == 2

    status, _, data = raw(server, "POST", "/v1/endpoints/clf/predict", b"{nope", {})
    assert status == 400 and "not valid JSON" in json.loads(data)["error"]

    status, _, data = raw(
        server,
        "POST",
        "/v1/endpoints/clf/predict",
        b"x" * 100,
        {"Content-Length": str(64 * 1024 * 1024)},
    )
    assert status == 413
    status, _, _ = raw(server, "POST", "/v1/endpoints/clf/predict", body, {})
    assert status == 200


def test_independent_v2_client(serve: Callable[..., LiveServer], deployed_clf: Client) -> None:
    import tritonclient.http as triton

    server = serve(deployed_clf.settings)
    v2 = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert v2.is_server_live() and v2.is_server_ready()
        assert v2.is_model_ready("clf")
        meta = v2.get_model_metadata("clf")
        assert [i["name"] for i in meta["inputs"]] == ["a", "b", "c", "d"]

        rows = pd.DataFrame([ROW, {"a": -3.0, "b": 0.0, "c": 2.0, "d": 0.0}])
        inputs = []
        for name in rows.columns:
            tensor = triton.InferInput(name, [2, 1], "FP64")
            tensor.set_data_from_numpy(rows[[name]].to_numpy(np.float64))
            inputs.append(tensor)
        result = v2.infer("clf", inputs, outputs=[triton.InferRequestedOutput("probabilities")])
        expected = deployed_clf.predict("models:/clf/1", rows)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), expected.outputs["probabilities"], atol=1e-5
        )

        matrix = triton.InferInput("input", [2, 4], "FP32")
        matrix.set_data_from_numpy(rows.to_numpy(np.float32))
        labels = v2.infer("clf", [matrix], model_version="1").as_numpy("label")
        assert labels.tolist() == expected.outputs["label"].tolist()
    finally:
        v2.close()

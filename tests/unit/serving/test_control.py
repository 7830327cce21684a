"""Control API: register, alias, deploy, promote, history over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient


def test_register_alias_deploy_promote_over_http(
    server: TestClient, sklearn_classifier: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    path, frame = sklearn_classifier
    sample = tmp_path / "sample.csv"
    frame.head(50).to_csv(sample, index=False)
    with path.open("rb") as artifact, sample.open("rb") as sample_file:
        response = server.post(
            "/v1/models/fraud/versions",
            files={"artifact": ("fraud.skops", artifact), "sample": ("sample.csv", sample_file)},
            data={"owner": "ana@example.com", "metrics": json.dumps({"auc": 0.91})},
        )
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["version"] == 1 and version["flavor"] == "sklearn"
    assert version["metrics"] == {"auc": 0.91} and len(version["artifact"]["sha256"]) == 64

    assert server.put("/v1/models/fraud/aliases/champion", json={"version": 1}).status_code == 200
    deployed = server.put("/v1/deployments/staging/fraud", json={"model": "models:/fraud@champion"})
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["version"] == 1
    promoted = server.post(
        "/v1/promote", json={"endpoint": "fraud", "from": "staging", "to": "production"}
    )
    assert promoted.status_code == 200 and promoted.json()["environment"] == "production"
    history = server.get("/v1/deployments/production/fraud/history").json()["events"]
    assert [e["action"] for e in history] == ["promote"]
    models = server.get("/v1/models").json()["models"]
    assert "fraud" in [m["name"] for m in models]
    detail = server.get("/v1/models/fraud/versions/1").json()
    assert set(detail["profile"]["columns"]) == {"a", "b", "c", "d"}


def test_control_errors(server: TestClient, tmp_path: Path) -> None:
    pickle_file = tmp_path / "m.pkl"
    pickle_file.write_bytes(b"not really a pickle")
    with pickle_file.open("rb") as f:
        response = server.post("/v1/models/bad/versions", files={"artifact": ("m.pkl", f)})
    assert response.status_code == 400
    assert "runs arbitrary Python code" in response.json()["error"]
    assert server.get("/v1/models/nope").status_code == 404
    bad = server.put("/v1/deployments/production/x", json={"model": "not a uri"})
    assert bad.status_code == 400 and "invalid model URI" in bad.json()["error"]
    extra = server.put("/v1/deployments/production/x", json={"model": "models:/clf/1", "x": 1})
    assert extra.status_code == 400


def test_openapi_docs(server: TestClient) -> None:
    assert server.get("/docs").status_code == 200
    paths = server.get("/openapi.json").json()["paths"]
    assert "/v1/endpoints/{endpoint}/predict" in paths
    assert "/v2/models/{name}/infer" in paths
    assert "/v1/models/{name}/versions" in paths

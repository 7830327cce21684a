"""The health probes: /health/* as /v2/health/*, readiness off while draining (liveness
and predictions on), and the dependencies' breakers in readiness' body."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.serving.app import create_app
from modelport.serving.dataplane import DataPlane
from modelport.settings import Settings
from tests.unit.serving.conftest import ROW


def test_draining_turns_readiness_off_and_keeps_serving(deployed: Client) -> None:
    planes: list[DataPlane] = []
    app = create_app(deployed.settings, client=Client(deployed.settings), with_plane=planes.append)
    with TestClient(app) as http:
        for path in ("/health/ready", "/v2/health/ready"):
            answer = http.get(path)
            assert answer.status_code == 200
            assert answer.json() == {"ready": True, "draining": False, "dependencies": {}}

        planes[0].draining = True
        for path in ("/health/ready", "/v2/health/ready"):
            answer = http.get(path)
            assert answer.status_code == 503
            body = answer.json()
            assert body["ready"] is False and body["draining"] is True
            assert body["reason"].startswith("shutting down")
        for path in ("/health/live", "/v2/health/live"):
            assert http.get(path).json() == {"live": True}
        predicted = http.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
        assert predicted.status_code == 200


@pytest.mark.postgres
def test_a_server_registry_is_a_listed_optional_dependency(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", registry_url=postgres_url)
    client = Client(settings)
    with TestClient(create_app(settings, client=client)) as http:
        answer = http.get("/health/ready")
        assert answer.status_code == 200
        [(name, state)] = answer.json()["dependencies"].items()
        assert name.startswith("the registry database at 127.0.0.1:5432/mp_")
        assert state == {"status": "ok", "optional": True}
    client.close()

"""A bug in a control route is answered like every other error: JSON, logged."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.serving.app import create_app


def test_an_unexpected_error_in_a_route_is_a_json_500(
    deployed: Client, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(deployed.settings, client=deployed)
    fastapi_app = app.app  # type: ignore[attr-defined]  # the FastAPI app behind the fast path
    assert isinstance(fastapi_app, FastAPI)

    @fastapi_app.get("/v1/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as http:
        answer = http.get("/v1/broken")
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "internal error; the server log has the details",
        "code": "internal",
    }
    assert "unexpected error on GET /v1/broken" in caplog.text and "a bug" in caplog.text

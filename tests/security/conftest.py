"""Fixtures of the security tier: deployed endpoints, keys, and servers with auth on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.serving.app import create_app


@pytest.fixture
def make_server(deployed: Client) -> Iterator[Callable[..., TestClient]]:
    """The app in-process (lifespan included), auth on unless overridden."""
    opened: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        settings = deployed.settings.model_copy(
            update={"auth": "on", "log_sample_rate": 0.0, "monitor_interval_seconds": 0.0}
            | overrides
        )
        test_client = TestClient(create_app(settings, client=Client(settings)))
        test_client.__enter__()
        opened.append(test_client)
        return test_client

    yield make
    for tc in opened:
        tc.__exit__(None, None, None)


@pytest.fixture
def tokens(deployed: Client) -> dict[str, str]:
    """One key per kind, by kind: admin, read, predict (any endpoint), clf (predict on
    clf only)."""
    keys = deployed.keys
    return {
        "admin": keys.create("ops", scopes=["admin"], actor="ana").token,
        "read": keys.create("grafana", scopes=["read"], actor="ana").token,
        "predict": keys.create("app", scopes=["predict"], actor="ana").token,
        "clf": keys.create("clf-only", scopes=["predict"], endpoints=["clf"]).token,
    }

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.serving.app import create_app
from modelport.settings import Settings


@pytest.fixture
def make_server(deployed: Client) -> Iterator[Callable[..., TestClient]]:
    """Start the app in-process (lifespan included) with optional setting overrides."""
    opened: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        settings = deployed.settings.model_copy(update=overrides)
        test_client = TestClient(create_app(settings, client=Client(settings)))
        test_client.__enter__()
        opened.append(test_client)
        return test_client

    yield make
    for tc in opened:
        tc.__exit__(None, None, None)


@pytest.fixture
def server(make_server: Callable[..., TestClient]) -> TestClient:
    return make_server()


ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def settings_of(client: Client) -> Settings:
    return client.settings

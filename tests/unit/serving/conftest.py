from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.settings import Settings


@pytest.fixture
def server(make_server: Callable[..., TestClient]) -> TestClient:
    return make_server()


ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def settings_of(client: Client) -> Settings:
    return client.settings

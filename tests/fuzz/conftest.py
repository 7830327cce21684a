"""Fixtures of the fuzz tier: one in-process server with real deployed models per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.serving.app import create_app
from modelport.settings import Settings
from tests.conftest import classification_data, regression_data


def deploy_tiny_models(client: Client, folder: Path) -> None:
    """clf (a classifier) and reg (a regressor), registered from skops files and deployed."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression, Ridge

    frame, y = classification_data()
    sio.dump(LogisticRegression().fit(frame, y), folder / "clf.skops")
    client.register_model("clf", folder / "clf.skops", sample_input=frame)
    frame, y = regression_data()
    sio.dump(Ridge().fit(frame, y), folder / "reg.skops")
    client.register_model("reg", folder / "reg.skops", sample_input=frame)
    client.deploy("clf", "models:/clf/1")
    client.deploy("reg", "models:/reg/1")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The whole app (fast path, FastAPI, lifespan) on a tmp home with clf and reg
    deployed; server errors come back as responses instead of being raised."""
    folder = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        home=folder / "home",
        user="fuzzer",
        auth="off",
        poll_interval_seconds=0.2,
        monitor_interval_seconds=0,
        rollout_interval_seconds=0,
        batch_interval_seconds=0,
    )
    client = Client(settings)
    deploy_tiny_models(client, folder)
    with TestClient(
        create_app(settings, client=client), raise_server_exceptions=False
    ) as test_client:
        yield test_client
    client.close()

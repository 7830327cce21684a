"""Fixtures every tier shares: settings in tmp_path, registry databases, tiny models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelport.settings import Settings
from tests.receivers import HttpReceiver, Mailbox, running_http, running_mailbox

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from modelport.client import Client

PG_ADMIN_URL = os.environ.get(
    "MODELPORT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"mp_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry database, once per backend: the same tests run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    """An HTTP server on 127.0.0.1 that records what alert receivers are sent."""
    with running_http() as receiver:
        yield receiver


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1 that keeps the mail it gets."""
    with running_mailbox() as box:
        yield box


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", user="tester", poll_interval_seconds=0.1)


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    from modelport.client import Client

    c = Client(settings)
    yield c
    c.close()


def classification_data(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = (frame["a"] + 0.5 * frame["b"] - frame["c"] > 0).astype(int).to_numpy()
    return frame, y


def regression_data(n: int = 200, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = (3 * frame["a"] - 2 * frame["b"] + rng.normal(scale=0.1, size=n)).to_numpy()
    return frame, y


@pytest.fixture
def sklearn_classifier(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A tiny logistic regression saved with skops, and its training frame."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    frame, y = classification_data()
    model = LogisticRegression().fit(frame, y)
    path = tmp_path / "clf.skops"
    sio.dump(model, path)
    return path, frame


@pytest.fixture
def sklearn_regressor(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    import skops.io as sio
    from sklearn.linear_model import Ridge

    frame, y = regression_data()
    path = tmp_path / "reg.skops"
    sio.dump(Ridge().fit(frame, y), path)
    return path, frame


@pytest.fixture
def deployed(
    client: Client,
    sklearn_classifier: tuple[Path, pd.DataFrame],
    sklearn_regressor: tuple[Path, pd.DataFrame],
) -> Client:
    """clf (classifier) and reg (regressor) registered and deployed to production."""
    clf_path, clf_frame = sklearn_classifier
    reg_path, reg_frame = sklearn_regressor
    client.register_model("clf", clf_path, owner="ana@example.com", sample_input=clf_frame)
    client.register_model("reg", reg_path, owner="bo@example.com", sample_input=reg_frame)
    client.deploy("clf", "models:/clf/1", env="production")
    client.deploy("reg", "models:/reg/1", env="production")
    return client


@pytest.fixture
def deployed_clf(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Client:
    """clf (classifier) registered and deployed to production."""
    path, frame = sklearn_classifier
    client.register_model("clf", path, owner="ana@example.com", sample_input=frame)
    client.deploy("clf", "models:/clf/1", env="production")
    return client


@pytest.fixture
def make_server(deployed: Client) -> Iterator[Callable[..., TestClient]]:
    """Start the app in-process (lifespan included) with optional setting overrides."""
    from fastapi.testclient import TestClient

    from modelport.client import Client
    from modelport.serving.app import create_app

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

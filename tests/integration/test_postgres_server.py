"""The server and the CLI against the real PostgreSQL registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd

from modelport.client import Client
from modelport.settings import Settings
from tests.integration.conftest import LiveServer


def test_serve_from_postgres_registry(
    serve: Callable[..., LiveServer],
    postgres_url: str,
    tmp_path: Path,
    sklearn_regressor: tuple[Path, pd.DataFrame],
) -> None:
    settings = Settings(home=tmp_path / "home", registry_url=postgres_url, user="ci")
    client = Client(settings)
    path, frame = sklearn_regressor
    client.register_model("reg", path, sample_input=frame)
    client.deploy("reg", "models:/reg/latest", env="staging")
    server = serve(settings, "--env", "staging")
    response = httpx.post(
        f"{server.url}/v1/endpoints/reg/predict",
        json={
            "dataframe_split": {
                "columns": list(frame.columns),
                "data": frame.head(3).values.tolist(),
            }
        },
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3
    client.close()

"""Precomputed predictions end to end: `modelport batch predict --publish` writes a run
to Redis, a real server answers its keys over HTTP, a second run replaces the first,
and Redis going away is a clear 503 the server recovers from."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelport.batch.publish import unpublish
from modelport.client import Client
from modelport.features.online import Lookup
from modelport.features.redis import RedisStore
from modelport.registry.entities import Precomputed
from tests.conftest import classification_data
from tests.features_proxy import TcpProxy
from tests.integration.conftest import MODELPORT, LiveServer

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """Redis behind a proxy a test can take down; the server reads the store through it."""
    p = TcpProxy(("127.0.0.1", 6379))
    p.set("up")
    monkeypatch.setenv("MODELPORT_ONLINE_STORE", p.url)
    yield p
    p.close()


@pytest.fixture
def redis_store() -> Iterator[RedisStore]:
    store = RedisStore(REDIS_URL, timeout_s=2.0)
    yield store
    store.close()


def users(frame: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    return frame.assign(user_id=ids)


def batch_predict(client: Client, input: Path, output: Path, endpoint: str) -> dict[str, Any]:
    """``modelport batch predict ... --publish ENDPOINT`` as a user runs it; its manifest."""
    env = os.environ | {
        "MODELPORT_HOME": str(client.settings.home),
        "MODELPORT_ONLINE_STORE": REDIS_URL,
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",  # how long the old run stays readable
    }
    args = ["--model", "models:/clf/1", "--input", str(input), "--output", str(output)]
    args += ["--id-column", "user_id", "--workers", "1", "--publish", endpoint, "--json"]
    done = subprocess.run(
        [*MODELPORT, "batch", "predict", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads(done.stdout)
    return manifest


def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_batch_predict_publish_then_serve_over_http(
    deployed_clf: Client,
    serve: Callable[..., LiveServer],
    proxy: TcpProxy,
    redis_store: RedisStore,
    tmp_path: Path,
) -> None:
    client = deployed_clf
    endpoint = "clf"
    client.deploy(endpoint, "models:/clf/1", precomputed=Precomputed())
    client.deploy("plain", "models:/clf/1")  # an endpoint that needs no store
    frame, _ = classification_data(n=60, seed=3)
    first_ids = [f"u{i}-{uuid.uuid4().hex[:6]}" for i in range(60)]
    users(frame, first_ids).to_parquet(tmp_path / "first.parquet")
    second_ids = first_ids[30:] + [f"v{i}-{uuid.uuid4().hex[:6]}" for i in range(30)]
    second_frame = pd.concat([frame.iloc[30:], frame.iloc[:30]], ignore_index=True)
    users(second_frame, second_ids).to_parquet(tmp_path / "second.parquet")

    server = serve(client.settings)
    try:
        first = batch_predict(client, tmp_path / "first.parquet", tmp_path / "out1", endpoint)
        url = f"{server.url}/v1/endpoints/{endpoint}/predictions"

        def published(run_id: str) -> Callable[[], bool]:
            def check() -> bool:
                reply = httpx.get(f"{url}/{first_ids[40]}", timeout=5)
                return reply.status_code == 200 and reply.json()["run_id"] == run_id

            return check

        wait_for(published(first["run_id"]))
        body = httpx.get(f"{url}/{first_ids[3]}", timeout=5).json()
        expected = client.predict("models:/clf/1", frame.iloc[[3]])
        assert body["source"] == "precomputed"
        assert (body["model"], body["version"]) == ("clf", 1)
        assert body["computed_at"] == first["finished_at"]
        assert body["predictions"] == expected.outputs["label"].tolist()[0]
        assert np.allclose(body["probabilities"], expected.outputs["probabilities"][0], atol=1e-4)

        keyed = httpx.post(
            f"{server.url}/v1/endpoints/{endpoint}/predict",
            json={"inputs": {"user_id": first_ids[:5]}},
            timeout=5,
        ).json()
        batch = client.predict("models:/clf/1", frame.iloc[:5])
        assert keyed["predictions"] == batch.outputs["label"].tolist()
        assert keyed["source"] == ["precomputed"] * 5 and keyed["run_id"] == first["run_id"]

        unknown = httpx.get(f"{url}/nobody", timeout=5)
        assert unknown.status_code == 404
        assert "no precomputed prediction for key 'nobody'" in unknown.json()["error"]

        # A second run replaces the first: its keys only, and the old rows are gone.
        second = batch_predict(client, tmp_path / "second.parquet", tmp_path / "out2", endpoint)
        wait_for(published(second["run_id"]))
        assert httpx.get(f"{url}/{second_ids[-1]}", timeout=5).json()["run_id"] == second["run_id"]
        assert httpx.get(f"{url}/{first_ids[0]}", timeout=5).status_code == 404
        old = f"predictions/production/{endpoint}/{first['run_id']}"
        assert redis_store.read([Lookup(old, "rows", first_ids[:3])]) == [[None, None, None]]

        # Redis down: a clear 503, fast; the server and other endpoints keep serving.
        proxy.set("down")
        started = time.monotonic()
        down = httpx.get(f"{url}/{second_ids[0]}", timeout=5)
        assert down.status_code == 503 and time.monotonic() - started < 2.0
        assert down.json()["error"].startswith(
            f"endpoint {endpoint} cannot read its precomputed predictions: the Redis online "
            f"store at redis://127.0.0.1:{proxy.port}/0 is unreachable"
        )
        assert down.headers["retry-after"] == "1"
        assert httpx.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
        plain = httpx.post(
            f"{server.url}/v1/endpoints/plain/predict",
            json={"dataframe_records": frame.iloc[:2].to_dict("records")},
            timeout=5,
        )
        assert plain.status_code == 200

        proxy.set("up")  # recovers by itself
        wait_for(lambda: httpx.get(f"{url}/{second_ids[0]}", timeout=5).status_code == 200)
        assert server.process.poll() is None
    finally:
        proxy.set("up")
        unpublish(client, endpoint, store=redis_store)

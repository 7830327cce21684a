"""A private Redis (the online store) killed and restarted under load: clean 503s that
name Redis while it is down, the breaker opens, predictions come back by themselves."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from modelport.client import Client
from modelport.features.online import open_store
from modelport.features.views import Feature, FeatureView
from modelport.registry.features import FeatureViewStore
from tests.chaos.conftest import logged, wait_for
from tests.chaos.load import Load, report, unclean
from tests.integration.conftest import LiveServer, free_port

ROW = {"user_id": "u1", "a": 0.5, "c": 0.2, "d": 1.0}


class PrivateRedis:
    """redis-server on a free port with its data in ``folder`` (an append-only file
    written at every command, so a kill -9 loses nothing): never the shared one."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(self.answers, "the private Redis")

    def answers(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    yield server
    server.kill()


def health(server: LiveServer) -> tuple[int, dict[str, dict[str, object]]]:
    answer = httpx.get(f"{server.url}/health/ready", timeout=5)
    return answer.status_code, answer.json()["dependencies"]


def test_redis_down_and_back_under_load(
    servers: Callable[..., LiveServer],
    client: Client,
    sklearn_classifier: tuple[Path, pd.DataFrame],
    redis_server: PrivateRedis,
    tmp_path: Path,
) -> None:
    settings = client.settings.model_copy(update={"online_store": redis_server.url})
    profile = FeatureView(name="profile", entity="user_id", features=(Feature("b"),))
    FeatureViewStore(client.registry.engine).put(profile)
    store = open_store(settings)
    store.write("profile", {"u1": ({"b": -1.0}, time.time())})
    store.close()
    path, frame = sklearn_classifier
    client.register_model("clf", path, owner="ana@example.com", sample_input=frame)
    client.deploy("clf", "models:/clf/1", env="production", features=["profile"])
    server = servers(settings, MODELPORT_ONLINE_STORE=redis_server.url)

    body = {"dataframe_records": [ROW]}
    load = Load(server.url, "clf", tmp_path / "load", concurrency=4, body=body)
    load.wait_answered()
    redis_server.kill()
    down_at = time.time()
    name = f"the Redis online store at {redis_server.url}"
    wait_for(lambda: health(server)[1].get(name, {}).get("status") == "open", "an open breaker")
    status, dependencies = health(server)
    assert status == 200  # an optional dependency: readiness stays true
    assert dependencies[name]["optional"] is True
    refused = httpx.post(f"{server.url}/v1/endpoints/clf/predict", json=body, timeout=10)
    assert refused.status_code == 503 and refused.json()["code"] == "unavailable"
    assert redis_server.url in refused.json()["error"] and "Redis" in refused.json()["error"]
    assert "circuit open" in refused.json()["error"]
    assert int(refused.headers["retry-after"]) >= 1
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert f'modelport_breaker_state{{dependency="{name}"}} 2.0' in metrics

    redis_server.start()
    up_at = time.time()
    wait_for(lambda: health(server)[1][name]["status"] == "ok", "a closed breaker")
    time.sleep(0.5)
    outcomes = load.finish()

    counts = report("Redis down and back", outcomes)
    assert unclean(outcomes) == [], unclean(outcomes)[:5]
    failures = [o for o in outcomes if o["kind"] != "ok"]
    assert failures and all(o["kind"] == "json_5xx" and o["status"] == 503 for o in failures)
    assert all("Redis" in o["detail"] and redis_server.url in o["detail"] for o in failures)
    assert any(o["kind"] == "ok" and o["t"] < down_at for o in outcomes)
    assert any(o["kind"] == "ok" and o["t"] > up_at for o in outcomes), [
        o for o in outcomes if o["t"] > up_at - 1
    ][-20:]
    assert all(down_at - 1 < o["t"] < up_at + 5 for o in failures)
    # Answered and failed requests are both logged: nothing lost.
    wait_for(lambda: logged(settings) == counts["ok"] + counts["json_5xx"] + 1, "the log")

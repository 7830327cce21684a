"""The registry's PostgreSQL cut off (through a proxy; the shared server keeps running)
under load: loaded models keep serving, control routes answer a clean 503 naming the
database, and everything recovers when it is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from modelport.client import Client
from modelport.settings import Settings
from tests.chaos.conftest import logged, wait_for
from tests.chaos.load import Load, report, unclean
from tests.chaos.proxy import TcpProxy
from tests.integration.conftest import LiveServer


def registry_health(server: LiveServer) -> dict[str, object]:
    answer = httpx.get(f"{server.url}/health/ready", timeout=5)
    assert answer.status_code == 200  # the registry is optional for serving
    found: dict[str, object] = next(
        v for k, v in answer.json()["dependencies"].items() if k.startswith("the registry")
    )
    return found


@pytest.mark.postgres
def test_registry_unreachable_under_load(
    servers: Callable[..., LiveServer],
    postgres_url: str,
    sklearn_classifier: tuple[Path, pd.DataFrame],
    tmp_path: Path,
) -> None:
    direct = make_url(postgres_url)
    with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
        settings = Settings(home=tmp_path / "home", registry_url=proxied, user="tester")
        client = Client(settings.model_copy(update={"registry_url": postgres_url}))
        path, frame = sklearn_classifier
        client.register_model("clf", path, owner="ana@example.com", sample_input=frame)
        client.deploy("clf", "models:/clf/1", env="production")
        server = servers(settings)

        load = Load(server.url, "clf", tmp_path / "load", concurrency=4)
        load.wait_answered()
        proxy.cut()
        cut_at = time.time()
        wait_for(lambda: registry_health(server)["status"] != "ok", "an open breaker")
        control = httpx.get(f"{server.url}/v1/models", timeout=10)
        assert control.status_code == 503, control.text
        error = control.json()
        assert error["code"] == "unavailable"
        assert f"registry database at 127.0.0.1:{proxy.port}" in error["error"]
        assert "pg_isready" in error["hint"]
        time.sleep(1.0)  # serving on, registry away

        proxy.restore()
        restored_at = time.time()
        wait_for(lambda: registry_health(server)["status"] == "ok", "a closed breaker")
        assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 200
        # The poll loop follows the registry again: a new endpoint is picked up.
        client.deploy("clf-again", "models:/clf/1", env="production")
        probes: list[int] = []
        wait_for(lambda: answers(server, "clf-again", probes), "the new endpoint served")
        outcomes = load.finish()
        client.close()

    counts = report("registry down and back", outcomes)
    assert unclean(outcomes) == [], unclean(outcomes)[:5]
    assert counts["ok"] == len(outcomes)  # not one prediction failed
    assert any(cut_at + 0.5 < o["t"] < restored_at for o in outcomes)
    # Every answer is logged (the probes' 404s name no served endpoint: not logged).
    wait_for(lambda: logged(settings) == counts["ok"] + probes.count(200), "the log")
    assert "Traceback" not in server.output()


def answers(server: LiveServer, endpoint: str, probes: list[int]) -> bool:
    """Whether ``endpoint`` answers; ``probes`` keeps the status of every try."""
    body = {"dataframe_records": [{"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}]}
    answer = httpx.post(f"{server.url}/v1/endpoints/{endpoint}/predict", json=body, timeout=10)
    assert answer.status_code in (200, 404), answer.text
    probes.append(answer.status_code)
    return answer.status_code == 200

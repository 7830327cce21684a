"""Traffic splits, sticky routing and shadow variants with the real server.

The load comes from this process over HTTP; what the server decided is read back from
its answers (the ``modelport-variant`` header and the ``variant`` field), from its
prediction log and from ``/metrics``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from scipy.stats import binom

from modelport.client import Client
from modelport.monitoring.logstore import LogStore
from modelport.registry import DeploymentSpec, Routing, Variant
from modelport.serving.router import Router
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server

COLUMNS = ["a", "b", "c", "d"]
ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}

#: A custom model that sleeps 2 s per single-row call (its 2-row registration sample
#: runs at once) and one that raises on single rows.
SLEEPY = """
import time

class Model:
    def load(self, path):
        pass

    def predict(self, frame):
        if len(frame) == 1:
            time.sleep(2.0)
        return frame["a"] * 2
"""
BROKEN = """
class Model:
    def load(self, path):
        pass

    def predict(self, frame):
        if len(frame) == 1:
            raise ValueError("the broken shadow refuses single rows")
        return frame["a"] * 2
"""


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for server in started:
        stop_server(server)


def serve(settings: Settings, servers: list[LiveServer], log: Path, **extra: str) -> LiveServer:
    env = os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
        "MODELPORT_WORKERS": "1",
        "MODELPORT_LOG_FLUSH_SECONDS": "0.2",
        "MODELPORT_ROLLOUT_INTERVAL_SECONDS": "0",
        **extra,
    }
    server = start_server(env, log)
    servers.append(server)
    return server


@pytest.fixture
def two_versions(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Client:
    """clf versions 1 and 2 (the same model twice: the variant is told by its name)."""
    path, frame = sklearn_classifier
    client.register_model("clf", path, sample_input=frame)
    client.register_model("clf", path, sample_input=frame, description="v2")
    return client


def deploy(
    client: Client, endpoint: str, *variants: Variant, routing: Routing | None = None
) -> None:
    spec = DeploymentSpec(variants=variants, routing=routing or Routing())
    client.registry.set_deployment("production", endpoint, spec, actor="tester")


def record(row: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"dataframe_records": [{**(row or ROW), **extra}]}


def v2_body(row: dict[str, float]) -> dict[str, Any]:
    return {
        "inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [row[c]]} for c in COLUMNS]
    }


def answered_variant(response: httpx.Response, *, native: bool = True) -> str:
    """The variant an answer names; the header and the body must agree."""
    assert response.status_code == 200, response.text
    variant = response.headers["modelport-variant"]
    if native:
        assert response.json()["variant"] == variant
    return variant


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def logged(settings: Settings, where: str) -> list[dict[str, Any]]:
    if not list(settings.logs_path.rglob("*.parquet")):
        return []
    return LogStore(settings).query(f"SELECT * FROM predictions WHERE {where}").to_pylist()


def shadow_metric(server: LiveServer, endpoint: str, variant: str, outcome: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    labels = f'endpoint="{endpoint}",outcome="{outcome}",variant="{variant}"'
    found = re.search(rf"^modelport_shadow_requests_total\{{{labels}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


# -- a weighted split ------------------------------------------------------------------


def test_a_ninety_ten_split_lands_in_the_binomial_interval_and_is_logged(
    two_versions: Client, tmp_path: Path, servers: list[LiveServer]
) -> None:
    settings = two_versions.settings
    deploy(two_versions, "split", Variant("clf", 1, weight=90), Variant("clf", 2, weight=10))
    server = serve(settings, servers, tmp_path / "server.log")
    n = 2000
    answers: dict[str, str] = {}  # prediction id -> the variant that answered

    def send(count: int) -> dict[str, str]:
        out = {}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(count):
                response = http.post("/v1/endpoints/split/predict", json=record())
                variant = answered_variant(response)
                (pid,) = response.json()["prediction_ids"]
                out[pid] = variant
        return out

    with ThreadPoolExecutor(4) as pool:
        for part in pool.map(send, [n // 4] * 4):
            answers.update(part)
    assert len(answers) == n
    assert set(answers.values()) == {"clf-v1", "clf-v2"}
    minority = sum(v == "clf-v2" for v in answers.values())
    low, high = binom.interval(0.99, n, 0.10)
    assert low <= minority <= high, f"{minority} of {n} answered by the 10% variant"

    wait_for(lambda: len(logged(settings, "endpoint = 'split'")) >= n, f"{n} logged rows")
    rows = logged(settings, "endpoint = 'split'")
    assert len(rows) == n
    assert {r["prediction_id"]: r["variant"] for r in rows} == answers
    assert not any(r["shadow"] for r in rows)


# -- sticky routing --------------------------------------------------------------------


def test_sticky_keys_by_header_and_by_field_keep_their_variant(
    two_versions: Client, tmp_path: Path, servers: list[LiveServer]
) -> None:
    settings = two_versions.settings
    half = (Variant("clf", 1, weight=50), Variant("clf", 2, weight=50))
    deploy(two_versions, "byheader", *half, routing=Routing(sticky_header="x-user-id"))
    deploy(two_versions, "byfield", *half, routing=Routing(sticky_field="user"))  # not an input
    deploy(two_versions, "byinput", *half, routing=Routing(sticky_field="a"))  # an input
    server = serve(settings, servers, tmp_path / "server.log")
    versions = {f"clf-v{i}": two_versions.get_version(f"models:/clf/{i}") for i in (1, 2)}
    expected = Router.build(half, versions)  # what any server computes for a key
    users = [f"user-{i}" for i in range(30)]
    seen: dict[str, set[str]] = {}

    with httpx.Client(base_url=server.url, timeout=30) as http:
        for user in users:
            header = {"x-user-id": user}
            got = set()
            for _ in range(3):
                native = http.post("/v1/endpoints/byheader/predict", json=record(), headers=header)
                got.add(answered_variant(native))
                v2 = http.post("/v2/models/byheader/infer", json=v2_body(ROW), headers=header)
                got.add(answered_variant(v2, native=False))
                field = http.post("/v1/endpoints/byfield/predict", json=record(user=user))
                got.add("field:" + answered_variant(field))
            assert len(got) == 2, f"{user} moved between variants: {got}"
            header_variant = expected.choose(user)[0].name
            assert got == {header_variant, f"field:{header_variant}"}  # the same hash
            seen.setdefault(header_variant, set()).add(user)

        by_input: dict[float, set[str]] = {}
        for i in range(20):
            row = {**ROW, "a": round(0.1 * i, 1)}
            for _ in range(2):
                native = http.post("/v1/endpoints/byinput/predict", json=record(row))
                v2 = http.post("/v2/models/byinput/infer", json=v2_body(row))
                by_input.setdefault(row["a"], set()).update(
                    {answered_variant(native), answered_variant(v2, native=False)}
                )
        # no header, no field: a random pick by weight
        unkeyed = {
            answered_variant(http.post("/v1/endpoints/byheader/predict", json=record()))
            for _ in range(40)
        }
    assert set(seen) == {"clf-v1", "clf-v2"}  # 30 users all on one side: 2^-29
    assert all(len(v) == 1 for v in by_input.values()), by_input
    assert {next(iter(v)) for v in by_input.values()} == {"clf-v1", "clf-v2"}
    assert unkeyed == {"clf-v1", "clf-v2"}


# -- shadows ---------------------------------------------------------------------------


def register_custom(client: Client, tmp_path: Path, name: str, source: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.py").write_text(source)
    sample = pd.DataFrame({c: [0.1, 0.2] for c in COLUMNS})
    client.register_model(name, folder, flavor="custom", trust=True, sample_input=sample)


def test_shadows_never_touch_live_answers_and_are_logged_under_live_ids(
    two_versions: Client, tmp_path: Path, servers: list[LiveServer]
) -> None:
    settings = two_versions.settings
    register_custom(two_versions, tmp_path, "sleepy", SLEEPY)
    register_custom(two_versions, tmp_path, "broken", BROKEN)
    deploy(two_versions, "plain", Variant("clf", 1))
    deploy(
        two_versions,
        "shadowed",
        Variant("clf", 1),
        Variant("sleepy", 1, shadow=True),
        Variant("broken", 1, shadow=True),
    )
    server = serve(settings, servers, tmp_path / "server.log", MODELPORT_SHADOW_MAX_PENDING="4")
    rows = [{c: round(0.3 * i - 0.7 * j, 3) for j, c in enumerate(COLUMNS)} for i in range(12)]

    def timed(http: httpx.Client, endpoint: str, row: dict[str, float]) -> tuple[Any, float]:
        started = time.perf_counter()
        response = http.post(f"/v1/endpoints/{endpoint}/predict", json=record(row))
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        assert response.headers["modelport-variant"] == "clf-v1"
        return response.json(), elapsed

    def without_ids(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("prediction_ids", "endpoint")}

    live_ids: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for row in rows:
            plain, _ = timed(http, "plain", row)
            shadowed, elapsed = timed(http, "shadowed", row)
            assert without_ids(shadowed) == without_ids(plain)
            assert elapsed < 1.0, f"a live request took {elapsed:.2f}s behind a 2 s shadow"
            live_ids.extend(shadowed["prediction_ids"])

        # under concurrent load the slow shadow's queue fills: copies are shed, never waited
        def load(count: int) -> list[float]:
            with httpx.Client(base_url=server.url, timeout=30) as own:
                return [timed(own, "shadowed", ROW)[1] for _ in range(count)]

        shed_before = shadow_metric(server, "shadowed", "sleepy-v1", "shed")
        with ThreadPoolExecutor(4) as pool:
            times = [t for part in pool.map(load, [25] * 4) for t in part]
        assert max(times) < 1.0, f"slowest live request under load: {max(times):.2f}s"
        assert shadow_metric(server, "shadowed", "sleepy-v1", "shed") > shed_before

        wait_for(
            lambda: (
                shadow_metric(server, "shadowed", "sleepy-v1", "answered") >= 1
                and shadow_metric(server, "shadowed", "broken-v1", "failed") >= 1
            ),
            "a shadow answer and a shadow failure",
        )
    broken_failed = shadow_metric(server, "shadowed", "broken-v1", "failed")
    sleepy_answered = shadow_metric(server, "shadowed", "sleepy-v1", "answered")

    def shadow_rows() -> list[dict[str, Any]]:
        return logged(settings, "endpoint = 'shadowed' AND shadow")

    wait_for(
        lambda: len(shadow_rows()) >= broken_failed + sleepy_answered, "the shadow rows logged"
    )
    shadows = shadow_rows()
    live = logged(settings, "endpoint = 'shadowed' AND NOT shadow")
    assert len(live) == len(rows) + 100 and {r["status"] for r in live} == {"ok"}
    assert {r["variant"] for r in live} == {"clf-v1"}
    live_by_id = {r["prediction_id"]: r for r in live}
    assert set(live_ids) <= set(live_by_id)
    for row in shadows:
        assert row["prediction_id"] in live_by_id  # joins its live request
    sleepy = [r for r in shadows if r["variant"] == "sleepy-v1"]
    broken = [r for r in shadows if r["variant"] == "broken-v1"]
    assert sleepy and {r["status"] for r in sleepy} == {"ok"}
    outputs = [k for k in sleepy[0] if k.startswith("out_") and k != "out_label"]
    assert any(all(r[k] is not None for r in sleepy) for k in outputs), sleepy[0]
    assert broken and {r["status"] for r in broken} == {"prediction_failed"}
    # the plain endpoint has no shadow rows, and the shadowed one's stats agree with /metrics
    assert logged(settings, "endpoint = 'plain' AND shadow") == []

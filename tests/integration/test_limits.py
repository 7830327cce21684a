"""Limits of the serving path with the real server: body size, rows, deadlines, rate
limits and load shedding.

One server (a module fixture) serves ``clf`` (rows capped at 5 by its deployment),
``wide`` (the same model under the server's cap of 50 rows) and ``sleepy``, a custom
model that sleeps ``b`` seconds per single-row call and appends the row's ``a`` to a
file, so a test can tell which requests reached the model. ``sleepy`` runs one row per
model call with at most 2 requests queued.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelport.client import Client
from modelport.registry import ServingOptions
from modelport.settings import Settings
from tests.conftest import classification_data
from tests.integration.conftest import LiveServer, start_server, stop_server

MAX_BODY = 4096
SLEEPY = """
import time
from pathlib import Path

CALLS = Path({calls!r})


class Model:
    def load(self, path):
        pass

    def predict(self, frame):
        if len(frame) == 1:  # the registration sample has two rows
            with CALLS.open("a") as out:
                out.write(f"{{frame['a'].iloc[0]:g}}\\n")
            time.sleep(float(frame["b"].iloc[0]))
        return frame["a"] * 2
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """A Modelport home with clf, wide and sleepy deployed; the sleepy model's call file."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("limits")
    settings = Settings(home=root / "home", user="tester")
    client = Client(settings)
    frame, y = classification_data()
    sio.dump(LogisticRegression().fit(frame, y), root / "clf.skops")
    client.register_model("clf", root / "clf.skops", owner="ana@example.com", sample_input=frame)
    client.deploy("clf", "models:/clf/1", serving=ServingOptions(max_rows_per_request=5))
    client.deploy("wide", "models:/clf/1")
    calls = root / "calls.txt"
    folder = root / "sleepy"
    folder.mkdir()
    (folder / "model.py").write_text(SLEEPY.format(calls=str(calls)))
    sample = pd.DataFrame({"a": [100.0, 101.0], "b": [0.0, 0.0]})
    client.register_model("sleepy", folder, flavor="custom", trust=True, sample_input=sample)
    client.deploy(
        "sleepy", "models:/sleepy/1", serving=ServingOptions(max_batch_size=1, max_queue=2)
    )
    client.close()
    yield settings, calls


def launch(settings: Settings, log: Path, **extra: str) -> LiveServer:
    env = os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_WORKERS": "1",
        "MODELPORT_MAX_BODY_BYTES": str(MAX_BODY),
        "MODELPORT_MAX_ROWS_PER_REQUEST": "50",
        "MODELPORT_REQUEST_TIMEOUT_SECONDS": "20",
        **extra,
    }
    return start_server(env, log)


@pytest.fixture(scope="module")
def server(home: tuple[Settings, Path]) -> Iterator[LiveServer]:
    settings, _ = home
    live = launch(settings, settings.home.parent / "server.log")
    yield live
    stop_server(live)


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def rows(n: int) -> dict[str, Any]:
    return {
        "dataframe_split": {
            "columns": ["a", "b", "c", "d"],
            "data": [[0.1 * i, -0.2, 0.3, 1.0] for i in range(n)],
        }
    }


def sleepy(a: float, b: float) -> dict[str, Any]:
    return {"dataframe_records": [{"a": a, "b": b}]}


def model_calls(calls: Path) -> list[float]:
    """The ``a`` of every single-row call the sleepy model got."""
    return [float(line) for line in calls.read_text().split()] if calls.exists() else []


def raw_exchange(server: LiveServer, head: str, chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
    """Send a request head and body chunks by hand, then read the answer (status, JSON)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        top, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", top).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
    return int(top.split()[1]), json.loads(body)


def errors_counted(http: httpx.Client, endpoint: str, kind: str) -> float:
    text = http.get("/metrics").text
    labels = rf'[^}}]*endpoint="{endpoint}"[^}}]*kind="{kind}"[^}}]*'
    pattern = rf"modelport_request_errors_total\{{{labels}\}} (\S+)"
    return sum(float(v) for v in re.findall(pattern, text))


# -- body size -------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    server: LiveServer,
) -> None:
    head = (
        "POST /v1/endpoints/clf/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
    )
    status, body = raw_exchange(server, head, [])  # no body at all: the head must suffice
    assert status == 413
    assert body["code"] == "payload_too_large"
    assert "1000000 bytes" in body["error"] and f"{MAX_BODY} bytes" in body["error"]
    assert "MODELPORT_MAX_BODY_BYTES" in body["hint"]


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: LiveServer) -> None:
    head = (
        "POST /v1/endpoints/clf/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 1024
    chunks = [b"400\r\n" + piece + b"\r\n" for _ in range(MAX_BODY // 1024 + 1)]
    # No terminating chunk is ever sent: the answer proves the server stopped reading.
    status, body = raw_exchange(server, head, chunks)
    assert status == 413
    assert body["code"] == "payload_too_large" and f"{MAX_BODY} bytes" in body["error"]


# -- rows per request ------------------------------------------------------------


def test_rows_over_the_deployments_limit_get_413_naming_it(http: httpx.Client) -> None:
    assert http.post("/v1/endpoints/clf/predict", json=rows(5)).status_code == 200
    response = http.post("/v1/endpoints/clf/predict", json=rows(6))
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["code"] == "payload_too_large"
    assert "6 rows" in body["error"] and "limit of 5 rows" in body["error"]
    assert "serving.max_rows_per_request of endpoint clf" in body["hint"]
    assert "at most 5 rows" in body["hint"]
    v2 = {
        "inputs": [
            {"name": c, "shape": [6], "datatype": "FP64", "data": [0.5] * 6}
            for c in ("a", "b", "c", "d")
        ]
    }
    assert http.post("/v2/models/clf/infer", json=v2).status_code == 413


def test_rows_over_the_servers_limit_get_413_naming_the_setting(http: httpx.Client) -> None:
    assert http.post("/v1/endpoints/wide/predict", json=rows(50)).status_code == 200
    response = http.post("/v1/endpoints/wide/predict", json=rows(51))
    assert response.status_code == 413, response.text
    assert "limit of 50 rows" in response.json()["error"]
    assert "MODELPORT_MAX_ROWS_PER_REQUEST" in response.json()["hint"]


# -- deadlines -------------------------------------------------------------------


def test_a_passed_deadline_answers_504_and_the_request_never_reaches_the_model(
    http: httpx.Client, home: tuple[Settings, Path]
) -> None:
    _, calls = home
    before = errors_counted(http, "sleepy", "deadline_exceeded")
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(http.post, "/v1/endpoints/sleepy/predict", json=sleepy(11, 1.5))
        deadline = time.monotonic() + 20
        while 11.0 not in model_calls(calls):  # the model is taken by the first request
            assert time.monotonic() < deadline, "the first request never reached the model"
            time.sleep(0.02)
        by_parameter = http.post("/v1/endpoints/sleepy/predict?timeout=0.2", json=sleepy(12, 0))
        by_header = http.post(
            "/v1/endpoints/sleepy/predict",
            json=sleepy(13, 0),
            headers={"Request-Timeout": "0.2"},
        )
        by_x_header = http.post(
            "/v2/models/sleepy/infer",
            json={
                "inputs": [
                    {"name": "a", "shape": [1], "datatype": "FP64", "data": [14.0]},
                    {"name": "b", "shape": [1], "datatype": "FP64", "data": [0.0]},
                ]
            },
            headers={"X-Request-Timeout": "0.2"},
        )
        assert busy.result().status_code == 200
    for response in (by_parameter, by_header, by_x_header):
        assert response.status_code == 504, response.text
        body = response.json()
        assert body["code"] == "deadline_exceeded"
        assert "deadline of 0.2 s" in body["error"] and "cancelled" in body["error"]
    after = http.post("/v1/endpoints/sleepy/predict", json=sleepy(15, 0))
    assert after.status_code == 200 and after.json()["predictions"] == [30.0]
    made = [a for a in model_calls(calls) if 11 <= a <= 15]
    assert made == [11.0, 15.0], f"timed-out requests reached the model: {made}"
    assert errors_counted(http, "sleepy", "deadline_exceeded") - before == 3


def test_a_timeout_above_the_servers_cap_is_capped_not_refused(http: httpx.Client) -> None:
    response = http.post("/v1/endpoints/clf/predict?timeout=3600", json=rows(1))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", ""])
def test_a_bad_timeout_parameter_is_400_naming_it(http: httpx.Client, value: str) -> None:
    response = http.post(f"/v1/endpoints/clf/predict?timeout={value}", json=rows(1))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_input"
    assert f"query parameter timeout is {value!r}" in body["error"]
    assert "positive number of seconds" in body["error"]


def test_a_bad_timeout_header_is_400_naming_it(http: httpx.Client) -> None:
    response = http.post(
        "/v1/endpoints/clf/predict", json=rows(1), headers={"Request-Timeout": "2s"}
    )
    assert response.status_code == 400
    assert "header request-timeout is '2s'" in response.json()["error"]


# -- load shedding ---------------------------------------------------------------


def test_a_full_queue_sheds_with_503_while_admitted_requests_succeed(
    http: httpx.Client, server: LiveServer
) -> None:
    before = errors_counted(http, "sleepy", "overloaded")

    def send(a: float) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            return own.post("/v1/endpoints/sleepy/predict", json=sleepy(a, 0.4))

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, [float(200 + i) for i in range(10)]))
        live = http.get("/v2/health/live")  # the probe gets through meanwhile
    assert live.status_code == 200
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    for a, response in zip(range(200, 210), answers, strict=True):
        if response.status_code == 200:
            assert response.json()["predictions"] == [2.0 * a]
        else:
            assert response.headers["retry-after"] == "1"
            body = response.json()
            assert body["code"] == "overloaded"
            assert "queue is full" in body["error"] and "serving.max_queue" in body["hint"]
    shed = statuses.count(503)
    assert errors_counted(http, "sleepy", "overloaded") - before == shed


# -- rate limits -----------------------------------------------------------------


def test_a_client_over_the_rate_gets_429_with_retry_after(
    home: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, _ = home
    live = launch(
        settings,
        tmp_path / "limited.log",
        MODELPORT_RATE_LIMIT_PER_SECOND="0.5",
        MODELPORT_RATE_LIMIT_BURST="2",
    )
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            statuses = [http.post("/v1/endpoints/clf/predict", json=rows(1)) for _ in range(3)]
            other = http.get("/v2/models/clf")  # every route counts, but health and metrics
            probes = [http.get("/v2/health/live").status_code for _ in range(4)]
            probes.append(http.get("/health/ready").status_code)
            metrics = http.get("/metrics")
            assert [r.status_code for r in statuses[:2]] == [200, 200]
            refused = statuses[2]
            assert refused.status_code == 429
            assert refused.json()["code"] == "rate_limited"
            assert (
                "client 127.0.0.1 is over its rate of 0.5 requests per second"
                in (refused.json()["error"])
            )
            assert int(refused.headers["retry-after"]) >= 1
            assert other.status_code == 429 and "retry-after" in other.headers
            assert probes == [200] * 5 and metrics.status_code == 200
            assert "modelport_rate_limited_requests_total 1.0" in metrics.text
            time.sleep(int(refused.headers["retry-after"]))
            assert http.post("/v1/endpoints/clf/predict", json=rows(1)).status_code == 200
    finally:
        stop_server(live)


def test_with_auth_on_each_api_key_gets_its_own_rate(
    home: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, _ = home
    client = Client(settings)
    slow = client.keys.create("limits-slow", scopes=["predict"], rate_limit=0.5)
    free = client.keys.create("limits-free", scopes=["predict"])
    client.close()
    env = os.environ | {"MODELPORT_HOME": str(settings.home), "MODELPORT_WORKERS": "1"}
    live = start_server(env, tmp_path / "auth.log", "--auth", "on")
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:

            def predict(token: str) -> httpx.Response:
                headers = {"Authorization": f"Bearer {token}"}
                return http.post("/v1/endpoints/clf/predict", json=rows(1), headers=headers)

            limited = [predict(slow.token) for _ in range(2)]
            unlimited = [predict(free.token) for _ in range(5)]
        assert limited[0].status_code == 200
        assert limited[1].status_code == 429 and limited[1].headers["retry-after"] == "2"
        named = f"API key 'limits-slow' ({slow.record.key.id}) is over its rate of 0.5"
        assert named in limited[1].json()["error"]
        assert [r.status_code for r in unlimited] == [200] * 5
    finally:
        stop_server(live)

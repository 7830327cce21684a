"""Prometheus metrics of the predict path, the model pool, the prediction log and the monitor."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelport import errors
from modelport.client import Client
from modelport.registry import ModelVersion
from modelport.runtimes.base import LoadContext, Prediction
from modelport.serving import pool as pool_module
from modelport.serving.batcher import Batcher, BatchingConfig
from modelport.serving.dataplane import DataPlane
from modelport.serving.fastpath import FastPath
from modelport.serving.metrics import ServingMetrics, forget_dead_workers
from modelport.serving.pool import ModelPool
from modelport.settings import Settings
from modelport.signature import Columns
from tests.unit.serving.conftest import ROW

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CLF = (("endpoint", "clf"), ("model", "clf"), ("version", "1"))


def samples(server: TestClient) -> Samples:
    response = server.get("/metrics")
    assert response.status_code == 200
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def value(metrics: ServingMetrics, name: str, **label_values: str) -> float | None:
    """A sample as a scrape would see it (live counts are published first)."""
    metrics.publish()
    return metrics.registry.get_sample_value(name, label_values)


def run(main: Callable[[], Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 60)

    return asyncio.run(bounded())


# -- requests through the app --------------------------------------------------


def test_requests_rows_and_batches_are_counted(server: TestClient) -> None:
    for _ in range(3):
        server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW, ROW]})
    server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [{"a": "x"}]})
    found = samples(server)
    assert found[("modelport_requests_total", (("code", "200"), *CLF))] == 3
    bad = (("code", "400"), ("endpoint", "clf"), ("model", ""), ("version", ""))
    assert found[("modelport_requests_total", bad)] == 1
    assert found[("modelport_predicted_rows_total", CLF)] == 6
    assert found[("modelport_batch_size_rows_count", CLF)] == 3
    assert found[("modelport_batch_size_rows_sum", CLF)] == 6
    assert found[("modelport_batch_queue_wait_seconds_count", CLF)] == 3
    assert found[("modelport_request_duration_seconds_count", CLF)] == 3
    failed = labels(endpoint="clf", model="", version="")
    assert found[("modelport_request_duration_seconds_count", failed)] == 1
    assert found[("modelport_requests_in_flight", (("endpoint", "clf"),))] == 0


def test_each_model_call_is_timed(server: TestClient) -> None:
    for _ in range(3):
        server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
    found = samples(server)
    assert found[("modelport_model_duration_seconds_count", CLF)] == 3
    assert 0 < found[("modelport_model_duration_seconds_sum", CLF)] < 3
    assert found[("modelport_batch_queue_requests", CLF)] == 0
    assert found[("modelport_model_duration_seconds_bucket", labels(le="+Inf", **dict(CLF)))] == 3


def test_unknown_endpoints_do_not_mint_label_values(server: TestClient) -> None:
    for name in ("nope-1", "nope-2"):
        server.post(f"/v1/endpoints/{name}/predict", json={"dataframe_records": [ROW]})
    found = samples(server)
    missing = (("code", "404"), ("endpoint", "-"), ("model", ""), ("version", ""))
    assert found[("modelport_requests_total", missing)] == 2
    not_found = labels(endpoint="-", model="", version="", kind="not_found")
    assert found[("modelport_request_errors_total", not_found)] == 2
    assert found[("modelport_requests_in_flight", (("endpoint", "-"),))] == 0
    assert not any(dict(labels).get("endpoint", "").startswith("nope") for _, labels in found)


def test_errors_are_counted_by_kind(make_server: Callable[..., TestClient]) -> None:
    server = make_server(max_body_bytes=1000)
    post = server.post
    post("/v1/endpoints/clf/predict", content=b"{", headers={"Content-Type": "application/json"})
    post("/v1/endpoints/clf/predict", json={"dataframe_records": [{"a": "x", "b": 1}]})
    post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW] * 100})
    post("/v2/models/clf/versions/7/infer", json={"inputs": []})
    post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW]})
    found = samples(server)
    errors_by_kind = {
        dict(key)["kind"]: count
        for (name, key), count in found.items()
        if name == "modelport_request_errors_total"
    }
    assert errors_by_kind == {
        "invalid_input": 1,
        "signature_mismatch": 1,
        "payload_too_large": 1,
        "not_found": 1,
    }
    failed = sum(
        count
        for (name, key), count in found.items()
        if name == "modelport_requests_total" and dict(key)["code"] != "200"
    )
    assert failed == sum(errors_by_kind.values())


def test_a_failing_model_counts_prediction_failed(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    folder = tmp_path / "picky"
    folder.mkdir()
    (folder / "model.py").write_text(
        "class Model:\n"
        "    def load(self, path):\n"
        "        pass\n"
        "    def predict(self, frame):\n"
        "        if (frame['a'] > 100).any():\n"
        "            raise ValueError('too big')\n"
        "        return frame['a'] * 2\n"
    )
    sample = pd.DataFrame({"a": [1.0, 2.0]})
    deployed.register_model("picky", folder, flavor="custom", trust=True, sample_input=sample)
    deployed.deploy("picky", "models:/picky/1", env="production")
    server = make_server()
    assert server.post("/v1/endpoints/picky/predict", json={"inputs": {"a": [1.0]}}).is_success
    response = server.post("/v1/endpoints/picky/predict", json={"inputs": {"a": [500.0]}})
    assert response.status_code == 500
    found = samples(server)
    failed = labels(endpoint="picky", model="", version="", kind="prediction_failed")
    assert found[("modelport_request_errors_total", failed)] == 1
    picky = labels(endpoint="picky", model="picky", version="1")
    assert found[("modelport_model_duration_seconds_count", picky)] == 2  # the failed call too


# -- in flight and the batch queue ---------------------------------------------


class HeldPlane:
    """A data plane whose predictions wait until the test lets them fail."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.endpoints = {"held": object()}
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def admit(self, endpoint: str) -> None:
        """Every request is admitted: no queue is full."""

    async def predict(
        self, endpoint: str, raw: Any, *, version: Any = None, header: Any = None
    ) -> Any:
        self.entered.set()
        await self.release.wait()
        raise errors.Unavailable(f"{endpoint} is held")


def test_in_flight_counts_requests_being_answered() -> None:
    metrics = ServingMetrics()
    plane = HeldPlane()

    async def not_here(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("only predict routes are sent")

    fast = FastPath(not_here, cast(DataPlane, plane), 10_000, metrics)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"inputs": {"a": [1.0]}}', "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def main() -> tuple[float | None, float | None]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/endpoints/held/predict",
            "headers": [(b"content-type", b"application/json")],
        }
        task = asyncio.get_running_loop().create_task(fast(scope, receive, send))
        await plane.entered.wait()
        during = value(metrics, "modelport_requests_in_flight", endpoint="held")
        plane.release.set()
        await task
        return during, value(metrics, "modelport_requests_in_flight", endpoint="held")

    assert run(main) == (1, 0)
    assert sent[0]["status"] == 503
    kind = {"endpoint": "held", "model": "", "version": "", "kind": "unavailable"}
    assert value(metrics, "modelport_request_errors_total", **kind) == 1


class SlowRuntime:
    """Sleeps ``seconds`` per call; the first call also waits for ``gate``."""

    flavor: ClassVar[str] = "slow"

    def __init__(self, seconds: float, gate: threading.Event) -> None:
        self.seconds = seconds
        self.gate = gate
        self.started = threading.Event()
        self.calls = 0

    def load(self, ctx: LoadContext) -> None: ...

    def unload(self) -> None: ...

    def predict(self, columns: Columns) -> Prediction:
        self.calls += 1
        self.started.set()
        if self.calls == 1:
            assert self.gate.wait(30)
        threading.Event().wait(self.seconds)
        return Prediction(outputs={"prediction": columns["x"] * 2.0}, task="regression")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def test_the_queue_gauge_and_the_two_waits(deployed: Client, executor: ThreadPoolExecutor) -> None:
    metrics = ServingMetrics()
    mv = deployed.get_version("models:/clf/1")
    gate = threading.Event()
    runtime = SlowRuntime(0.05, gate)
    batcher = Batcher(
        runtime, BatchingConfig(), executor, on_batch=metrics.batch_observer("clf", mv)
    )
    x = {"x": np.asarray([1.0])}

    async def main() -> float | None:
        loop = asyncio.get_running_loop()
        first = loop.create_task(batcher.predict(x))
        assert await asyncio.to_thread(runtime.started.wait, 30)
        queued = [loop.create_task(batcher.predict(x)) for _ in range(3)]
        await asyncio.sleep(0.01)
        waiting = value(metrics, "modelport_batch_queue_requests", **dict(CLF))
        queued[0].cancel()  # a caller that gave up leaves the queue too
        gate.set()
        await asyncio.gather(first, *queued, return_exceptions=True)
        await batcher.close()
        return waiting

    assert run(main) == 3
    series = dict(CLF)
    assert value(metrics, "modelport_batch_queue_requests", **series) == 0
    assert value(metrics, "modelport_model_duration_seconds_count", **series) == 2
    assert value(metrics, "modelport_batch_size_rows_sum", **series) == 3
    model_seconds = value(metrics, "modelport_model_duration_seconds_sum", **series)
    assert model_seconds is not None and model_seconds >= 0.1
    assert value(metrics, "modelport_batch_queue_wait_seconds_count", **series) == 3
    waited = value(metrics, "modelport_batch_queue_wait_seconds_sum", **series)
    assert waited is not None and 2 * 0.05 <= waited < model_seconds + 1


# -- the model pool ------------------------------------------------------------


class Held:
    flavor: ClassVar[str] = "held"

    def __init__(self, payload: np.ndarray | None = None) -> None:
        self.payload = payload

    def load(self, ctx: LoadContext) -> None: ...

    def predict(self, columns: Columns) -> Prediction:
        raise NotImplementedError

    def unload(self) -> None:
        self.payload = None


def loader(mv: ModelVersion, kind: str) -> Held:
    del kind
    if mv.name == "broken":
        raise errors.ArtifactError("broken on purpose")
    if mv.name == "big":
        return Held(np.ones(8_000_000))  # 64 MB, touched
    return Held()


def test_loaded_models_and_their_memory(deployed: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = ServingMetrics()
    pool = ModelPool(loader, observer=metrics.pool_observer())
    mv = deployed.get_version("models:/clf/1")
    big, small, broken = (replace(mv, name=name) for name in ("big", "small", "broken"))

    def loaded(state: str) -> float | None:
        return value(metrics, "modelport_loaded_models", state=state)

    def memory(name: str) -> float | None:
        return value(
            metrics, "modelport_model_memory_bytes", model=name, version="1", kind="native"
        )

    async def main() -> None:
        assert (loaded("loading"), loaded("ready"), loaded("failed")) == (0, 0, 0)
        slot = pool.start_load(big)
        assert loaded("loading") == 1
        await pool.wait_loaded(big)
        assert slot.memory_bytes >= 60_000_000
        assert memory("big") == slot.memory_bytes
        monkeypatch.setattr(pool_module, "resident_bytes", lambda: None)
        await pool.wait_loaded(small)
        assert memory("small") == mv.artifact.size  # no resident set known: the artifact
        await pool.wait_loaded(broken)
        assert (loaded("loading"), loaded("ready"), loaded("failed")) == (0, 2, 1)
        pool.unload(("big", 1, "native"))
        assert loaded("ready") == 1 and memory("big") == 0
        await pool.close()
        assert (loaded("loading"), loaded("ready"), loaded("failed")) == (0, 0, 0)
        assert memory("small") == 0

    run(main)


# -- the prediction log and the monitor ----------------------------------------


def test_log_observer_counts_rows_from_any_thread() -> None:
    metrics = ServingMetrics()
    observe = metrics.log_observer()
    threads = [threading.Thread(target=observe, args=("written", 10)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    observe("dropped", 3)
    assert value(metrics, "modelport_prediction_log_rows_total", outcome="written") == 40
    assert value(metrics, "modelport_prediction_log_rows_total", outcome="dropped") == 3


def test_monitor_gauges_are_set_and_alerts_cleared(server: TestClient) -> None:
    metrics = cast(FastPath, server.app).metrics
    metrics.set_drift("clf", "clf", 1, "a", "ks", 0.42, True, 0.31)
    metrics.set_drift("clf", "clf", 1, "b", "chi2", None, False, None)
    metrics.set_quality("clf", "clf", 1, "a", 0.05, None)
    metrics.set_performance("clf", "clf", 1, {"accuracy": 0.9, "f1": None}, labelled=120)
    metrics.set_alerts([("DriftDetected", "warning", "clf"), ("Down", "critical", "reg")])
    when = datetime(2024, 5, 1, tzinfo=UTC)
    metrics.mark_monitor_run("clf", when)
    metrics.set_alerts([("Down", "critical", "reg")])
    found = samples(server)
    a = (*CLF, ("column", "a"))
    assert found[("modelport_drift_score", tuple(sorted((*a, ("method", "ks")))))] == 0.42
    assert found[("modelport_drift_detected", tuple(sorted(a)))] == 1
    assert found[("modelport_psi", tuple(sorted(a)))] == 0.31
    b = tuple(sorted((*CLF, ("column", "b"))))
    assert found[("modelport_drift_detected", b)] == 0
    assert math.isnan(found[("modelport_psi", b)])
    assert found[("modelport_missing_ratio", tuple(sorted(a)))] == 0.05
    assert math.isnan(found[("modelport_out_of_range_ratio", tuple(sorted(a)))])
    assert found[("modelport_model_performance", tuple(sorted((*CLF, ("metric", "accuracy")))))]
    assert math.isnan(
        found[("modelport_model_performance", tuple(sorted((*CLF, ("metric", "f1")))))]
    )
    assert found[("modelport_labelled_predictions", CLF)] == 120
    drift = labels(alertname="DriftDetected", severity="warning", endpoint="clf")
    down = labels(alertname="Down", severity="critical", endpoint="reg")
    assert found[("modelport_alerts_firing", drift)] == 0
    assert found[("modelport_alerts_firing", down)] == 1
    last_run = ("modelport_monitor_last_run_timestamp_seconds", (("endpoint", "clf"),))
    assert found[last_run] == when.timestamp()


# -- several workers -----------------------------------------------------------


def test_live_gauges_of_exited_workers_are_dropped(tmp_path: Path) -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    names = [
        f"gauge_livesum_{exited.pid}.db",
        f"gauge_livemostrecent_{exited.pid}.db",
        f"counter_{exited.pid}.db",
        f"gauge_livesum_{os.getpid()}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_live_counters_and_histograms_publish_what_direct_updates_would_show() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from modelport.serving.metrics import LATENCY_BUCKETS, LiveCounter, LiveHistogram

    def families(registry: CollectorRegistry) -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    values = [0.0, 0.0005, 0.0007, 0.001, 0.03, 2.5, 7.0, 0.0005]  # on and between bounds
    registries = []
    for live in (False, True):
        registry = CollectorRegistry()
        counter = Counter("c", "c", ["k"], registry=registry).labels("x")
        histogram = Histogram("h", "h", ["k"], buckets=LATENCY_BUCKETS, registry=registry)
        child = histogram.labels("x")
        if live:
            live_counter, live_histogram = LiveCounter(counter), LiveHistogram(child)
            for i, value in enumerate(values):
                live_counter.inc(i)
                live_histogram.observe(value)
                if i == 3:  # a publish midway adds only what came since the last
                    live_counter.publish()
                    live_histogram.publish()
            assert families(registry)["c_total[('k', 'x')]"] == 6  # not yet the rest
            live_counter.publish()
            live_histogram.publish()
            live_histogram.publish()  # nothing new: nothing added
        else:
            for i, value in enumerate(values):
                counter.inc(i)
                child.observe(value)
        registries.append(families(registry))
    assert registries[0] == registries[1]
    assert registries[1]["h_count[('k', 'x')]"] == len(values)

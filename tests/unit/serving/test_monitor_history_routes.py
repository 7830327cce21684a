"""Monitor history over HTTP: the runs the server's monitor loop kept, oldest first, and
one column's live histogram counted on its reference profile's bins."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from tests.unit.serving.conftest import ROW


@pytest.fixture
def watched(make_server: Callable[..., TestClient]) -> TestClient:
    """A server that answered four clf requests of two rows and monitored them."""
    server = make_server(log_flush_seconds=0.05, monitor_interval_seconds=0.2)
    for value in (-0.5, 0.0, 0.5, 5.0):
        rows = [ROW | {"a": value}, ROW | {"a": value}]
        reply = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": rows})
        assert reply.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = server.get("/v1/endpoints/clf/monitor/history").json()["runs"]
        if len(runs) >= 2 and runs[-1]["rows"] == 8:
            return server
        time.sleep(0.05)
    raise AssertionError("the monitor kept no run over the eight rows")


def test_history_oldest_first_with_drift_per_column(watched: TestClient) -> None:
    body: dict[str, Any] = watched.get(
        "/v1/endpoints/clf/monitor/history", params={"limit": 2}
    ).json()
    assert (body["environment"], body["endpoint"]) == ("production", "clf")
    first, last = body["runs"]
    assert first["id"] < last["id"] and first["computed_at"] <= last["computed_at"]
    assert (last["model"], last["version"]) == ("clf", 1)
    columns = {c["column"]: c for c in last["drift"]["columns"]}
    assert set(columns) == {"a", "b", "c", "d"}
    assert columns["a"]["threshold"] > 0 and "score" in columns["a"]
    assert "missing_rate" in columns["a"] and "out_of_range_rate" in columns["a"]
    assert watched.get("/v1/endpoints/reg/monitor/history").json()["runs"][-1]["rows"] == 0
    assert watched.get("/v1/endpoints/nope/monitor/history").json()["runs"] == []
    assert watched.get("/v1/endpoints/clf/monitor/history?limit=0").status_code in (400, 422)


def test_histogram_on_the_reference_bins(watched: TestClient) -> None:
    body: dict[str, Any] = watched.get(
        "/v1/endpoints/clf/monitor/histogram", params={"column": "a", "window": "5m"}
    ).json()
    edges, reference, current = body["edges"], body["reference"], body["current"]
    assert len(edges) == len(reference["counts"]) + 1 == len(current["counts"]) + 1
    assert reference["rows"] == sum(reference["counts"]) > 0
    assert current["rows"] == 8 and current["above"] == 2  # a = 5 is past the reference
    assert sum(current["counts"]) + current["below"] + current["above"] == 8
    output = watched.get("/v1/endpoints/clf/monitor/histogram", params={"column": "label"})
    assert output.status_code == 200 and output.json()["current"]["rows"] == 8


def test_histogram_of_an_unknown_column_says_so(watched: TestClient) -> None:
    reply = watched.get("/v1/endpoints/clf/monitor/histogram", params={"column": "zz"})
    assert reply.status_code == 404
    assert "zz" in reply.json()["error"] and reply.json()["hint"]


def test_performance_per_version_over_time_buckets(
    make_server: Callable[..., TestClient],
) -> None:
    server = make_server(log_flush_seconds=0.05)
    ids: list[str] = []
    outputs: list[Any] = []
    for value in (-2.0, -1.0, 1.0, 2.0):
        reply = server.post(
            "/v1/endpoints/clf/predict", json={"dataframe_records": [ROW | {"a": value}] * 2}
        )
        assert reply.status_code == 200
        ids += reply.json()["prediction_ids"]
        outputs += reply.json()["predictions"]
    labels = [1, 0] * 3  # the last two predictions stay unlabelled
    assert server.post(
        "/v1/feedback", json={"prediction_ids": ids[:6], "labels": labels}
    ).json() == {"accepted": 6}
    deadline = time.monotonic() + 10
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = server.get(
            "/v1/endpoints/clf/monitor/performance", params={"window": "1h", "bucket": "1m"}
        ).json()
        if body["versions"] and body["versions"][0]["totals"]["n_labelled"] == 6:
            break
        time.sleep(0.05)
    (clf,) = body["versions"]
    assert (clf["model"], clf["version"], clf["task"]) == ("clf", 1, "classification")
    assert clf["metrics"] == ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
    p, r = clf["totals"]["precision"], clf["totals"]["recall"]
    assert clf["totals"]["f1"] == pytest.approx(2 * p * r / (p + r))  # a binary classifier
    right = sum(int(str(o) == str(y)) for o, y in zip(outputs, labels, strict=False))
    assert clf["totals"]["accuracy"] == pytest.approx(right / 6)
    assert body["step_s"] == 60 and len(body["times"]) == len(clf["series"]["accuracy"]) in (60, 61)
    filled = [i for i, n in enumerate(clf["series"]["n_labelled"]) if n is not None]
    assert sum(clf["series"]["n_labelled"][i] for i in filled) == 6  # each label in one bucket
    assert filled[-1] >= len(body["times"]) - 2  # the newest buckets: just now
    # The default bucket cuts the window into about 60; bad parameters are named.
    assert server.get("/v1/endpoints/clf/monitor/performance").json()["step_s"] == 21600
    for params, message in (
        ({"window": "soon"}, "window: 'soon' is not a duration"),
        ({"window": "1h", "bucket": "0.5s"}, "bucket '0.5s' is under a second"),
        ({"window": "7d", "bucket": "1s"}, "buckets, over 1440"),
    ):
        reply = server.get("/v1/endpoints/clf/monitor/performance", params=params)
        assert reply.status_code == 400 and message in reply.json()["error"], reply.text
    assert server.get("/v1/endpoints/nope/monitor/performance").json()["versions"] == []


def test_stream_status_of_a_stream_view(
    make_server: Callable[..., TestClient], deployed: Client
) -> None:
    import uuid

    from modelport.features.streams import RedisStreamSource, publish, stream_status
    from modelport.features.views import Aggregation, Feature, FeatureView, StreamSource
    from modelport.registry.features import FeatureViewStore

    url = "redis://127.0.0.1:6379/0"
    tag = uuid.uuid4().hex[:10]
    stream = f"clicks_{tag}"
    views = FeatureViewStore(deployed.registry.engine)
    views.put(
        FeatureView(
            name=f"clicks_{tag}",
            entity="user_id",
            aggregations=(Aggregation("clicks_1h", "count", None, 3600.0),),
            source=StreamSource(stream=stream, timestamp_field="ts"),
        )
    )
    views.put(FeatureView(name=f"plain_{tag}", entity="user_id", features=(Feature("x"),)))
    server = make_server(stream_url=url)
    path = f"/v1/features/clicks_{tag}/stream/status"
    try:
        first = server.get(path).json()
        assert (first["state"], first["stream"], first["group"]) == (
            "not_started",
            stream,
            f"modelport.clicks_{tag}",
        )
        assert "stream processor not running" in first["message"]
        assert first["hint"] == f"start it: modelport stream run clicks_{tag}"
        for i in range(5):
            publish(url, stream, {"user_id": f"u{i}", "ts": time.time()})
        reader = RedisStreamSource(url, stream, f"modelport.clicks_{tag}", "c1")
        batch = reader.read(3, None)
        reader.ack([m.id for m in batch])
        reading = server.get(path).json()
        assert (reading["lag"], reading["pending"], reading["length"]) == (2, 0, 5)
        assert reading["state"] == "reading" and reading["consumers"] == 1
        assert reading["last_delivered_at"] <= reading["newest_event_at"]
        stopped = stream_status(url, f"clicks_{tag}", stream, stale_after_s=0)
        assert stopped["state"] == "stopped"
        assert "stream processor not running" in stopped["message"]
        reader.ack([m.id for m in reader.read(10, None)])
        assert server.get(path).json()["state"] == "caught_up"
        reader.close()
        other = server.get(path, params={"group": "nobody"}).json()
        assert other["state"] == "not_started" and other["group"] == "nobody"
        bad = server.get(f"/v1/features/plain_{tag}/stream/status")
        assert bad.status_code == 400 and "only a stream view" in bad.json()["error"]
        assert server.get("/v1/features/nope/stream/status").status_code == 404
        assert make_server().get(path).json()["state"] == "no_stream"
        down = make_server(stream_url="redis://127.0.0.1:1/0").get(path)
        assert down.status_code == 503 and "cannot reach the event stream" in down.json()["error"]
    finally:
        client = RedisStreamSource(url, stream, "cleanup", "c").client
        client.delete(stream)
        client.close()

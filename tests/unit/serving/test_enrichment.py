"""Enrichment at prediction time: a request carries the entity key, the server joins
the feature views' values, and each policy (null, default, error) is honoured."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client
from modelport.features.enrich import Enricher, output_columns
from modelport.features.online import MemoryStore
from modelport.features.views import Feature, FeatureView
from modelport.registry import DeploymentSpec
from modelport.registry.features import FeatureViewStore

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}


def profile(**policy: Any) -> FeatureView:
    features = (Feature("a", default=0.0), Feature("b", default=0.0))
    return FeatureView("profile", "user_id", features=features, ttl_s=3600.0, **policy)


def serve_with(
    deployed: Client, make_server: Callable[..., TestClient], view: FeatureView
) -> tuple[TestClient, MemoryStore]:
    FeatureViewStore(deployed.registry.engine).put(view)
    spec = deployed.get_deployment("clf").spec
    enriched = DeploymentSpec(spec.variants, features=(view.name,))
    deployed.registry.set_deployment("production", "clf", enriched)
    server = make_server(online_store="memory")
    store = server.app.plane.enricher.store  # type: ignore[attr-defined]
    assert isinstance(store, MemoryStore)
    return server, store


def predict(server: TestClient, records: list[dict[str, Any]]) -> Any:
    return server.post("/v1/endpoints/clf/predict", json={"dataframe_records": records})


def test_the_server_joins_features_and_the_model_sees_its_columns(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    server, store = serve_with(deployed, make_server, profile())
    store.write("profile", {"u1": ({"a": 0.5, "b": -1.0}, time.time())})
    enriched = predict(server, [{"user_id": "u1", "c": 0.2, "d": 1.0}])
    plain = deployed.predict("models:/clf/1", [ROW])
    assert enriched.status_code == 200, enriched.text
    assert enriched.json()["predictions"] == plain.outputs["label"].tolist()


def test_a_missing_key_follows_the_views_policy(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    server, _ = serve_with(deployed, make_server, profile(on_missing="error"))
    reply = predict(server, [{"user_id": 42, "c": 0.2, "d": 1.0}])
    assert reply.status_code == 404
    assert "feature view 'profile' has no values for user_id='42'" in reply.json()["error"]


def test_defaults_and_nulls(deployed: Client, make_server: Callable[..., TestClient]) -> None:
    server, _ = serve_with(deployed, make_server, profile(on_missing="default"))
    assert predict(server, [{"user_id": "nobody", "c": 0.2, "d": 1.0}]).status_code == 200
    view = profile()
    values = Enricher(MemoryStore()).enrich([view], {"user_id": ["x"], "c": [1.0]})
    assert values == {"user_id": ["x"], "c": [1.0], "a": [None], "b": [None]}


def test_stale_values_fail_when_the_view_says_so(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    server, store = serve_with(deployed, make_server, profile(on_stale="error"))
    store.write("profile", {"u1": ({"a": 0.5, "b": -1.0}, time.time() - 7200)})
    reply = predict(server, [{"user_id": "u1", "c": 0.2, "d": 1.0}])
    assert reply.status_code == 503
    assert "are stale: 7200s old, the view's ttl is 3600s" in reply.json()["error"]


def test_a_request_without_the_key_or_a_view_that_is_gone_is_a_clear_error(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    server, _ = serve_with(deployed, make_server, profile())
    reply = predict(server, [{"c": 0.2, "d": 1.0}])
    assert reply.status_code == 400
    assert "no 'user_id' column, the key of feature view 'profile'" in reply.json()["error"]
    spec = deployed.get_deployment("clf").spec
    deployed.registry.set_deployment(
        "production", "clf", DeploymentSpec(spec.variants, features=("nope",))
    )
    deadline = time.monotonic() + 10
    reply = predict(server, [{"user_id": "u1", "c": 0.2, "d": 1.0}])
    while "nope" not in reply.text and time.monotonic() < deadline:
        time.sleep(0.1)
        reply = predict(server, [{"user_id": "u1", "c": 0.2, "d": 1.0}])
    assert reply.status_code == 503 and "feature view(s) ['nope']" in reply.json()["error"]


def test_vectors_become_one_column_per_element() -> None:
    view = FeatureView("emb", "item", features=(Feature("e", "vector", dim=3),))
    assert output_columns(view) == ["e_0", "e_1", "e_2"]
    store = MemoryStore()
    store.write("emb", {"i1": ({"e": [0.1, 0.2, 0.3]}, time.time())})
    out = Enricher(store).enrich([view], {"item": ["i1", "i2"]})
    assert out["e_1"] == [0.2, None] and out["e_2"] == [0.3, None]


@pytest.mark.parametrize("policy", ["null", "default"])
def test_a_stream_view_reads_its_windows(policy: str) -> None:
    from modelport.features.aggregates import ops
    from modelport.features.online import Event
    from modelport.features.views import Aggregation, StreamSource

    aggs = (Aggregation("n", "count", None, 60.0), Aggregation("m", "max", "x", 60.0, default=-1))
    view = FeatureView(
        "s", "user_id", aggregations=aggs, source=StreamSource("events"), on_missing=policy
    )
    store = MemoryStore()
    now = time.time()
    store.apply("s", [Event("e1", "u1", ops(view, {"x": 3}, now - 1))])
    out = Enricher(store).enrich([view], {"user_id": ["u1", "u2"]}, now=now)
    assert out["n"] == [1, 0]
    assert out["m"] == [3.0, -1 if policy == "default" else None]


def test_redis_down_fails_fast_defaults_where_asked_and_recovers(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    from modelport.features.redis import RedisStore
    from tests.features_proxy import TcpProxy

    proxy = TcpProxy(("127.0.0.1", 6379))
    proxy.set("up")
    views = FeatureViewStore(deployed.registry.engine)
    strict = FeatureView("p_strict", "user_id", features=(Feature("a"), Feature("b")))
    lenient = FeatureView(
        "p_lenient",
        "user_id",
        features=(Feature("a", default=0.5), Feature("b", default=-1.0)),
        on_missing="default",
    )
    for view, endpoint in ((strict, "clf"), (lenient, "lenient")):
        views.put(view)
        spec = DeploymentSpec(deployed.get_deployment("clf").spec.variants, features=(view.name,))
        deployed.registry.set_deployment("production", endpoint, spec)
    seed = RedisStore(proxy.url)
    seed.write("p_strict", {"u1": ({"a": 0.5, "b": -1.0}, time.time())})
    server = make_server(online_store=proxy.url, feature_timeout_seconds=0.25)
    record = [{"user_id": "u1", "c": 0.2, "d": 1.0}]
    try:
        assert predict(server, record).status_code == 200
        proxy.set("silent")  # accepts, never answers: the worst case for a client
        started = time.monotonic()
        reply = predict(server, record)
        assert reply.status_code == 503 and "127.0.0.1" in reply.json()["error"]
        assert time.monotonic() - started < 2.0  # failed fast: the server does not hang
        lenient_reply = server.post(
            "/v1/endpoints/lenient/predict", json={"dataframe_records": record}
        )
        assert lenient_reply.status_code == 200  # every view it needs has defaults
        plain = server.post("/v1/endpoints/reg/predict", json={"dataframe_records": [ROW]})
        assert plain.status_code == 200  # endpoints without features are untouched
        proxy.set("up")
        assert predict(server, record).status_code == 200  # back on its own
    finally:
        seed.delete_view("p_strict")
        seed.delete_view("p_lenient")
        seed.close()
        proxy.close()


def test_stale_features_are_logged_measured_alerted_and_diagnosed(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    from modelport.alerting.rules import AlertRule, EndpointSignals, signal_value
    from modelport.monitoring.logstore import LogStore
    from modelport.monitoring.monitor import Monitor

    view = profile(on_stale="default", on_missing="default")
    server, store = serve_with(deployed, make_server, view)
    store.write("profile", {"fresh": ({"a": 0.5, "b": -1.0}, time.time())})
    store.write("profile", {"old": ({"a": 0.5, "b": -1.0}, time.time() - 7200)})
    records = [{"user_id": k, "c": 0.2, "d": 1.0} for k in ("fresh", "old", "old", "nobody")]
    assert predict(server, records).status_code == 200
    server.app.plane.prediction_log.flush()  # type: ignore[attr-defined]
    logged = LogStore(deployed.settings).query(
        "SELECT stale_features FROM predictions WHERE endpoint = 'clf' ORDER BY prediction_id"
    )
    marks = logged.column("stale_features").to_pylist()
    assert sorted(marks, key=len) == [[], ["profile"], ["profile"], ["profile"]]
    report = Monitor(deployed).run("clf", environment="production")
    assert report["features"] == {
        "rows": 4,
        "views": [{"view": "profile", "stale_ratio": 0.75}],
    }
    rule = AlertRule(name="Stale", signal="feature_staleness", threshold=0.1, min_samples=1)
    signals = EndpointSignals("clf", traffic=lambda _: {}, monitor=report)
    assert signal_value(rule, signals) == 0.75
    from datetime import UTC, datetime

    from modelport.alerting.diagnosis import Diagnoser
    from modelport.registry.watching import WatchStore

    watch = WatchStore(deployed.registry.engine)
    watch.add_monitor_run("production", "clf", "clf", 1, report)
    logs = LogStore(deployed.settings)
    diagnoser = Diagnoser(deployed.registry, logs, watch, "http://127.0.0.1:8000")
    (line,) = diagnoser._stale("production", "clf", datetime.now(UTC))
    assert line.startswith("profile: 75.0% of enriched rows missing or past the TTL")
    assert "modelport features materialize-incremental profile" in line

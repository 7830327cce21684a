"""Prometheus metrics of the predict path."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.serving.conftest import ROW


def samples(server: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.get("/metrics")
    assert response.status_code == 200
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_requests_rows_and_batches_are_counted(server: TestClient) -> None:
    for _ in range(3):
        server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROW, ROW]})
    server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [{"a": "x"}]})
    found = samples(server)
    ok = (("code", "200"), ("endpoint", "clf"), ("model", "clf"), ("version", "1"))
    assert found[("modelport_requests_total", ok)] == 3
    bad = (("code", "400"), ("endpoint", "clf"), ("model", ""), ("version", ""))
    assert found[("modelport_requests_total", bad)] == 1
    rows = (("endpoint", "clf"), ("model", "clf"), ("version", "1"))
    assert found[("modelport_predicted_rows_total", rows)] == 6
    assert found[("modelport_batch_size_rows_count", rows)] == 3
    assert found[("modelport_batch_size_rows_sum", rows)] == 6
    assert found[("modelport_batch_queue_wait_seconds_count", rows)] == 3
    assert found[("modelport_request_duration_seconds_count", (("endpoint", "clf"),))] == 4


def test_unknown_endpoints_do_not_mint_label_values(server: TestClient) -> None:
    for name in ("nope-1", "nope-2"):
        server.post(f"/v1/endpoints/{name}/predict", json={"dataframe_records": [ROW]})
    found = samples(server)
    missing = (("code", "404"), ("endpoint", "-"), ("model", ""), ("version", ""))
    assert found[("modelport_requests_total", missing)] == 2
    assert not any(dict(labels).get("endpoint", "").startswith("nope") for _, labels in found)

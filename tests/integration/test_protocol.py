"""A real server through the HTTP protocol that sends a response's head with its body:
GET, HEAD (a head whose body is not sent) and many requests on one kept-alive connection."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from modelport.client import Client
from tests.integration.conftest import LiveServer


def test_heads_bodies_and_kept_alive_connections(
    serve: Callable[..., LiveServer], deployed_clf: Client
) -> None:
    server = serve(deployed_clf.settings)
    head = httpx.head(f"{server.url}/v2/health/live", timeout=10)  # a head, no body
    assert head.status_code == 405 and head.content == b""
    body = {"dataframe_records": [{"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}]}
    with httpx.Client(base_url=server.url, timeout=10) as client:  # one connection
        answers = [client.post("/v1/endpoints/clf/predict", json=body) for _ in range(50)]
        bad = client.post("/v1/endpoints/clf/predict", content=b"{not json")
        live = client.get("/v2/health/live")
    assert {a.status_code for a in answers} == {200}
    assert all(len(a.json()["predictions"]) == 1 for a in answers)
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    assert live.status_code == 200

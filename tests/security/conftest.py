"""Fixtures of the security tier: deployed endpoints, keys, and servers with auth on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from modelport.client import Client

#: What the security tier's servers run with unless a test says otherwise.
AUTH_ON = {"auth": "on", "log_sample_rate": 0.0, "monitor_interval_seconds": 0.0}


@pytest.fixture
def make_server(make_server: Callable[..., TestClient]) -> Callable[..., TestClient]:
    """The in-process app of tests/conftest.py, auth on unless overridden."""
    return lambda **overrides: make_server(**(AUTH_ON | overrides))


@pytest.fixture
def tokens(deployed: Client) -> dict[str, str]:
    """One key per kind, by kind: admin, read, predict (any endpoint), clf (predict on
    clf only)."""
    keys = deployed.keys
    return {
        "admin": keys.create("ops", scopes=["admin"], actor="ana").token,
        "read": keys.create("grafana", scopes=["read"], actor="ana").token,
        "predict": keys.create("app", scopes=["predict"], actor="ana").token,
        "clf": keys.create("clf-only", scopes=["predict"], endpoints=["clf"]).token,
    }

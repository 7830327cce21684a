"""Fixtures shared by unit tests of more than one package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.errors import Unavailable
from modelport.features.online import MemoryStore, OnlineStore
from modelport.features.redis import RedisStore
from modelport.features.sqlite import SQLiteStore

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def online_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """Each online store in turn: in memory, SQLite in tmp_path, the real Redis."""
    made: OnlineStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "online.db")
    else:
        made = RedisStore(REDIS_URL, timeout_s=2.0)
        try:
            made.ping()
        except Unavailable as exc:
            pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
    yield made
    made.close()

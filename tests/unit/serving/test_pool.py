"""ModelPool: load states, failures, LRU eviction that spares pinned versions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from modelport.artifacts import ArtifactRef
from modelport.errors import ArtifactError, ModelLoading, Unavailable
from modelport.registry import ModelVersion
from modelport.runtimes.base import LoadContext, Prediction
from modelport.serving.pool import ModelPool
from modelport.signature import Columns, ColumnSpec, Signature


class FakeRuntime:
    flavor = "fake"
    unloaded: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self, ctx: LoadContext) -> None:
        del ctx

    def predict(self, columns: Columns) -> Prediction:
        return Prediction(outputs={"prediction": np.zeros(len(columns["a"]))})

    def unload(self) -> None:
        FakeRuntime.unloaded.append(self.name)


def version(name: str, n: int = 1, size: int = 10) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=n,
        flavor="fake",
        artifact=ArtifactRef(sha256="0" * 64, name="m", size=size),
        signature=Signature((ColumnSpec("a", "double"),)),
        task="regression",
        classes=None,
        metrics={},
        tags={},
        description="",
        owner=None,
        profile=None,
        sample_sha256=None,
        trusted=False,
        trusted_by=None,
        created_by=None,
        created_at=datetime.now(UTC),
    )


def loader(mv: ModelVersion, kind: str) -> FakeRuntime:
    del kind
    if mv.name == "broken":
        raise ArtifactError("artifact m is corrupt")
    if mv.name == "slow":
        import time

        time.sleep(0.5)
    return FakeRuntime(mv.name)


def test_least_recently_used_unpinned_version_is_evicted() -> None:
    async def scenario() -> None:
        FakeRuntime.unloaded.clear()
        pool = ModelPool(loader, max_models=2)
        pool.pin({("a", 1, "native")})
        for name in ("a", "b", "c"):
            await pool.wait_loaded(version(name))
        assert pool.state(("a", 1, "native")) == "ready"  # pinned, though least recently used
        assert pool.state(("b", 1, "native")) is None and FakeRuntime.unloaded == ["b"]
        await pool.get(version("a"), wait=0)
        await pool.wait_loaded(version("d"))
        assert pool.state(("c", 1, "native")) is None
        await pool.close()

    asyncio.run(scenario())


def test_byte_budget_evicts_too() -> None:
    async def scenario() -> None:
        pool = ModelPool(loader, max_models=10, max_bytes=25)
        await pool.wait_loaded(version("a", size=10))
        await pool.wait_loaded(version("b", size=10))
        await pool.wait_loaded(version("c", size=10))
        assert [s.version.name for s in pool.slots()] == ["b", "c"]
        await pool.close()

    asyncio.run(scenario())


def test_failed_and_loading_states_raise_503_errors() -> None:
    async def scenario() -> None:
        pool = ModelPool(loader)
        with pytest.raises(Unavailable, match="failed to load: artifact m is corrupt"):
            await pool.get(version("broken"), wait=5)
        with pytest.raises(ModelLoading, match="still loading"):
            await pool.get(version("slow"), wait=0)
        runtime = await pool.get(version("slow"), wait=5)
        assert isinstance(runtime, FakeRuntime)
        await pool.close()

    asyncio.run(scenario())

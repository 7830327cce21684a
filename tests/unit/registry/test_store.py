"""Registry store contract, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pandas as pd
import pytest

from modelport.artifacts import ArtifactRef
from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import DeploymentSpec, Registry
from modelport.signature import Signature
from modelport.uri import parse_model_uri

SIG = Signature.infer(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))


def ref(n: int) -> ArtifactRef:
    return ArtifactRef(sha256=f"{n:064x}", name="model.skops", size=10 + n)


def add_version(registry: Registry, name: str = "fraud", n: int = 1, **kw: object):
    return registry.create_version(
        name, artifact=ref(n), flavor="sklearn", signature=SIG, owner="ana@example.com", **kw
    )


def test_versions_are_numbered_and_immutable(registry_url: str) -> None:
    registry = Registry(registry_url)
    first = add_version(registry, n=1, metrics={"auc": 0.9}, tags={"team": "risk"})
    second = add_version(registry, n=2)
    assert (first.version, second.version) == (1, 2)
    again = registry.get_version("fraud", 1)
    assert again.artifact.sha256 == ref(1).sha256
    assert again.metrics == {"auc": 0.9}
    assert again.signature == SIG
    assert registry.get_model("fraud").latest_version == 2
    assert [v.version for v in registry.list_versions("fraud")] == [1, 2]
    registry.close()


def test_aliases_and_uris(registry_url: str) -> None:
    registry = Registry(registry_url)
    add_version(registry, n=1)
    add_version(registry, n=2)
    registry.set_alias("fraud", "champion", 1)
    assert registry.resolve(parse_model_uri("models:/fraud@champion")).version == 1
    registry.set_alias("fraud", "champion", 2)
    assert registry.resolve(parse_model_uri("models:/fraud@champion")).version == 2
    assert registry.resolve(parse_model_uri("models:/fraud/latest")).version == 2
    assert registry.resolve(parse_model_uri("models:/fraud/1")).version == 1
    assert registry.get_version("fraud", 2).aliases == ("champion",)
    with pytest.raises(NotFound, match="no alias 'gone'"):
        registry.resolve(parse_model_uri("models:/fraud@gone"))
    with pytest.raises(NotFound, match="no version 9"):
        registry.set_alias("fraud", "champion", 9)
    with pytest.raises(Conflict):
        registry.set_alias("fraud", "3", 1)
    registry.delete_alias("fraud", "champion")
    assert registry.get_model("fraud").aliases == {}
    registry.close()


def test_unknown_model_lists_known(registry_url: str) -> None:
    registry = Registry(registry_url)
    add_version(registry, "fraud")
    with pytest.raises(NotFound, match=r"known models: \['fraud'\]"):
        registry.get_model("frau")
    registry.close()


def test_invalid_names_are_rejected(registry_url: str) -> None:
    registry = Registry(registry_url)
    with pytest.raises(InvalidInput, match="invalid model name"):
        add_version(registry, "../etc")
    registry.close()


def test_deployments_have_revisions_and_history(registry_url: str) -> None:
    registry = Registry(registry_url)
    add_version(registry, n=1)
    add_version(registry, n=2)
    d1 = registry.set_deployment(
        "production", "fraud", DeploymentSpec.single("fraud", 1), actor="ana"
    )
    same = registry.set_deployment("production", "fraud", DeploymentSpec.single("fraud", 1))
    assert same.revision == d1.revision == 1
    d2 = registry.set_deployment(
        "production", "fraud", DeploymentSpec.single("fraud", 2), actor="bo", reason="better auc"
    )
    assert d2.revision == 2
    events = registry.history("production", "fraud")
    assert [(e.revision, e.actor) for e in events] == [(1, "ana"), (2, "bo")]
    assert events[1].previous == DeploymentSpec.single("fraud", 1).to_dict()
    assert events[1].reason == "better auc"
    with pytest.raises(NotFound, match="no version 7"):
        registry.set_deployment("production", "fraud", DeploymentSpec.single("fraud", 7))
    assert registry.get_deployment("production", "fraud").spec.primary.version == 2
    with pytest.raises(NotFound, match=r"endpoints in 'production': \['fraud'\]"):
        registry.get_deployment("production", "nope")
    registry.delete_deployment("production", "fraud")
    assert registry.list_deployments("production") == []
    registry.close()


def test_find_version_by_hash(registry_url: str) -> None:
    registry = Registry(registry_url)
    add_version(registry, n=1)
    assert registry.find_version_by_hash("fraud", ref(1).sha256).version == 1  # type: ignore[union-attr]
    assert registry.find_version_by_hash("fraud", ref(5).sha256) is None
    assert registry.find_version_by_hash("other", ref(1).sha256) is None
    registry.close()


def _register_many(url: str, start: int, count: int, out: mp.Queue[list[int]]) -> None:
    registry = Registry(url)
    out.put([add_version(registry, n=start + i).version for i in range(count)])
    registry.close()


def test_concurrent_writers_never_share_a_version_number(registry_url: str) -> None:
    Registry(registry_url).close()  # migrate first, as a server would
    ctx = mp.get_context("spawn")
    queue: mp.Queue[list[int]] = ctx.Queue()
    procs = [
        ctx.Process(target=_register_many, args=(registry_url, i * 100, 15, queue))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    numbers = [n for _ in procs for n in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(numbers) == list(range(1, 46))


def test_migrations_run_once_for_concurrent_openers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ctx = mp.get_context("spawn")
    queue: mp.Queue[list[int]] = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(url, i * 100, 3, queue)) for i in range(2)]
    for p in procs:
        p.start()
    numbers = [n for _ in procs for n in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(numbers) == list(range(1, 7))


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from modelport.registry.database import _MIGRATIONS, HEAD_REVISION

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION

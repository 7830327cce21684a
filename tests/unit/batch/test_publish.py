"""Publishing a batch run's predictions: every store, atomic replacement, refusals."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelport.batch.publish import (
    current,
    key_text,
    lookup,
    namespace_of,
    publish,
    read_manifest,
    unpublish,
)
from modelport.batch.spec import MANIFEST, ChunkRecord, JobSpec, Manifest
from modelport.client import Client
from modelport.errors import Conflict, InvalidInput, NotFound, Unavailable
from modelport.features.online import Lookup, MemoryStore, OnlineStore
from modelport.features.redis import RedisStore
from modelport.features.sqlite import SQLiteStore
from modelport.registry.precomputed import PublicationStore

REDIS_URL = "redis://127.0.0.1:6379/0"
FINISHED = "2026-01-31T06:00:00+00:00"


def write_run(
    output: Path,
    outputs: dict[str, Sequence[Any]],
    ids: dict[str, Sequence[Any]],
    *,
    run_id: str | None = None,
    model: str = "clf",
    version: int = 1,
    status: str = "succeeded",
    parts: int = 2,
    id_columns: Sequence[str] | None = None,
) -> Manifest:
    """A run's output folder as the batch engine leaves it: Parquet parts (the id
    columns, the outputs, ``model`` and ``model_version``) and ``_manifest.json``."""
    output.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(ids.values())))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    chunks = []
    for index, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        columns = {name: list(values[start:end]) for name, values in ids.items()}
        columns |= {name: list(values[start:end]) for name, values in outputs.items()}
        columns |= {"model": [model] * (end - start), "model_version": [version] * (end - start)}
        name = f"part-{index:05d}.parquet"
        pq.write_table(pa.table(columns), output / name)
        chunks.append(
            ChunkRecord(index, "input.parquet", start, end - start, end - start, 0, name, "-")
        )
    spec = JobSpec(
        model=f"models:/{model}/{version}",
        input="input.parquet",
        output=str(output),
        id_columns=tuple(ids) if id_columns is None else tuple(id_columns),
    )
    manifest = Manifest(
        run_id=run_id or uuid.uuid4().hex[:16],
        job=None,
        spec=spec.to_dict(),
        model=model,
        version=version,
        model_sha256="0" * 64,
        runtime="native",
        engine="local",
        inputs=[],
        started_at="2026-01-31T05:00:00+00:00",
        finished_at=FINISHED if status != "running" else None,
        status=status,  # type: ignore[arg-type]
        error="boom" if status == "failed" else None,
        rows_in=n,
        rows_out=n,
        chunks=chunks,
    )
    (output / MANIFEST).write_text(json.dumps(manifest.to_dict()))
    return manifest


def classifier_run(output: Path, users: Sequence[str], label: int, **kw: Any) -> Manifest:
    probabilities = [0.1, 0.9] if label else [0.9, 0.1]
    return write_run(
        output,
        {"label": [label] * len(users), "probabilities": [probabilities] * len(users)},
        {"user_id": list(users)},
        **kw,
    )


@pytest.fixture
def store(online_store: OnlineStore) -> OnlineStore:
    return online_store


@pytest.fixture
def endpoint(client: Client, store: OnlineStore) -> Iterator[str]:
    """A unique endpoint name (tests share one Redis), unpublished afterwards."""
    name = f"ep-{uuid.uuid4().hex[:10]}"
    yield name
    unpublish(client, name, store=store)


def test_a_published_run_is_looked_up_by_key(
    client: Client, store: OnlineStore, endpoint: str, tmp_path: Path
) -> None:
    manifest = write_run(
        tmp_path / "run",
        {"label": [1, 0, 1], "probabilities": [[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]},
        {"user_id": ["u1", "u2", 3]},
    )
    pub = publish(client, manifest, output=tmp_path / "run", endpoint=endpoint, store=store)

    assert (pub.run_id, pub.model, pub.version, pub.rows) == (manifest.run_id, "clf", 1, 3)
    assert pub.outputs == ("label", "probabilities")  # model, model_version left out
    assert pub.id_columns == ("user_id",)
    assert pub.computed_at.isoformat() == FINISHED
    assert pub.namespace == namespace_of("production", endpoint, manifest.run_id)
    assert current(client, endpoint) == pub

    found = lookup(client, endpoint, ["u1", "3", "nobody"], store=store)
    assert found["u1"] == {
        "key": "u1",
        "predictions": 1,
        "probabilities": [0.2, 0.8],
        "model": "clf",
        "version": 1,
        "computed_at": FINISHED,
        "run_id": manifest.run_id,
        "source": "precomputed",
    }
    assert found["3"] is not None and found["3"]["predictions"] == 1  # 3 and "3": one key
    assert found["nobody"] is None


def test_several_id_columns_make_one_key_joined_by_a_bar(
    client: Client, store: OnlineStore, endpoint: str, tmp_path: Path
) -> None:
    manifest = write_run(
        tmp_path / "run",
        {"prediction": [1.5, 2.5]},
        {"store_id": [7, 8], "day": ["2026-01-01", "2026-01-02"]},
        parts=1,
    )
    publish(client, manifest, output=tmp_path / "run", endpoint=endpoint, store=store)
    assert key_text([7, "2026-01-01"]) == "7|2026-01-01"
    found = lookup(client, endpoint, ["7|2026-01-01", "8|2026-01-02", "7"], store=store)
    assert [v["predictions"] if v else None for v in found.values()] == [1.5, 2.5, None]


def test_a_new_run_replaces_the_old_one_and_its_rows_are_deleted(
    client: Client, store: OnlineStore, endpoint: str, tmp_path: Path
) -> None:
    first = classifier_run(tmp_path / "one", ["u1", "u2"], 0)
    second = classifier_run(tmp_path / "two", ["u2", "u3"], 1)
    old = publish(client, first, output=tmp_path / "one", endpoint=endpoint, store=store)
    new = publish(
        client, second, output=tmp_path / "two", endpoint=endpoint, store=store, retire_after_s=0
    )

    found = lookup(client, endpoint, ["u1", "u2", "u3"], store=store)
    assert found["u1"] is None  # not in the new run: nothing of the old one is left
    assert found["u2"] is not None and found["u2"]["run_id"] == second.run_id
    assert found["u2"]["predictions"] == 1
    (rows,) = store.read([Lookup(old.namespace, "rows", ["u1", "u2"])])
    assert rows == [None, None]  # the old namespace is gone
    assert old.namespace != new.namespace
    with client.registry.engine.begin() as conn:
        retired = conn.exec_driver_sql(
            "SELECT retired_namespace FROM precomputed_publications WHERE endpoint = ?",
            (endpoint,),
        ).scalar()
    assert retired is None


def test_republishing_the_current_run_keeps_it_served(
    client: Client, store: OnlineStore, endpoint: str, tmp_path: Path
) -> None:
    run = classifier_run(tmp_path / "run", ["u1"], 1)
    publish(client, run, output=tmp_path / "run", endpoint=endpoint, store=store)
    publish(client, run, output=tmp_path / "run", endpoint=endpoint, store=store, retire_after_s=0)
    assert lookup(client, endpoint, ["u1"], store=store)["u1"] is not None


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_reader_during_a_publish_sees_one_run_whole(
    client: Client, tmp_path: Path, kind: str
) -> None:
    store: OnlineStore = (
        SQLiteStore(tmp_path / "online.db") if kind == "sqlite" else RedisStore(REDIS_URL, 2.0)
    )
    endpoint = f"ep-{uuid.uuid4().hex[:10]}"
    users = [f"u{i}" for i in range(12_000)]  # three store writes per run
    first = classifier_run(tmp_path / "one", users, 0, parts=3)
    second = classifier_run(tmp_path / "two", users, 1, parts=3)
    publish(client, first, output=tmp_path / "one", endpoint=endpoint, store=store)
    seen: list[tuple[set[Any], set[Any], int]] = []
    done = threading.Event()

    def read() -> None:
        probe = users[::600]
        while not done.is_set():
            found = lookup(client, endpoint, probe, store=store)
            answers = [a for a in found.values() if a is not None]
            runs = {a["run_id"] for a in answers}
            labels = {a["predictions"] for a in answers}
            seen.append((runs, labels, len(probe) - len(answers)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        publish(
            client,
            second,
            output=tmp_path / "two",
            endpoint=endpoint,
            store=store,
            retire_after_s=0.3,
        )
        first_user = lookup(client, endpoint, users[:1], store=store)[users[0]]
        assert first_user is not None and first_user["run_id"] == second.run_id
    finally:
        done.set()
        reader.join()
        unpublish(client, endpoint, store=store)
        store.close()
    assert len(seen) > 3
    assert all(len(runs) == 1 and len(labels) == 1 and not absent for runs, labels, absent in seen)
    assert {next(iter(runs)) for runs, _, _ in seen} == {first.run_id, second.run_id}


def test_a_run_without_id_columns_is_refused(client: Client, tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", {"prediction": [1.0]}, {"user_id": ["u1"]}, id_columns=())
    with pytest.raises(InvalidInput, match="has no id columns") as caught:
        publish(client, run, output=tmp_path / "run", endpoint="churn", store=MemoryStore())
    assert "--id-column" in str(caught.value)
    assert current(client, "churn") is None


@pytest.mark.parametrize("status", ["failed", "running"])
def test_a_run_that_did_not_succeed_is_refused(client: Client, tmp_path: Path, status: str) -> None:
    run = classifier_run(tmp_path / "run", ["u1"], 1, status=status)
    with pytest.raises(Conflict, match=f"is {status}.*only a run that succeeded"):
        publish(client, run, output=tmp_path / "run", endpoint="churn", store=MemoryStore())
    assert current(client, "churn") is None


def test_a_run_of_another_model_than_the_endpoint_serves_is_refused(
    client: Client, tmp_path: Path, sklearn_classifier: tuple[Path, Any]
) -> None:
    path, frame = sklearn_classifier
    client.register_model("other", path, owner="ana@example.com", sample_input=frame)
    client.deploy("churn", "models:/other/1")
    run = classifier_run(tmp_path / "run", ["u1"], 1)
    with pytest.raises(
        Conflict, match=r"scored model 'clf', but production/churn serves \['other'\]"
    ):
        publish(client, run, output=tmp_path / "run", endpoint="churn", store=MemoryStore())


def test_a_failed_publish_leaves_the_old_run_served_and_no_rows_behind(
    client: Client, tmp_path: Path
) -> None:
    store = MemoryStore()
    first = classifier_run(tmp_path / "one", ["u1"], 0)
    publish(client, first, output=tmp_path / "one", endpoint="churn", store=store)
    second = classifier_run(tmp_path / "two", ["u1", "u2", "u3", "u4"], 1)
    broken = tmp_path / "two" / second.chunks[1].file
    pq.write_table(pa.table({"label": [1], "probabilities": [[0.1, 0.9]]}), broken)

    with pytest.raises(InvalidInput, match="has no id column"):
        publish(client, second, output=tmp_path / "two", endpoint="churn", store=store)
    held = current(client, "churn")
    assert held is not None and held.run_id == first.run_id
    assert lookup(client, "churn", ["u1"], store=store)["u1"] is not None
    assert {view for view, _ in store.rows} == {held.namespace}


class FlakyDeletes(MemoryStore):
    """A store whose next ``delete_view`` fails, as a Redis that just went away."""

    fail_next = False

    def delete_view(self, view: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("the store is away")
        super().delete_view(view)


def test_rows_a_publish_could_not_delete_are_deleted_by_the_next(
    client: Client, tmp_path: Path
) -> None:
    store = FlakyDeletes()
    runs = [classifier_run(tmp_path / str(i), ["u1"], i % 2) for i in range(3)]
    publish(client, runs[0], output=tmp_path / "0", endpoint="churn", store=store)
    store.fail_next = True
    publish(client, runs[1], output=tmp_path / "1", endpoint="churn", store=store, retire_after_s=0)
    assert len({view for view, _ in store.rows}) == 2  # the first run's rows are left
    publish(client, runs[2], output=tmp_path / "2", endpoint="churn", store=store, retire_after_s=0)
    held = current(client, "churn")
    assert held is not None and {view for view, _ in store.rows} == {held.namespace}


def test_unpublish_forgets_the_run_and_its_rows(client: Client, tmp_path: Path) -> None:
    store = MemoryStore()
    run = classifier_run(tmp_path / "run", ["u1"], 1)
    publish(client, run, output=tmp_path / "run", endpoint="churn", store=store)
    gone = unpublish(client, "churn", store=store)
    assert gone is not None and gone.run_id == run.run_id
    assert current(client, "churn") is None and not store.rows
    with pytest.raises(NotFound, match="no predictions are published for endpoint 'churn'"):
        lookup(client, "churn", ["u1"], store=store)


def test_read_manifest(tmp_path: Path) -> None:
    run = classifier_run(tmp_path / "run", ["u1"], 1)
    assert read_manifest(tmp_path / "run") == run
    with pytest.raises(NotFound, match="is not a batch run's output folder"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(InvalidInput, match="not a readable run manifest"):
        read_manifest(tmp_path)


def test_the_publication_row_is_one_per_endpoint(client: Client, tmp_path: Path) -> None:
    store = MemoryStore()
    for env in ("staging", "production"):
        run = classifier_run(tmp_path / env, ["u1"], 1)
        publish(client, run, output=tmp_path / env, endpoint="churn", env=env, store=store)
    every = PublicationStore(client.registry.engine).all()
    assert [(p.environment, p.endpoint) for p in every] == [
        ("production", "churn"),
        ("staging", "churn"),
    ]
    assert every[0].to_dict()["computed_at"] == FINISHED


# -- the CLI -----------------------------------------------------------------------


@pytest.fixture
def cli(client: Client) -> Callable[..., Any]:
    import typer

    from modelport.cli import batch_publish
    from modelport.cli.common import Ctx

    app = typer.Typer()
    batch_publish.register(app)

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), obj=Ctx(client.settings, as_json=True))

    return run


def test_the_cli_publishes_a_folder_and_looks_keys_up(
    cli: Callable[..., Any], client: Client, tmp_path: Path
) -> None:
    run = classifier_run(tmp_path / "run", ["u1", "u2"], 1)
    done = cli("publish", str(tmp_path / "run"), "--endpoint", "churn")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["run_id"] == run.run_id

    found = cli("lookup", "churn", "u2")
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["probabilities"] == [0.1, 0.9]
    missing = cli("lookup", "churn", "nobody")
    assert missing.exit_code == 4 and "no prediction for key 'nobody'" in missing.output


def test_the_cli_refuses_a_failed_run(cli: Callable[..., Any], tmp_path: Path) -> None:
    run = classifier_run(tmp_path / "run", ["u1"], 1, status="failed")
    done = cli("publish", str(tmp_path / "run"), "--endpoint", "churn")
    assert done.exit_code == 5
    assert f"run {run.run_id} is failed: boom" in done.output


def test_the_publication_store_on_each_registry_backend(registry_url: str) -> None:
    from datetime import UTC, datetime

    from modelport.registry import Registry
    from modelport.registry.precomputed import Publication

    registry = Registry(registry_url)
    store = PublicationStore(registry.engine)
    now = datetime(2026, 1, 31, 6, tzinfo=UTC)

    def publication(run: str) -> Publication:
        namespace = namespace_of("production", "churn", run)
        return Publication(
            "production", "churn", run, namespace, "clf", 1, ("user_id",), ("label",), 3, now, now
        )

    try:
        assert store.flip(publication("r1")) == []
        assert store.flip(publication("r1")) == []  # the same run again: nothing retired
        old = namespace_of("production", "churn", "r1")
        assert store.flip(publication("r2")) == [old]
        assert store.flip(publication("r3")) == [namespace_of("production", "churn", "r2"), old]
        held = store.current("production", "churn")
        assert held == publication("r3")
        store.retired("production", "churn", namespace_of("production", "churn", "r2"))
        gone, namespaces = store.delete("production", "churn")
        assert gone == held and namespaces == [held.namespace]
        assert store.current("production", "churn") is None and store.all() == []
    finally:
        registry.close()

"""The features API: materialize into the online store (whole and incremental), push,
online reads; and the same through the CLI and over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelport.cli.main import app as cli
from modelport.client import Client
from modelport.errors import InvalidInput, NotFound
from modelport.features.api import Features
from modelport.features.online import MemoryStore
from modelport.features.sqlite import SQLiteStore
from modelport.features.views import BatchSource, Feature, FeatureView
from modelport.serving.app import create_app
from modelport.settings import Settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def profile_view(path: Path, ttl_s: float | None = 3600.0) -> FeatureView:
    return FeatureView(
        name="profile",
        entity="user_id",
        features=(Feature("age", "long"), Feature("emb", "vector", dim=2)),
        source=BatchSource("ts", path=str(path)),
        ttl_s=ttl_s,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """u1 at 0h, 1h and 4h; u2 at 3h; u3 at 5h."""
    table = pa.table(
        {
            "user_id": ["u1", "u1", "u2", "u1", "u3"],
            "ts": [hours(0), hours(1), hours(3), hours(4), hours(5)],
            "age": [30, 31, 40, 34, 50],
            "emb": [[0.0, 0.0], [1.0, 1.0], [3.0, 3.0], [4.0, 4.0], [5.0, 5.0]],
        }
    )
    path = tmp_path / "profile.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture(params=["memory", "sqlite"])
def features(
    request: pytest.FixtureRequest, client: Client, source: Path, tmp_path: Path
) -> Iterator[Features]:
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "online.db")
    api = Features(client, store=store)
    api.apply(profile_view(source))
    yield api
    api.close()


def ages(features: Features, *keys: str) -> dict[str, int | None]:
    found = features.online("profile", list(keys))
    return {k: None if v is None else v["values"]["age"] for k, v in found.items()}


def test_materialize_then_read_online(features: Features) -> None:
    result = features.materialize("profile", end=hours(3.5))
    assert result == {
        "view": "profile",
        "start": None,
        "end": hours(3.5).isoformat(),
        "entities": 2,
        "written": 2,
    }
    found = features.online("profile", ["u1", "u2", "u3"])
    assert found["u3"] is None
    u1 = found["u1"]
    assert u1 is not None
    assert u1["values"] == {"age": 31, "emb": [1.0, 1.0]}
    assert u1["event_ts"] == hours(1)
    assert u1["stale"] is True and u1["age_s"] > 3600  # the ttl is an hour

    again = features.materialize("profile", hours(0), hours(3.5))
    assert again["entities"] == 2 and ages(features, "u1", "u2") == {"u1": 31, "u2": 40}
    with pytest.raises(InvalidInput, match="the window is empty"):
        features.materialize("profile", hours(2), hours(1))
    with pytest.raises(NotFound, match="'nope'"):
        features.materialize("nope")


def test_incremental_continues_where_it_stopped(features: Features, source: Path) -> None:
    first = features.materialize_incremental("profile", end=hours(2))
    assert (first["start"], first["entities"]) == (None, 1)
    assert ages(features, "u1", "u2") == {"u1": 31, "u2": None}
    assert features.views.materialized_until("profile") == hours(2)

    repeat = features.materialize_incremental("profile", end=hours(2))
    assert (repeat["entities"], repeat["written"]) == (0, 0)
    second = features.materialize_incremental("profile", end="2024-05-01T04:30:00+00:00")
    assert second["start"] == hours(2).isoformat() and second["entities"] == 2
    assert ages(features, "u1", "u2", "u3") == {"u1": 34, "u2": 40, "u3": None}
    assert features.materialize_incremental("profile", end=hours(4.5))["entities"] == 0

    features.apply(profile_view(source, ttl_s=7200.0))  # a changed spec starts over
    assert features.views.materialized_until("profile") is None
    assert features.materialize_incremental("profile", end=hours(9))["entities"] == 3


def test_push_online_offline_and_both(features: Features) -> None:
    now = datetime.now(UTC)
    result = features.push(
        "profile",
        [{"user_id": "u7", "age": 7, "emb": [7, 7]},
         {"user_id": "u8", "ts": now - timedelta(hours=2), "age": 8, "emb": [8, 8]},
         {"user_id": "u8", "ts": now - timedelta(hours=3), "age": 0, "emb": [0, 0]}],
    )  # fmt: skip
    assert result == {"view": "profile", "rows": 3, "online": 2, "offline": None}
    found = features.online("profile", ["u7", "u8"])
    assert found["u7"] is not None and found["u7"]["stale"] is False
    assert found["u8"] is not None and found["u8"]["values"]["age"] == 8
    assert found["u8"]["stale"] is True  # two hours old, the ttl is one
    assert not features.offline_dir("profile").exists()

    frame = pd.DataFrame({"user_id": ["u9"], "ts": [now], "age": [9], "emb": [[9.0, 9.0]]})
    offline = features.push("profile", frame, to="offline")
    assert offline["online"] is None and Path(offline["offline"]).exists()
    assert ages(features, "u9") == {"u9": None}
    both = features.push("profile", frame, to="both")
    assert both["online"] == 1 and ages(features, "u9") == {"u9": 9}
    assert len(list(features.offline_dir("profile").glob("*.parquet"))) == 2


def test_a_bad_push_writes_nothing(features: Features) -> None:
    good = {"user_id": "u1", "age": 1, "emb": [1, 1]}
    bad = [
        ({"user_id": "u2", "age": 1.5, "emb": [1, 1]}, r"rows\[1\]\.age is 1\.5"),
        ({"user_id": "u2", "age": 2, "emb": [1, 1, 1]}, r"rows\[1\]\.emb holds 3 values"),
        ({"user_id": "u2", "age": 2}, r"rows\[1\] lacks the column\(s\) \['emb'\]"),
        ({**good, "user_id": "u2", "agee": 2}, r"\['agee'\] that view profile does not have"),
    ]
    for row, message in bad:
        with pytest.raises(InvalidInput, match=message):
            features.push("profile", [good, row], to="both")
    assert ages(features, "u1", "u2") == {"u1": None, "u2": None}
    assert not features.offline_dir("profile").exists()
    with pytest.raises(InvalidInput, match="push to 'nowhere'"):
        features.push("profile", [good], to="nowhere")  # type: ignore[arg-type]


def test_delete_view_clears_the_online_store(features: Features, source: Path) -> None:
    features.materialize("profile")
    features.delete_view("profile")
    with pytest.raises(NotFound):
        features.get_view("profile")
    features.apply(profile_view(source))
    assert ages(features, "u1") == {"u1": None}
    assert [v.name for v in features.list_views()] == ["profile"]


def test_incremental_progress_on_each_registry(
    registry_url: str, tmp_path: Path, source: Path
) -> None:
    client = Client(Settings(home=tmp_path / "home", registry_url=registry_url))
    api = Features(client, store=MemoryStore())
    try:
        api.apply(profile_view(source))
        assert api.materialize_incremental("profile", end=hours(3.5))["entities"] == 2
        assert api.views.materialized_until("profile") == hours(3.5)
        assert (
            api.materialize_incremental("profile", end=hours(6))["start"] == hours(3.5).isoformat()
        )
    finally:
        client.close()


def test_client_features_is_built_once(client: Client) -> None:
    assert client.features is client.features
    assert client.features.list_views() == []


# -- CLI ----------------------------------------------------------------------------


def test_cli_materialize_get_history(tmp_path: Path, source: Path) -> None:
    home = tmp_path / "cli-home"
    client = Client(Settings(home=home))
    client.features.apply(profile_view(source))
    client.close()
    runner = CliRunner()
    env = {"MODELPORT_HOME": str(home), "MODELPORT_ONLINE_STORE": "sqlite"}

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, ["--json", "features", *args], env=env)
        assert result.exit_code == code, result.output
        return result.stdout

    listed = json.loads(run("list"))
    assert [v["name"] for v in listed] == ["profile"]
    done = json.loads(run("materialize-incremental", "profile", "--end", hours(2).isoformat()))
    assert done["entities"] == 1
    got = json.loads(run("get", "profile", "u1"))
    assert got["values"] == {"age": 31, "emb": [1.0, 1.0]}
    assert got["event_ts"] == hours(1).isoformat()
    run("get", "profile", "u3", code=4)
    assert json.loads(run("materialize", "profile"))["entities"] == 3
    assert json.loads(run("get", "profile", "u3"))["values"]["age"] == 50

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"user_id": "u5", "ts": "2024-05-01T02:00:00Z", "age": 5, "emb": [5, 5]}\n')
    assert json.loads(run("push", "profile", "--file", str(rows), "--to", "both"))["online"] == 1

    entities = tmp_path / "entities.csv"
    entities.write_text(
        "user_id,ts\nu1,2024-05-01T00:30:00Z\nu1,2024-05-01T04:00:00Z\nu5,2024-05-01T03:00:00Z\n"
    )
    target = tmp_path / "train.parquet"
    written = json.loads(run("history", "profile", "--entities", str(entities), "-o", str(target)))
    assert written == {"rows": 3, "output": str(target)}
    assert list(pd.read_parquet(target)["age"]) == [30, 34, 5]
    inline = json.loads(run("history", "profile", "--entities", str(entities)))
    assert [r["age"] for r in inline] == [30, 34, 5]


# -- HTTP ---------------------------------------------------------------------------


@pytest.fixture
def server(settings: Settings, source: Path) -> Iterator[TestClient]:
    settings = settings.model_copy(update={"online_store": "memory"})
    client = Client(settings)
    client.features.apply(profile_view(source))
    with TestClient(create_app(settings, client=client)) as test_client:
        yield test_client
    client.close()


def test_http_push_then_get(server: TestClient) -> None:
    listed = server.get("/v1/features")
    assert listed.status_code == 200
    assert [v["name"] for v in listed.json()["views"]] == ["profile"]

    pushed = server.post(
        "/v1/features/profile/push",
        json={"rows": [{"user_id": "u1", "age": 3, "emb": [1, 2]}], "to": "online"},
    )
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["online"] == 1
    got = server.get("/v1/features/profile/u1")
    assert got.status_code == 200
    body = got.json()
    assert body["values"] == {"age": 3, "emb": [1.0, 2.0]} and body["stale"] is False
    assert datetime.fromisoformat(body["event_ts"]) <= datetime.now(UTC)


def test_http_errors_name_what_is_wrong(server: TestClient) -> None:
    missing_key = server.get("/v1/features/profile/u404")
    assert missing_key.status_code == 404 and "'u404'" in missing_key.json()["error"]
    missing_view = server.get("/v1/features/nope/u1")
    assert missing_view.status_code == 404 and "'nope'" in missing_view.json()["error"]
    bad_type = server.post(
        "/v1/features/profile/push", json={"rows": [{"user_id": "u1", "age": "x", "emb": [1, 2]}]}
    )
    assert bad_type.status_code == 400 and "rows[0].age" in bad_type.json()["error"]
    bad_target = server.post("/v1/features/profile/push", json={"rows": [], "to": "moon"})
    assert bad_target.status_code == 400 and "'moon'" in bad_target.json()["error"]
    assert server.post("/v1/features/nope/push", json={"rows": []}).status_code == 404

"""Scoring a chunk gives what an online request gives for the same rows (the same
checks, features and outputs), and bad rows are named or set aside by policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from modelport.batch.joins import FeatureJoin
from modelport.batch.scoring import Scorer
from modelport.batch.spec import JobSpec
from modelport.client import Client
from modelport.errors import InvalidInput, NotFound
from modelport.features.api import Features
from modelport.features.online import MemoryStore
from modelport.features.views import BatchSource, Feature, FeatureView
from modelport.registry import DeploymentSpec, ModelVersion
from modelport.runtimes.loading import load_runtime
from modelport.serving.app import create_app

NOW = datetime.now(UTC).replace(microsecond=0)


def spec(**options: Any) -> JobSpec:
    return JobSpec(**{"model": "models:/clf/1", "input": "-", "output": "-", **options})


@pytest.fixture
def clf(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]) -> ModelVersion:
    path, frame = sklearn_classifier
    return client.register_model("clf", path, sample_input=frame)


@pytest.fixture
def rows(sklearn_classifier: tuple[Path, pd.DataFrame]) -> pd.DataFrame:
    frame = sklearn_classifier[1].head(60).copy()
    frame.insert(0, "user_id", [f"u{i % 7}" for i in range(len(frame))])
    return frame


@pytest.fixture
def opened(client: Client) -> Iterator[list[Scorer]]:
    scorers: list[Scorer] = []
    yield scorers
    for scorer in scorers:
        scorer.close()


def open_scorer(client: Client, opened: list[Scorer], **options: Any) -> Scorer:
    scorer = Scorer.open(client.settings, spec(**options), now=NOW)
    opened.append(scorer)
    return scorer


def test_outputs_equal_in_process_predictions(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer]
) -> None:
    table = pa.Table.from_pandas(rows, preserve_index=False)
    native = open_scorer(client, opened, runtime="native", id_columns=("user_id",))
    out, rejects = native.score(table, source="rows.parquet")
    assert rejects is None
    assert out.column_names == ["user_id", "label", "probabilities", "model", "model_version"]
    assert out.schema.field("probabilities").type == pa.list_(pa.float64())
    expected = client.predict("models:/clf/1", rows[["a", "b", "c", "d"]])
    assert out.column("user_id").to_pylist() == rows["user_id"].tolist()
    assert out.column("label").to_pylist() == expected.outputs["label"].tolist()
    assert out.column("probabilities").to_pylist() == expected.outputs["probabilities"].tolist()
    assert set(out.column("model").to_pylist()) == {"clf"}
    assert set(out.column("model_version").to_pylist()) == {1}

    compiled = open_scorer(client, opened)  # auto: the ONNX form registration verified
    assert compiled.kind == "compiled"
    runtime = load_runtime(clf, client.artifacts, kind="compiled")
    online = runtime.predict(clf.signature.coerce_any({c: rows[c].to_numpy() for c in "abcd"}))
    out, _ = compiled.score(table)
    assert out.column("probabilities").to_pylist() == online.outputs["probabilities"].tolist()


def test_outputs_equal_the_servers_answers(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer]
) -> None:
    client.deploy("clf", "models:/clf/1")
    with TestClient(create_app(client.settings, client=Client(client.settings))) as server:
        body = {
            "dataframe_split": {"columns": list("abcd"), "data": rows[list("abcd")].values.tolist()}
        }
        reply = server.post("/v1/endpoints/clf/predict", json=body)
    assert reply.status_code == 200, reply.text
    out, _ = open_scorer(client, opened).score(pa.Table.from_pandas(rows, preserve_index=False))
    assert out.column("label").to_pylist() == reply.json()["predictions"]
    assert out.column("probabilities").to_pylist() == reply.json()["probabilities"]


def test_a_regressor_gives_prediction(
    client: Client, sklearn_regressor: tuple[Path, pd.DataFrame], opened: list[Scorer]
) -> None:
    path, frame = sklearn_regressor
    client.register_model("reg", path, sample_input=frame)
    scorer = open_scorer(client, opened, model="models:/reg/1", runtime="native")
    out, _ = scorer.score(pa.Table.from_pandas(frame, preserve_index=False))
    assert out.column_names == ["prediction", "model", "model_version"]
    expected = client.predict("models:/reg/1", frame).outputs["prediction"]
    assert out.column("prediction").to_pylist() == expected.tolist()


def with_holes(rows: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(rows, preserve_index=False)
    b = rows["b"].to_numpy().copy()
    b[[3, 7]] = np.nan
    c = pa.array(rows["c"].tolist()[:5] + [None] + rows["c"].tolist()[6:])
    table = table.set_column(table.schema.get_field_index("b"), "b", pa.array(b))
    return table.set_column(table.schema.get_field_index("c"), "c", c)


def test_bad_rows_fail_the_chunk_naming_file_row_and_column(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer]
) -> None:
    scorer = open_scorer(client, opened)
    with pytest.raises(InvalidInput) as caught:
        scorer.score(with_holes(rows), source="data/part-1.parquet", offset=100)
    # the first bad row of the chunk is its 4th (b), file row 100 + 4
    assert caught.value.message.startswith("data/part-1.parquet, row 104: column 'b' has a missing")
    assert "--on-bad-rows skip" in (caught.value.hint or "")


def test_skipped_bad_rows_go_to_rejects_with_the_reason(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer]
) -> None:
    scorer = open_scorer(client, opened, on_bad_rows="skip", id_columns=("user_id",))
    out, rejects = scorer.score(with_holes(rows), source="p.parquet", offset=10)
    assert rejects is not None
    assert rejects.column("row").to_pylist() == [14, 16, 18]
    assert rejects.column("column").to_pylist() == ["b", "c", "b"]
    assert rejects.column("source").to_pylist() == ["p.parquet"] * 3
    assert "has a missing value (null/NaN)" in rejects.column("reason")[0].as_py()
    assert rejects.column("user_id").to_pylist() == rows["user_id"].iloc[[3, 5, 7]].tolist()
    good = rows.drop(index=rows.index[[3, 5, 7]])
    assert out.column("user_id").to_pylist() == good["user_id"].tolist()
    expected = client.predict("models:/clf/1", good[list("abcd")]).outputs["label"]
    assert out.column("label").to_pylist() == expected.tolist()


def test_csv_text_that_is_no_number_is_a_bad_row(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer]
) -> None:
    text = rows.astype({c: str for c in "abcd"})
    text.loc[text.index[2], "a"] = "abc"
    table = pa.Table.from_pandas(text, preserve_index=False)
    with pytest.raises(InvalidInput, match=r"^rows\.csv, line 4: column 'a' expects double, got"):
        open_scorer(client, opened).score(table, source="rows.csv")
    skipping = open_scorer(client, opened, on_bad_rows="skip", runtime="native")
    out, rejects = skipping.score(table, source="rows.csv")
    assert rejects is not None and rejects.column("row").to_pylist() == [4]
    assert rejects.column("a").to_pylist() == ["abc"]  # the row as it was read
    expected = client.predict("models:/clf/1", rows.drop(index=rows.index[2])[list("abcd")])
    assert out.column("probabilities").to_pylist() == expected.outputs["probabilities"].tolist()


def test_every_row_bad_and_a_missing_column(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer]
) -> None:
    scorer = open_scorer(client, opened, on_bad_rows="skip")
    table = pa.Table.from_pandas(rows.assign(a=np.nan), preserve_index=False)
    out, rejects = scorer.score(table)
    assert out.num_rows == 0 and rejects is not None and rejects.num_rows == len(rows)
    assert out.column_names == ["label", "probabilities", "model", "model_version"]
    with pytest.raises(InvalidInput, match=r"x\.parquet has no column\(s\) \['d'\]"):
        scorer.score(table.drop_columns(["d"]), source="x.parquet")


# -- feature views ------------------------------------------------------------------


def profile_view(tmp_path: Path, **policy: Any) -> FeatureView:
    """a and b of users u0..u4 at 3 h ago and 1 h ago; u5 and u6 have none."""
    stamps = [NOW - timedelta(hours=3), NOW - timedelta(hours=1)]
    table = pa.table(
        {
            "user_id": [f"u{i}" for i in range(5) for _ in stamps],
            "ts": stamps * 5,
            "a": [0.1 * i + j for i in range(5) for j in range(2)],
            "b": [-0.2 * i - j for i in range(5) for j in range(2)],
        }
    )
    pq.write_table(table, tmp_path / "profile.parquet")
    features = (Feature("a", default=0.0), Feature("b", default=0.0))
    source = BatchSource("ts", path=str(tmp_path / "profile.parquet"))
    return FeatureView("profile", "user_id", features=features, source=source, **policy)


def test_latest_features_equal_online_enrichment(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer], tmp_path: Path
) -> None:
    view = profile_view(tmp_path, on_missing="default")
    client.features.apply(view)
    client.deploy("clf", "models:/clf/1")
    deployment = client.get_deployment("clf").spec
    client.registry.set_deployment(
        "production", "clf", DeploymentSpec(deployment.variants, features=("profile",))
    )
    settings = client.settings.model_copy(update={"online_store": "memory"})
    requests = rows[["user_id", "c", "d"]]
    with TestClient(create_app(settings, client=Client(settings))) as server:
        store = server.app.plane.enricher.store  # type: ignore[attr-defined]
        Features(client, store=store).materialize("profile")
        body = {"dataframe_split": {"columns": list(requests), "data": requests.values.tolist()}}
        reply = server.post("/v1/endpoints/clf/predict", json=body)
    assert reply.status_code == 200, reply.text
    scorer = open_scorer(client, opened, features=("profile",))
    assert scorer.input_columns == ["user_id", "c", "d"]
    out, rejects = scorer.score(pa.Table.from_pandas(requests, preserve_index=False))
    assert rejects is None
    assert out.column("probabilities").to_pylist() == reply.json()["probabilities"]


def test_a_views_error_policy_makes_bad_rows(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer], tmp_path: Path
) -> None:
    client.features.apply(profile_view(tmp_path, on_missing="error"))
    table = pa.Table.from_pandas(rows[["user_id", "c", "d"]], preserve_index=False)
    with pytest.raises(InvalidInput, match=r"rows\.parquet, row 6, column 'user_id': feature view"):
        open_scorer(client, opened, features=("profile",)).score(table, source="rows.parquet")
    skipping = open_scorer(client, opened, features=("profile",), on_bad_rows="skip")
    out, rejects = skipping.score(table)
    assert rejects is not None
    assert set(rejects.column("user_id").to_pylist()) == {"u5", "u6"}
    assert (
        "feature view 'profile' has no values for user_id='u5'"
        in rejects.column("reason")[0].as_py()
    )
    assert out.num_rows + rejects.num_rows == len(rows)
    with pytest.raises(NotFound, match="feature view 'nope' does not exist"):
        open_scorer(client, opened, features=("nope",))


def test_point_in_time_features_equal_history(
    client: Client, clf: ModelVersion, rows: pd.DataFrame, opened: list[Scorer], tmp_path: Path
) -> None:
    view = profile_view(tmp_path)
    features = Features(client, store=MemoryStore())
    features.apply(view)
    # a pushed row at the same time as a source row wins, as in history
    tie = NOW - timedelta(hours=1)
    features.push("profile", [{"user_id": "u1", "ts": tie, "a": 9.0, "b": 9.0}], to="offline")
    requests = rows[["user_id", "c", "d"]].assign(
        ts=[NOW - timedelta(minutes=30 * (i % 8)) for i in range(len(rows))]
    )
    joined = features.history("profile", requests, at_column="ts")
    known = joined.dropna(subset=["a"])
    scorer = open_scorer(
        client, opened, features=("profile",), at_column="ts", on_bad_rows="skip", runtime="native"
    )
    out, rejects = scorer.score(pa.Table.from_pandas(requests, preserve_index=False))
    assert rejects is not None and rejects.num_rows == len(joined) - len(known)
    expected = client.predict("models:/clf/1", known[list("abcd")])
    assert out.column("label").to_pylist() == expected.outputs["label"].tolist()
    assert out.column("probabilities").to_pylist() == expected.outputs["probabilities"].tolist()
    assert 9.0 in known["a"].tolist()


def test_vectors_and_defaults_in_a_join(tmp_path: Path) -> None:
    view = FeatureView(
        "emb",
        "item",
        features=(Feature("e", "vector", dim=2, default=[7.0, 8.0]), Feature("n", "long")),
        source=BatchSource("ts", path=str(tmp_path / "emb.parquet")),
        on_missing="default",
        ttl_s=3600.0,
        on_stale="null",
    )
    pq.write_table(
        pa.table(
            {
                "item": [1, 2],
                "ts": [NOW - timedelta(minutes=5), NOW - timedelta(hours=2)],
                "e": [[0.1, 0.2], [0.3, 0.4]],
                "n": [5, 6],
            }
        ),
        tmp_path / "emb.parquet",
    )
    join = FeatureJoin.open(view, tmp_path / "none", at_column=None, now=NOW)
    columns, errors = join.join(pa.table({"item": [1, 3, 2]}), None)
    join.close()
    assert errors == {}
    assert columns["e_0"].to_pylist() == [0.1, 7.0, None]  # found, missing: default, stale: null
    assert columns["e_1"].to_pylist() == [0.2, 8.0, None]
    assert columns["n"].to_pylist() == [5, None, None]

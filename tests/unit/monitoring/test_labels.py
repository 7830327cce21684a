"""Delayed labels: written durably, imported in bulk, joined with the prediction log."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from modelport.artifacts import ArtifactRef
from modelport.cli import feedback as cli
from modelport.cli.common import Ctx
from modelport.client import Client
from modelport.errors import InvalidInput
from modelport.monitoring.labels import LabelStore, label_value, parse_time
from modelport.registry import Registry
from modelport.settings import Settings
from modelport.signature import Signature

DAY1 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
ARTIFACT = ArtifactRef(sha256="0" * 64, name="model.bin", size=0)
SIGNATURE = Signature.infer(pd.DataFrame({"a": [0.5], "b": [1.0]}))


def register(registry: Registry, name: str, task: str, classes: list[object] | None) -> int:
    mv = registry.create_version(
        name, artifact=ARTIFACT, flavor="sklearn", signature=SIGNATURE, task=task, classes=classes
    )
    return mv.version


def write_predictions(
    settings: Settings,
    endpoint: str,
    model: str,
    version: int,
    at: datetime,
    outputs: dict[str, pa.Array],
    status: str = "ok",
) -> list[str]:
    """One segment of the prediction log, in the layout the log writer uses."""
    n = len(next(iter(outputs.values())))
    request = os.urandom(12).hex()
    ids = [f"{request}-{i}" for i in range(n)]
    table = pa.table(
        {
            "prediction_id": ids,
            "request_id": [request] * n,
            "ts": pa.array(
                [at + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
            "environment": ["production"] * n,
            "model": [model] * n,
            "version": pa.array([version] * n, pa.int64()),
            "variant": [f"{model}-v{version}"] * n,
            "status": [status] * n,
            "error": pa.nulls(n, pa.string()),
            "latency_s": [0.001] * n,
            "in_a": np.linspace(0, 1, n),
            "in_b": np.linspace(1, 2, n),
            **outputs,
        }
    )
    folder = settings.logs_path / "predictions" / f"endpoint={endpoint}" / f"date={at:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"host-1-{os.urandom(4).hex()}.parquet")
    return ids


def classifier_outputs(predicted: np.ndarray) -> dict[str, pa.Array]:
    proba = np.where(predicted[:, None] == np.array([0, 1]), 0.8, 0.2)
    return {
        "out_label": pa.array(predicted, pa.int64()),
        "out_probabilities": pa.array(proba.tolist(), pa.list_(pa.float64())),
    }


@pytest.fixture
def store(client: Client) -> LabelStore:
    return LabelStore(client.settings, registry=client.registry)


def test_labels_joined_later_give_each_version_its_accuracy(
    client: Client, store: LabelStore
) -> None:
    v1 = register(client.registry, "fraud", "classification", [0, 1])
    v2 = register(client.registry, "fraud", "classification", [0, 1])
    rng = np.random.default_rng(0)
    pred1 = rng.integers(0, 2, 100)
    pred2 = rng.integers(0, 2, 100)
    ids1 = write_predictions(client.settings, "fraud", "fraud", v1, DAY1, classifier_outputs(pred1))
    ids2 = write_predictions(client.settings, "fraud", "fraud", v2, DAY2, classifier_outputs(pred2))
    failed = write_predictions(
        client.settings, "fraud", "fraud", v2, DAY2, classifier_outputs(pred2[:5]), "invalid_input"
    )
    assert store.performance("fraud") == []  # predictions, but no labels yet

    # v1: 80 of 100 right. v2: 60 labelled, 45 right (first wrong, then corrected).
    truth1 = np.where(np.arange(100) < 80, pred1, 1 - pred1)
    assert store.add(ids1, truth1.tolist()) == 100
    wrong2 = 1 - pred2[:60]
    assert store.add(ids2[:60], wrong2.tolist(), source="cli") == 60
    corrected = np.where(np.arange(60) < 45, pred2[:60], 1 - pred2[:60])
    store.add(ids2[:60], corrected.tolist())
    store.add(failed, [0] * 5)  # labels of failed requests never count

    rows = store.performance("fraud")
    by_version = {r["version"]: r for r in rows}
    assert set(by_version) == {v1, v2}
    assert by_version[v1]["n_labelled"] == 100 and by_version[v1]["accuracy"] == 0.8
    assert by_version[v2]["n_labelled"] == 60 and by_version[v2]["accuracy"] == 0.75
    for row in rows:
        assert row["endpoint"] == "fraud" and row["task"] == "classification"
        assert row["bucket"] is None
        assert {"precision", "recall", "roc_auc", "log_loss"} <= set(row)
    # The logged probabilities put 0.8 on the predicted class.
    assert by_version[v1]["log_loss"] == pytest.approx(-(0.8 * np.log(0.8) + 0.2 * np.log(0.2)))

    daily = store.performance("fraud", bucket="1d")
    assert [(r["version"], r["bucket"], r["n_labelled"]) for r in daily] == [
        (v1, "2024-05-01T00:00:00+00:00", 100),
        (v2, "2024-05-02T00:00:00+00:00", 60),
    ]
    only_day2 = store.performance("fraud", since=datetime(2024, 5, 2, tzinfo=UTC))
    assert [r["version"] for r in only_day2] == [v2]
    assert store.performance("fraud", until=datetime(2024, 5, 2)) == [by_version[v1]]


def test_regressor_performance_uses_numeric_labels(client: Client, store: LabelStore) -> None:
    version = register(client.registry, "price", "regression", None)
    predicted = np.array([100.0, 200.0, 300.0, 400.0])
    ids = write_predictions(
        client.settings, "price", "price", version, DAY1, {"out_prediction": pa.array(predicted)}
    )
    store.add(ids, [110, "190", 300.0, 380])
    [row] = store.performance("price")
    assert row["task"] == "regression" and row["n_labelled"] == 4
    assert row["mae"] == pytest.approx(10.0)
    assert row["rmse"] == pytest.approx(np.sqrt((100 + 100 + 0 + 400) / 4))


def test_a_removed_version_is_judged_by_its_logged_outputs(settings: Settings) -> None:
    store = LabelStore(settings)
    ids = write_predictions(
        settings, "churn", "churn", 7, DAY1, {"out_label": pa.array(["stay", "leave"])}
    )
    store.add(ids, ["stay", "stay"])
    try:
        [row] = store.performance("churn")
    finally:
        store.close()
    assert row["task"] == "classification" and row["accuracy"] == 0.5 and row["roc_auc"] is None


def test_empty_stores_give_empty_results(store: LabelStore) -> None:
    assert store.performance("nothing-here") == []
    assert store.performance("nothing-here", bucket="1h") == []
    assert store.latest().empty


def test_add_writes_one_durable_segment_in_the_labels_layout(store: LabelStore) -> None:
    assert store.add(["a-0", "a-1", "a-0"], [True, 2.5, False], source="cli") == 2
    files = list(store.root.glob("date=*/*"))
    assert len(files) == 1 and files[0].suffix == ".parquet"
    assert files[0].parent.name == f"date={datetime.now(UTC):%Y-%m-%d}"
    table = pq.read_table(files[0])
    assert table.column_names == ["prediction_id", "label", "label_value", "ts", "source"]
    assert table.column("label").to_pylist() == ["false", "2.5"]
    assert table.column("label_value").to_pylist() == [0.0, 2.5]
    assert table.column("source").to_pylist() == ["cli", "cli"]
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"


@pytest.mark.parametrize(
    ("ids", "labels", "message"),
    [
        (["a-0"], [1, 2], "1 prediction ids but 2 labels"),
        (["a-0", ""], [1, 2], "item 1: prediction_id must be a non-empty string"),
        (["a-0", 5], [1, 2], "item 1: prediction_id must be a non-empty string"),
        (["a-0", "a-1"], [1, None], "item 1: the label of 'a-1' is missing"),
        (["a-0"], [[1, 2]], "item 0: the label of 'a-0' is a list"),
    ],
)
def test_add_refuses_malformed_input_and_writes_nothing(
    store: LabelStore, ids: list[object], labels: list[object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        store.add(ids, labels)  # type: ignore[arg-type]
    assert not list(store.root.glob("date=*/*"))


def test_import_csv_and_parquet(tmp_path: Path, store: LabelStore) -> None:
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"id": ["a-0", "a-1"], "truth": [1, 0], "note": ["x", "y"]}).to_csv(
        csv, index=False
    )
    assert store.import_file(csv, id_column="id", label_column="truth") == 2
    parquet = tmp_path / "more.parquet"
    pd.DataFrame({"prediction_id": ["b-0"], "label": ["fraud"]}).to_parquet(parquet)
    assert store.import_file(parquet) == 1
    latest = store.latest().sort_values("prediction_id")
    assert latest["label"].tolist() == ["1", "0", "fraud"]
    assert sorted(set(latest["source"])) == ["import:labels.csv", "import:more.parquet"]


def test_import_reads_big_files_in_chunks(
    tmp_path: Path, store: LabelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.monitoring import labels

    monkeypatch.setattr(labels, "IMPORT_CHUNK_ROWS", 1000)
    path = tmp_path / "big.csv"
    pd.DataFrame({"prediction_id": [f"r-{i}" for i in range(2500)], "label": 1}).to_csv(
        path, index=False
    )
    assert store.import_file(path) == 2500
    assert len(list(store.root.glob("date=*/*.parquet"))) == 3
    assert len(store.latest()) == 2500


def test_import_errors_name_the_file_and_column(tmp_path: Path, store: LabelStore) -> None:
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"id": ["a-0"], "label": [1]}).to_csv(csv, index=False)
    with pytest.raises(InvalidInput, match=r"labels.csv has no column 'prediction_id'") as exc:
        store.import_file(csv)
    assert exc.value.hint is not None and "--id-column" in exc.value.hint
    parquet = tmp_path / "labels.parquet"
    pd.DataFrame({"prediction_id": ["a-0"], "y": [1]}).to_parquet(parquet)
    with pytest.raises(InvalidInput, match=r"labels.parquet has no column 'label'"):
        store.import_file(parquet)
    with pytest.raises(InvalidInput, match="does not exist"):
        store.import_file(tmp_path / "absent.csv")
    (tmp_path / "labels.json").write_text("{}")
    with pytest.raises(InvalidInput, match="CSV or Parquet"):
        store.import_file(tmp_path / "labels.json")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(InvalidInput, match="could not read broken.parquet"):
        store.import_file(tmp_path / "broken.parquet")
    assert not list(store.root.glob("date=*/*"))


def test_a_bad_row_late_in_an_import_leaves_nothing_behind(
    tmp_path: Path, store: LabelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.monitoring import labels

    monkeypatch.setattr(labels, "IMPORT_CHUNK_ROWS", 10)
    path = tmp_path / "labels.csv"
    rows = [f"r-{i},1" for i in range(25)]
    rows[22] = "r-22,"
    path.write_text("prediction_id,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(InvalidInput, match=r"labels.csv, row 23: the label of 'r-22' is missing"):
        store.import_file(path)
    assert not list(store.root.glob("date=*/*"))


def test_parse_time_and_label_value() -> None:
    now = datetime(2024, 5, 8, tzinfo=UTC)
    assert parse_time("7d", now=now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00", now=now) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="neither a duration nor a timestamp"):
        parse_time("last week", now=now)
    assert [label_value(v) for v in (3, "2.5", "cat", True, float("inf"))] == [
        3.0,
        2.5,
        None,
        1.0,
        None,
    ]


def test_python_api(client: Client, tmp_path: Path) -> None:
    version = register(client.registry, "fraud", "classification", [0, 1])
    ids = write_predictions(
        client.settings, "fraud", "fraud", version, DAY1, classifier_outputs(np.array([1, 0, 1]))
    )
    assert client.feedback(ids[:2], [1, 1]) == 2
    path = tmp_path / "labels.csv"
    pd.DataFrame({"pid": [ids[2]], "y": [1]}).to_csv(path, index=False)
    assert client.import_labels(path, id_column="pid", label_column="y") == 1
    [row] = client.performance("fraud", since="36500d", bucket="1d")
    assert row["n_labelled"] == 3 and row["accuracy"] == pytest.approx(2 / 3)
    assert row["precision"] == 1.0 and row["recall"] == pytest.approx(2 / 3)
    assert client.performance("fraud", since=datetime.now(UTC)) == []


def cli_app() -> typer.Typer:
    """The feedback commands on an app of their own, with the shared options."""
    app = typer.Typer()

    @app.callback()
    def options(
        ctx: typer.Context,
        home: Annotated[Path, typer.Option()],
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        ctx.obj = Ctx(Settings(home=home), as_json)

    for command in (cli.feedback, cli.feedback_import, cli.performance):
        app.command()(command)
    return app


def test_cli_records_imports_and_reports(client: Client, tmp_path: Path) -> None:
    version = register(client.registry, "fraud", "classification", [0, 1])
    ids = write_predictions(
        client.settings, "fraud", "fraud", version, DAY1, classifier_outputs(np.array([1, 0]))
    )
    home = ["--home", str(client.settings.home)]
    runner = CliRunner(env={"COLUMNS": "200"})
    app = cli_app()
    done = runner.invoke(app, [*home, "feedback", ids[0], "1.0"])
    assert done.exit_code == 0, done.output
    assert f"recorded label 1.0 for {ids[0]}" in done.output
    path = tmp_path / "labels.csv"
    pd.DataFrame({"prediction_id": [ids[1]], "label": [1]}).to_csv(path, index=False)
    imported = runner.invoke(app, [*home, "--json", "feedback-import", str(path)])
    assert json.loads(imported.output)["accepted"] == 1
    shown = runner.invoke(app, [*home, "performance", "fraud", "--bucket", "1d"])
    assert shown.exit_code == 0, shown.output
    assert "fraud performance" in shown.output  # the table; its width follows the terminal
    daily = json.loads(
        runner.invoke(app, [*home, "--json", "performance", "fraud", "--bucket", "1d"]).output
    )
    assert str(daily[0]["bucket"]).startswith("2024-05-01") and daily[0]["accuracy"] == 0.5
    rows = json.loads(runner.invoke(app, [*home, "--json", "performance", "fraud"]).output)
    assert rows[0]["accuracy"] == 0.5 and rows[0]["n_labelled"] == 2
    missing = runner.invoke(app, [*home, "feedback-import", str(tmp_path / "none.csv")])
    assert missing.exit_code == 3


def test_cli_labels_read_numbers_and_booleans() -> None:
    assert [cli.parse_label(t) for t in ("1", "1.0", "true", "fraud", "007", '"x"')] == [
        1,
        1.0,
        True,
        "fraud",
        "007",
        '"x"',
    ]

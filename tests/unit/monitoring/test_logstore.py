"""Reading the prediction log back with DuckDB: views, tail, windows, traffic, retention."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.errors import InvalidInput, ModelLoading
from modelport.monitoring import logstore
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import LABEL_SCHEMA, TIMESTAMP, new_prediction_ids
from modelport.monitoring.traffic import RELATIVE_ERROR
from modelport.runtimes.base import Prediction
from modelport.settings import Settings
from tests.unit.monitoring.test_logwriter import answer, make_version

BASE = [
    "prediction_id",
    "request_id",
    "ts",
    "environment",
    "model",
    "version",
    "variant",
    "status",
    "error",
    "latency_s",
    "shadow",
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", log_sample_rate=1.0)


def write(settings: Settings, *batches: tuple[str, int, int, float]) -> None:
    """Log (endpoint, version, rows per request, latency) requests, in order, and flush."""
    log = PredictionLog(settings, "production")
    for endpoint, version, rows, latency in batches:
        columns, prediction = answer(rows)
        mv = make_version(version=version)
        ids = new_prediction_ids(rows)
        log.record(endpoint, mv, f"clf-v{version}", ids, columns, prediction, latency)
    log.close()


def test_an_empty_store_has_both_views_with_their_columns(settings: Settings) -> None:
    store = LogStore(settings)
    predictions = store.query("SELECT * FROM predictions")
    assert predictions.num_rows == 0
    assert predictions.column_names == [*BASE, "endpoint", "date"]
    assert predictions.schema.field("ts").type == TIMESTAMP
    labels = store.query("SELECT * FROM labels")
    assert labels.column_names == [*LABEL_SCHEMA.names, "date"]
    assert store.tail("clf").empty
    assert store.window("clf", last=10).empty
    assert store.failures("clf", since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)) == []
    traffic = store.traffic("clf", since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert traffic["requests"] == 0 and traffic["error_rate"] is None
    assert traffic["p99_s"] is None and traffic["requests_per_s"] == 0.0


def test_query_reads_every_segment_with_partition_columns(settings: Settings) -> None:
    write(settings, ("clf", 1, 1, 0.001), ("clf", 1, 2, 0.002), ("123", 1, 1, 0.001))
    store = LogStore(settings)
    result = store.query(
        "SELECT endpoint, date, count(*) AS n FROM predictions GROUP BY ALL ORDER BY endpoint"
    ).to_pylist()
    today = dt.datetime.now(dt.UTC).date()
    assert result == [
        {"endpoint": "123", "date": today, "n": 1},
        {"endpoint": "clf", "date": today, "n": 3},
    ]
    joined = store.query(
        "SELECT count(*) AS n FROM predictions p LEFT JOIN labels l USING (prediction_id)"
    )
    assert joined.to_pylist() == [{"n": 4}]


def test_bad_sql_is_invalid_input_with_duckdbs_message(settings: Settings) -> None:
    store = LogStore(settings)
    with pytest.raises(InvalidInput, match="syntax error") as info:
        store.query("SELEC 1")
    assert info.value.hint and "predictions" in info.value.hint
    with pytest.raises(InvalidInput, match="nope"):
        store.query("SELECT nope FROM predictions")
    with pytest.raises(InvalidInput, match="not an endpoint name"):
        store.tail("../etc")


def test_tail_is_the_newest_rows_oldest_first(settings: Settings) -> None:
    write(settings, *[("clf", 1, 1, i / 1000) for i in range(1, 31)])
    tail = LogStore(settings).tail("clf", n=5)
    assert list(tail["latency_s"]) == [0.026, 0.027, 0.028, 0.029, 0.030]
    assert tail["ts"].is_monotonic_increasing
    assert {"in_a", "out_label", "out_probabilities", "endpoint", "date"} <= set(tail.columns)
    assert "__ts" not in tail.columns


def test_window_by_rows_time_version_and_columns(settings: Settings) -> None:
    write(settings, *[("clf", 1, 2, 0.001) for _ in range(5)])
    middle = dt.datetime.now(dt.UTC)
    write(settings, *[("clf", 2, 2, 0.001) for _ in range(3)])
    log = PredictionLog(settings, "production")
    log.record_failure("clf", ModelLoading("loading"), version=make_version(version=2))
    log.close()
    store = LogStore(settings)

    assert len(store.window("clf", last=4)) == 4
    assert len(store.window("clf", last=100)) == 16  # the failure is left out
    assert len(store.window("clf", last=100, only_ok=False)) == 17
    since = store.window("clf", since=middle, columns=["in_a", "out_label", "in_gone"])
    assert list(since.columns) == ["in_a", "out_label", "in_gone"]
    assert len(since) == 6 and since["in_gone"].isna().all()
    assert list(since["in_a"]) == [0.0, 2.0] * 3
    v1 = store.window("clf", version=1, columns=["version"])
    assert len(v1) == 10 and set(v1["version"]) == {1}
    both = store.window("clf", since=middle, last=2, columns=["version"])
    assert len(both) == 2 and set(both["version"]) == {2}


def test_the_newest_rows_come_from_the_newest_segments_footers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``last`` window picks its segments from footers (row counts, ``ts`` statistics)
    and file times; it returns what reading every row would, and falls back to that when
    the newest segments hold too few matching rows."""
    for version in (1, 2, 1, 2):  # one segment each, versions alternating
        write(settings, *[("clf", version, 3, 0.001) for _ in range(4)])
    store = LogStore(settings)
    reads: list[int] = []
    newest = logstore._newest_segments

    def counting(*args: object, **kwargs: object) -> object:
        found = newest(*args, **kwargs)  # type: ignore[arg-type]
        reads.append(-1 if found is None else len(found[0]))
        return found

    monkeypatch.setattr(logstore, "_newest_segments", counting)
    # 18 rows: six whole requests (a request's rows share one time, so a cut inside one
    # could pick either of its rows)
    fast = store.window("clf", last=18, columns=["prediction_id", "version", "ts"])
    # 12 rows a segment: the newest two hold 18; the segments written within a minute of
    # their oldest row are read (all four here, written in the same second)
    assert len(fast) == 18 and reads == [4]
    # only version 1 rows: the two newest segments hold 12, too few for 20 -> every row
    ones = store.window("clf", last=20, version=1, columns=["prediction_id", "version"])
    assert reads[-1] == -1 and len(ones) == 20 and set(ones["version"]) == {1}
    monkeypatch.setattr(logstore, "_newest_segments", lambda *a, **k: None)
    exact = store.window("clf", last=18, columns=["prediction_id", "version", "ts"])
    assert set(fast["prediction_id"]) == set(exact["prediction_id"])
    assert fast["ts"].is_monotonic_increasing


def test_columns_added_by_a_new_version_read_as_one_table(settings: Settings) -> None:
    write(settings, ("clf", 1, 1, 0.001))
    log = PredictionLog(settings, "production")
    columns = {"a": np.array([1.0]), "b": np.array([2.0]), "c": np.array(["x"], dtype=object)}
    prediction = Prediction(outputs={"score": np.array([0.5])})
    log.record("clf", make_version(version=2), "clf-v2", ["r-0"], columns, prediction, 0.1)
    log.close()
    rows = LogStore(settings).tail("clf", 10)
    assert len(rows) == 2
    assert list(rows["in_c"].isna()) == [True, False]
    assert list(rows["out_score"].isna()) == [True, False]


def test_failures_and_traffic_for_alert_rules(settings: Settings) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    write(settings, *[("clf", 1, 3, 0.010) for _ in range(8)], ("other", 1, 1, 9.0))
    log = PredictionLog(settings, "production")
    log.record_failure("clf", InvalidInput("not valid JSON"), latency_s=0.5)
    columns, _ = answer(2)
    log.record_failure(
        "clf", ModelLoading("still loading"), version=make_version(), columns=columns
    )
    log.close()
    store = LogStore(settings)

    failures = store.failures("clf", since=start)
    assert [f["status"] for f in failures] == ["model_loading", "invalid_input"]
    assert set(failures[0]) == {"prediction_id", "ts", "status", "error", "model", "version"}
    assert failures[0]["model"] == "clf" and failures[1]["model"] is None
    assert failures[0]["ts"].tzinfo is not None and failures[0]["ts"] >= start
    assert len(store.failures("clf", since=start, limit=1)) == 1

    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    traffic = store.traffic("clf", since=start, until=until)
    assert traffic["requests"] == 10 and traffic["errors"] == 2
    assert traffic["error_rate"] == pytest.approx(0.2)
    # latency quantiles come from sketches: within RELATIVE_ERROR of the values
    assert traffic["p50_s"] == pytest.approx(0.010, rel=RELATIVE_ERROR)
    assert traffic["p99_s"] == pytest.approx(0.010, rel=RELATIVE_ERROR)
    seconds = (until - start).total_seconds()
    assert traffic["requests_per_s"] == pytest.approx(10 / seconds)
    before = store.traffic("clf", since=start - dt.timedelta(hours=1), until=start)
    assert before["requests"] == 0


def test_labels_view_reads_label_segments(settings: Settings) -> None:
    folder = settings.logs_path / "labels" / "date=2026-01-02"
    folder.mkdir(parents=True)
    ts = dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC)
    table = pa.table(
        {
            "prediction_id": ["abc-0"],
            "label": ["1"],
            "label_value": [1.0],
            "ts": pa.array([ts], TIMESTAMP),
            "source": ["api"],
        }
    )
    pq.write_table(table, folder / "h-1-x.parquet")
    rows = LogStore(settings).query("SELECT * FROM labels").to_pylist()
    assert rows == [
        {
            "prediction_id": "abc-0",
            "label": "1",
            "label_value": 1.0,
            "ts": ts,
            "source": "api",
            "date": dt.date(2026, 1, 2),
        }
    ]


def test_apply_retention_removes_old_partitions(settings: Settings) -> None:
    write(settings, ("clf", 1, 1, 0.001))
    old = settings.logs_path / "predictions" / "endpoint=clf" / "date=2020-01-01"
    old.mkdir(parents=True)
    (old / "x.parquet").write_bytes(b"")
    store = LogStore(settings)
    removed = store.apply_retention()
    assert removed == [old] and not old.exists()
    assert store.query("SELECT count(*) AS n FROM predictions").to_pylist() == [{"n": 1}]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.log_retention_days + 1)
    assert len(store.apply_retention(now=later)) == 1
    assert store.query("SELECT count(*) AS n FROM predictions").to_pylist() == [{"n": 0}]


def test_a_read_torn_by_a_segment_rewrite_is_tried_again() -> None:
    import duckdb

    from modelport.monitoring.logstore import REREAD_TRIES, reread

    calls: list[int] = []

    @reread
    def torn_twice() -> str:
        calls.append(1)
        if len(calls) < REREAD_TRIES:
            raise duckdb.Error("TProtocolException: Invalid data")
        return "read"

    assert torn_twice() == "read" and len(calls) == REREAD_TRIES

    @reread
    def wrong_sql() -> None:
        calls.append(1)
        raise duckdb.Error("Binder Error: no such column")

    calls.clear()
    with pytest.raises(duckdb.Error, match="Binder Error"):
        wrong_sql()
    assert len(calls) == 1  # only torn reads are tried again

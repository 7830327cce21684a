"""The prediction log's writer: segments, schema, sampling, drops, faults, retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.artifacts import ArtifactRef
from modelport.errors import InvalidInput, PredictionFailed
from modelport.monitoring import logwriter
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import (
    BASE_SCHEMA,
    expire_partitions,
    label_text,
    new_prediction_ids,
)
from modelport.monitoring.traffic import read_summary
from modelport.registry import ModelVersion
from modelport.runtimes.base import Prediction, classification
from modelport.settings import Settings
from modelport.signature import ColumnSpec, Signature, Table


def make_version(name: str = "clf", version: int = 1) -> ModelVersion:
    """A registry version as the data plane holds it (nothing is loaded)."""
    return ModelVersion(
        name=name,
        version=version,
        flavor="sklearn",
        artifact=ArtifactRef(sha256="0" * 64, name="model.skops", size=1),
        signature=Signature(inputs=(ColumnSpec("a", "double"), ColumnSpec("b", "double"))),
        task="classification",
        classes=[0, 1],
        metrics={},
        tags={},
        description="",
        owner=None,
        profile=None,
        sample_sha256=None,
        trusted=False,
        trusted_by=None,
        created_by=None,
        created_at=dt.datetime.now(dt.UTC),
    )


def answer(rows: int) -> tuple[Table, Prediction]:
    """A numeric request of ``rows`` rows and a classifier's answer to it."""
    matrix = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    probabilities = np.column_stack([np.full(rows, 0.25), np.full(rows, 0.75)])
    return Table(["a", "b"], matrix), classification(probabilities, [0, 1])


def log_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path / "home").model_copy(update=overrides)


def record(log: PredictionLog, rows: int = 1, endpoint: str = "clf", version: int = 1) -> list[str]:
    columns, prediction = answer(rows)
    ids = new_prediction_ids(rows)
    mv = make_version(version=version)
    log.record(endpoint, mv, f"{mv.name}-v{mv.version}", ids, columns, prediction, 0.002)
    return ids


def segments(root: Path) -> list[Path]:
    return sorted(root.glob("predictions/endpoint=*/date=*/*.parquet"))


def read_all(root: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in segments(root)], promote_options="default")


@pytest.fixture
def make_log(tmp_path: Path) -> Iterator[Callable[..., PredictionLog]]:
    opened: list[PredictionLog] = []

    def make(
        observer: Callable[[str, int], None] | None = None, **overrides: object
    ) -> PredictionLog:
        log = PredictionLog(log_settings(tmp_path, **overrides), "staging", observer=observer)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close(timeout=5)


def test_a_flush_writes_one_segment_with_the_row_schema(
    make_log: Callable[..., PredictionLog],
) -> None:
    log = make_log()
    first = record(log, rows=1)
    second = record(log, rows=2)
    log.flush()

    [path] = segments(log.root)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert path.parent == log.root / "predictions" / "endpoint=clf" / f"date={today}"
    assert re.fullmatch(rf"[A-Za-z0-9_.]+-{os.getpid()}-00000001\.parquet", path.name)
    assert not list(log.root.rglob("*.tmp"))
    table = pq.read_table(path)
    for field in BASE_SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    assert table.schema.field("in_a").type == pa.float64()
    assert table.schema.field("out_label").type == pa.int64()
    assert table.schema.field("out_probabilities").type == pa.list_(pa.float64())
    rows = table.to_pylist()
    assert [r["prediction_id"] for r in rows] == first + second
    assert rows[1]["request_id"] == second[0].rsplit("-", 1)[0]
    assert rows[0]["request_id"] != rows[1]["request_id"] == rows[2]["request_id"]
    assert {r["environment"] for r in rows} == {"staging"}
    assert {(r["model"], r["version"], r["variant"], r["status"]) for r in rows} == {
        ("clf", 1, "clf-v1", "ok")
    }
    assert rows[2]["error"] is None and rows[2]["latency_s"] == 0.002
    assert (rows[2]["in_a"], rows[2]["in_b"]) == (2.0, 3.0)
    assert rows[2]["out_probabilities"] == [0.25, 0.75]
    assert rows[0]["ts"].tzinfo is not None
    assert abs(rows[0]["ts"] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert log.stats.written_rows == 3 and log.stats.segments == 1


def test_a_quiet_endpoint_rewrites_its_open_segment_then_rolls(
    make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logwriter, "SEGMENT_ROWS", 4)
    log = make_log()
    record(log, rows=2)
    log.flush()
    [path] = segments(log.root)
    record(log, rows=2)
    log.flush()
    assert segments(log.root) == [path]  # the same file, now with 4 rows
    assert pq.read_table(path).num_rows == 4
    record(log, rows=1)
    log.flush()
    assert len(segments(log.root)) == 2
    assert read_all(log.root).num_rows == 5
    assert log.stats.segments == 2


def test_a_busy_endpoint_streams_row_groups_into_a_segment_closed_at_the_flush(
    make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment's worth of built rows leaves the buffer at once, as a row group of an
    unfinished file; the flush closes that file with the total in its footer."""
    monkeypatch.setattr(logwriter, "SEGMENT_ROWS", 4)
    log = make_log()
    record(log, rows=2)
    log.flush()
    [quiet] = segments(log.root)
    for rows in (3, 2):  # 5 built rows: a segment's worth
        record(log, rows=rows)
    log._build()
    log._write_busy()
    assert log.stats.buffered_rows == 0 and log.stats.written_rows == 2
    [unfinished] = log.root.rglob("*.tmp")
    assert segments(log.root) == [quiet]  # readers see nothing of it yet
    record(log, rows=1)  # less than a segment's worth: it waits for the flush
    log._build()
    log._write_busy()
    assert log.stats.buffered_rows == 1
    record(log, rows=2)
    log.flush()  # the rest joins the segment, as one row group, and closes it
    assert not unfinished.exists() and not list(log.root.rglob("*.tmp"))
    [_, busy] = segments(log.root)
    assert pq.ParquetFile(busy).metadata.num_row_groups == 2
    assert pq.read_table(busy).num_rows == 8
    summary = read_summary(str(busy))
    assert summary is not None and summary.groups[("clf-v1", False)].requests == 4
    assert log.stats.written_rows == 10 and log.stats.segments == 2
    assert pq.read_table(quiet).num_rows == 2  # no longer rewritten
    record(log, rows=1)
    log.flush()
    assert len(segments(log.root)) == 3 and read_all(log.root).num_rows == 11


def test_a_failed_stream_drops_its_rows_and_leaves_no_file(
    make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logwriter, "SEGMENT_ROWS", 4)
    log = make_log()
    record(log, rows=4)
    log._build()
    log._write_busy()  # 4 rows streamed, not yet written
    real_write = pq.ParquetWriter.write_table

    def full_disk(self: pq.ParquetWriter, table: pa.Table, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    record(log, rows=3)
    log.flush()
    assert not list(log.root.rglob("*.tmp")) and not segments(log.root)
    assert log.stats.dropped_rows["write_error"] == 7 and log.stats.written_rows == 0
    assert log.stats.buffered_rows == 0
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)
    record(log, rows=5)
    log.flush()
    assert read_all(log.root).num_rows == 5 and log.stats.written_rows == 5


def test_the_heap_is_trimmed_once_when_traffic_stops_never_while_it_flows(
    make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(logwriter, "release_free_memory", lambda: trims.append(1) or True)
    log = make_log()
    for flushes in range(3):
        record(log)
        log.flush()
        assert not trims, f"trimmed while rows flow (flush {flushes})"
    log.flush()  # nothing new: traffic stopped
    log.flush()
    assert len(trims) == 1
    record(log)
    log.flush()
    log.flush()
    assert len(trims) == 2


def test_inputs_keep_their_types_and_missing_values_are_null(
    make_log: Callable[..., PredictionLog],
) -> None:
    log = make_log()
    columns = {
        "amount": np.array([1.5, np.nan]),
        "count": np.array([3, 4], dtype=np.int32),
        "country": np.array(["FR", None], dtype=object),
        "new": np.array([True, False]),
    }
    prediction = Prediction(outputs={"prediction": np.array([0.1, 0.2], dtype=np.float32)})
    ids = new_prediction_ids(2)
    log.record("reg", make_version("reg"), "reg-v1", ids, columns, prediction, 0.01)
    log.flush()
    table = read_all(log.root)
    types = {f.name: f.type for f in table.schema}
    assert types["in_amount"] == pa.float64() and types["in_count"] == pa.int64()
    assert types["in_country"] == pa.string() and types["in_new"] == pa.bool_()
    assert types["out_prediction"] == pa.float32()
    assert table.column("in_amount").to_pylist() == [1.5, None]
    assert table.column("in_country").to_pylist() == ["FR", None]


def test_failures_are_rows_with_their_error_code(
    make_log: Callable[..., PredictionLog],
) -> None:
    log = make_log()
    record(log)
    log.record_failure("clf", InvalidInput("not valid JSON"), latency_s=0.001)
    columns, _ = answer(2)
    mv = make_version()
    log.record_failure("clf", PredictionFailed("model raised"), version=mv, columns=columns)
    log.flush()
    rows = read_all(log.root).to_pylist()
    assert len(rows) == 4
    bad = [r for r in rows if r["status"] == "invalid_input"]
    assert len(bad) == 1 and bad[0]["model"] is None and bad[0]["version"] is None
    assert bad[0]["error"] == "not valid JSON" and bad[0]["in_a"] is None
    assert bad[0]["prediction_id"].endswith("-0")
    failed = [r for r in rows if r["status"] == "prediction_failed"]
    assert [(r["model"], r["variant"], r["in_a"]) for r in failed] == [
        ("clf", "clf-v1", 0.0),
        ("clf", "clf-v1", 2.0),
    ]
    assert all(r["out_label"] is None for r in bad + failed)


def test_sampling_is_per_request(make_log: Callable[..., PredictionLog]) -> None:
    random.seed(7)
    half = make_log(log_sample_rate=0.5)
    for _ in range(400):
        record(half, rows=3)
    half.flush()
    kept = read_all(half.root).num_rows
    assert kept % 3 == 0 and 450 < kept < 750
    off = PredictionLog(
        log_settings(half.root.parent.parent / "off", log_sample_rate=0.0), "staging"
    )
    record(off)
    off.close()
    assert off.stats.written_rows == 0 and not segments(off.root)


def test_a_full_buffer_drops_new_records_and_counts_them(
    make_log: Callable[..., PredictionLog],
) -> None:
    seen: list[tuple[str, int]] = []
    log = make_log(observer=lambda outcome, rows: seen.append((outcome, rows)), log_buffer_rows=5)
    for _ in range(4):
        record(log)
    record(log, rows=2)  # 6 > 5: refused whole
    record(log)  # still fits
    assert log.stats.buffered_rows == 5
    assert log.stats.dropped_rows["buffer_full"] == 2
    log.flush()
    assert sorted(seen) == [("dropped", 2), ("written", 5)]
    record(log, rows=2)  # room again once written
    log.flush()
    assert log.stats.written_rows == 7 and log.stats.dropped == 2


def test_an_unwritable_folder_drops_batches_keeps_old_segments_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log folder stops being a folder (a link now pointing at a file: no permission
    trick, so it holds for root too), then comes back."""
    real, link, blocker = tmp_path / "real", tmp_path / "logs", tmp_path / "blocker"
    real.mkdir()
    blocker.write_text("not a folder")
    link.symlink_to(real)
    seen: list[tuple[str, int]] = []
    log = PredictionLog(
        log_settings(tmp_path, log_dir=link),
        "staging",
        observer=lambda outcome, rows: seen.append((outcome, rows)),
    )
    record(log, rows=2)
    log.flush()
    [before] = segments(real)
    content = before.read_bytes()

    _repoint(link, blocker)
    with caplog.at_level(logging.WARNING, logger=logwriter.__name__):
        record(log, rows=3)
        log.flush()  # must not raise
        record(log, rows=1)
        log.flush()
    assert log.stats.dropped_rows["write_error"] == 4
    assert "NotADirectoryError" in (log.stats.last_error or "")
    warnings = [r for r in caplog.records if "could not write" in r.getMessage()]
    assert len(warnings) == 1  # at most one a minute
    assert ("dropped", 3) in seen and ("dropped", 1) in seen
    assert segments(real) == [before] and before.read_bytes() == content

    _repoint(link, real)
    record(log, rows=2)
    log.flush()
    table = read_all(real)
    assert table.num_rows == 4 and len(segments(real)) == 2
    assert not list(real.rglob("*.tmp"))
    log.close()


def _repoint(link: Path, target: Path) -> None:
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target)
    os.replace(fresh, link)


def test_a_full_disk_leaves_the_segment_being_rewritten_as_it_was(
    make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_log()
    record(log, rows=2)
    log.flush()
    [path] = segments(log.root)
    content = path.read_bytes()
    real_write = pq.write_table

    def full_disk(table: pa.Table, where: object, **kwargs: object) -> None:
        real_write(table.slice(0, 1), where, **kwargs)  # part of the file, then no space
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    record(log, rows=3)
    log.flush()
    assert path.read_bytes() == content and segments(log.root) == [path]
    assert not list(log.root.rglob("*.tmp"))
    assert log.stats.dropped_rows["write_error"] == 3
    assert "No space left" in (log.stats.last_error or "")

    monkeypatch.setattr(pq, "write_table", real_write)
    record(log, rows=1)
    log.flush()
    assert path.read_bytes() == content  # the next batch starts a new segment
    assert read_all(log.root).num_rows == 3


def test_a_record_that_cannot_be_stored_is_dropped_not_raised(
    make_log: Callable[..., PredictionLog],
) -> None:
    log = make_log()
    columns, _ = answer(1)
    odd = Prediction(outputs={"label": np.array([object()], dtype=object)})
    log.record("clf", make_version(), "clf-v1", new_prediction_ids(1), columns, odd, 0.0)
    record(log)
    log.flush()
    assert log.stats.written_rows == 1 and log.stats.dropped_rows["write_error"] == 1


def test_the_thread_flushes_on_its_own_and_close_writes_the_rest(
    make_log: Callable[..., PredictionLog],
) -> None:
    log = make_log(log_flush_seconds=0.05)
    log.start()
    record(log)
    deadline = time.monotonic() + 10
    while not segments(log.root) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert segments(log.root)
    log.flush_seconds = 3600.0  # the next tick is far away: only close can write these
    time.sleep(0.1)
    record(log, rows=2)
    log.close(timeout=10)
    assert read_all(log.root).num_rows == 3
    record(log)
    assert log.stats.dropped_rows["closed"] == 1


def test_started_on_an_event_loop_it_builds_there_and_writes_on_its_thread(
    make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    builders: set[str] = set()
    real_build = logwriter.build_tables

    def build_tables(*args: Any) -> Any:
        builders.add(threading.current_thread().name)
        return real_build(*args)

    monkeypatch.setattr(logwriter, "build_tables", build_tables)
    log = make_log(log_flush_seconds=0.05)

    async def serve() -> None:
        log.start()
        for _ in range(3):
            record(log)
            await asyncio.sleep(logwriter.BUILD_SECONDS)
        deadline = time.monotonic() + 10
        while log.stats.written_rows < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(log.close)

    asyncio.run(serve())
    assert builders == {threading.main_thread().name}
    assert read_all(log.root).num_rows == 3


def test_retention_deletes_old_date_partitions_only(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    now = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
    for day in ("2026-02-27", "2026-03-01", "2026-03-31"):
        (root / "predictions" / "endpoint=clf" / f"date={day}").mkdir(parents=True)
        (root / "labels" / f"date={day}").mkdir(parents=True)
    (root / "predictions" / "endpoint=clf" / "date=garbage").mkdir()
    removed = expire_partitions(root, 30, now)
    assert sorted(p.name for p in removed) == ["date=2026-02-27", "date=2026-02-27"]
    left = sorted(p.name for p in (root / "predictions" / "endpoint=clf").iterdir())
    assert left == ["date=2026-03-01", "date=2026-03-31", "date=garbage"]
    assert sorted(p.name for p in (root / "labels").iterdir()) == [
        "date=2026-03-01",
        "date=2026-03-31",
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (np.bool_(False), "false"),
        (3, "3"),
        (3.0, "3"),
        (np.int64(3), "3"),
        (np.float32(2.0), "2"),
        (0.25, "0.25"),
        (0.1, "0.1"),
        (float("nan"), "nan"),
        (b"fraud", "fraud"),
        ("yes", "yes"),
    ],
)
def test_label_text_is_canonical(value: object, text: str) -> None:
    assert label_text(value) == text

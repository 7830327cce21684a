"""Traffic summaries: sketches, what the writer puts in each footer, and windows summed
from footers agreeing with windows read row by row."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.errors import InvalidInput
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import new_prediction_ids
from modelport.monitoring.traffic import (
    KEY,
    RELATIVE_ERROR,
    SQL_KEY,
    Sketch,
    Summary,
    attach,
    concat,
    keys,
    read_summary,
    summary_of,
)
from modelport.settings import Settings
from tests.unit.monitoring.test_logwriter import answer, make_version


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", log_sample_rate=1.0)


# -- sketches --------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 0.9, 0.99, 1.0])
def test_a_sketch_quantile_is_within_its_relative_error(q: float) -> None:
    values = np.random.default_rng(7).lognormal(np.log(0.004), 1.2, 20_001)
    exact = float(np.quantile(values, q))
    assert Sketch.of(values).quantile(q) == pytest.approx(exact, rel=RELATIVE_ERROR)


def test_sketches_add_to_the_sketch_of_all_values() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.exponential(0.01, n) for n in (1, 10, 500)]
    total = Sketch.of(parts[0]) + Sketch.of(parts[1]) + Sketch.of(parts[2])
    whole = Sketch.of(np.concatenate(parts))
    assert total.keys.tolist() == whole.keys.tolist()
    assert total.counts.tolist() == whole.counts.tolist() and total.n == 511


def test_interpolates_between_ranks_and_reads_zero_as_zero() -> None:
    assert Sketch.of(np.array([0.002, 0.003])).quantile(0.5) == pytest.approx(0.0025, rel=0.005)
    assert Sketch.of(np.array([0.0, 0.0, 1.0])).quantile(0.5) == 0.0
    assert Sketch().quantile(0.5) is None


def test_duckdb_buckets_values_as_numpy_does() -> None:
    values = np.random.default_rng(1).lognormal(-5, 2, 2_000)
    values[:3] = [0.0, 1e-12, 1.0]
    sql = SQL_KEY.format(column="v")
    found = duckdb.sql(f"SELECT {sql} FROM (SELECT unnest($v) AS v)", params={"v": values.tolist()})
    assert [row[0] for row in found.fetchall()] == keys(values).tolist()


# -- summaries in tables and footers ----------------------------------------------------


def summary(first: int, last: int, requests: int, errors: int, latency: list[float]) -> Summary:
    stamps = np.array([first, last], np.int64)
    group = ("clf-v1", False)
    one = Summary.of_requests("production", group, stamps, np.array(latency), failed=False)
    figures = one.groups[("clf-v1", False)]
    figures.requests, figures.errors = requests, errors
    return one


def test_a_summary_survives_encoding_and_tables_joined_carry_the_total() -> None:
    a, b = summary(10, 20, 2, 0, [0.001, 0.002]), summary(5, 30, 2, 1, [0.004, 0.004])
    assert Summary.decode(a.encode()).encode() == a.encode()
    joined = concat([attach(pa.table({"x": [1, 2]}), a), attach(pa.table({"x": [3, 4]}), b)])
    total = summary_of(joined)
    assert total is not None and (total.first_us, total.last_us) == (5, 30)
    figures = total.groups[("clf-v1", False)]
    assert (figures.requests, figures.errors, figures.latency.n) == (4, 1, 4)
    # a table without a summary makes the total unknown, never too small
    assert summary_of(concat([attach(pa.table({"x": [1]}), a), pa.table({"x": [2]})])) is None


def test_damaged_summaries_read_as_none(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a traffic summary"):
        Summary.decode(b'{"v": 1}')
    huge = b'{"environment":"p","ts":[1,2],"groups":[["a",false,1,0,[[1000000000000],[1]]]]}'
    with pytest.raises(ValueError, match="out of range"):  # would allocate that many buckets
        Summary.decode(huge)
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata({KEY: b"{not json"}), path)
    assert read_summary(str(path)) is None
    assert read_summary(str(tmp_path / "missing.parquet")) is None


def log_requests(settings: Settings, latencies: list[float], *, rows: int = 2) -> None:
    log = PredictionLog(settings, "production")
    mv = make_version()
    for latency in latencies:
        columns, prediction = answer(rows)
        log.record("clf", mv, "clf-v1", new_prediction_ids(rows), columns, prediction, latency)
    log.record_failure("clf", InvalidInput("bad"), latency_s=0.5)
    log.close()


def segments(settings: Settings) -> list[Path]:
    return sorted((settings.logs_path / "predictions" / "endpoint=clf").glob("*/*.parquet"))


def test_the_writer_puts_each_segments_summary_in_its_footer(settings: Settings) -> None:
    log_requests(settings, [0.001 * (i + 1) for i in range(40)])
    (path,) = segments(settings)
    found = read_summary(str(path))
    assert found is not None and found.environment == "production"
    answered, failed = found.groups[("clf-v1", False)], found.groups[(None, False)]
    assert (answered.requests, answered.errors, answered.latency.n) == (40, 0, 40)
    assert (failed.requests, failed.errors) == (1, 1)
    ts = pq.read_table(path, columns=["ts"])["ts"].to_numpy().astype("datetime64[us]")
    assert found.first_us == int(ts.min().astype(np.int64))
    assert found.last_us == int(ts.max().astype(np.int64))


def strip_summaries(settings: Settings) -> None:
    """Rewrite every segment without its summary, as an older writer left them."""
    for path in segments(settings):
        table = pq.read_table(path)
        pq.write_table(attach(table, None), path)


def test_windows_from_footers_agree_with_windows_read_row_by_row(settings: Settings) -> None:
    rng = np.random.default_rng(5)
    for _ in range(3):  # three segments
        log_requests(settings, list(rng.exponential(0.01, 200)))
        time.sleep(0.01)
    now = dt.datetime.now(dt.UTC)
    since, until = now - dt.timedelta(minutes=5), now + dt.timedelta(seconds=5)
    summed = LogStore(settings).traffic("clf", since=since, until=until)
    strip_summaries(settings)
    read = LogStore(settings).traffic("clf", since=since, until=until)
    assert (summed["requests"], summed["errors"]) == (read["requests"], read["errors"]) == (603, 3)
    exact = (
        LogStore(settings)
        .query(
            "SELECT quantile_cont(latency_s, [0.5, 0.99]) FROM predictions "
            "WHERE status = 'ok' AND ends_with(prediction_id, '-0')"
        )
        .to_pylist()[0]
    )
    p50, p99 = next(iter(exact.values()))
    for figures in (summed, read):
        assert figures["p50_s"] == pytest.approx(p50, rel=RELATIVE_ERROR)
        assert figures["p99_s"] == pytest.approx(p99, rel=RELATIVE_ERROR)


def test_a_segment_across_a_window_edge_is_counted_row_by_row(settings: Settings) -> None:
    log_requests(settings, [0.002] * 10)
    (path,) = segments(settings)
    stamps = pq.read_table(path, columns=["ts", "prediction_id"]).to_pylist()
    firsts = sorted(r["ts"] for r in stamps if r["prediction_id"].endswith("-0"))
    cut = firsts[4]  # the 5th request on is inside [cut, later)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    store = LogStore(settings)
    assert store.traffic("clf", since=cut, until=later)["requests"] == len(firsts) - 4
    assert store.traffic("clf", since=firsts[0], until=cut)["requests"] == 4
    by_variant = store.by_variant("clf", since=cut, until=later)  # less the failure
    assert by_variant == {("clf-v1", False): by_variant[("clf-v1", False)]}
    assert by_variant[("clf-v1", False)]["requests"] == len(firsts) - 5


def test_failures_read_only_segments_whose_summary_counts_one(settings: Settings) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    log_requests(settings, [0.002] * 5)  # one segment: 5 answered, 1 failed
    (failing,) = segments(settings)
    table = pq.read_table(failing)
    quiet = summary_of(table)
    assert quiet is not None and quiet.errors == 1
    for figures in quiet.groups.values():
        figures.errors = 0
    copy = failing.with_name("copy.parquet")  # the same rows, a summary of no failure
    pq.write_table(attach(table, quiet), copy)
    assert len(LogStore(settings).failures("clf", since=since)) == 1
    pq.write_table(attach(table, None), copy)  # no summary: the segment is read
    assert len(LogStore(settings).failures("clf", since=since)) == 2

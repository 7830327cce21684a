"""Traffic over time from the prediction log: the grid of buckets, totals and series per
endpoint and per variant, errors by kind, environments and shadows kept apart."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.errors import InvalidInput
from modelport.monitoring import records
from modelport.monitoring.timeseries import Grid, TrafficSeries, default_step
from modelport.settings import Settings

#: 2024-05-01 10:00:00 UTC: buckets of 60 s start on the minute.
T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC).timestamp()
MODELS = {"clf-v1": ("clf", 1), "clf-v2": ("clf", 2)}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", log_sample_rate=1.0)


def request(
    at: float,
    variant: str | None = "clf-v1",
    *,
    rows: int = 1,
    latency: float = 0.01,
    status: str = records.OK,
    shadow: bool = False,
    endpoint: str = "clf",
) -> records.Entry:
    columns = {"a": np.arange(rows, dtype=np.float64)}
    outputs = {"label": np.zeros(rows, np.int64)} if status == records.OK else None
    made = records.entry(
        endpoint,
        variant,
        records.new_prediction_ids(rows),
        columns if variant is not None else None,
        outputs,
        latency,
        status,
        None if status == records.OK else "bad",
        shadow,
    )
    return (T0 + at, *made[1:])


def write(
    settings: Settings, entries: list[records.Entry], environment: str = "production"
) -> None:
    by_file: dict[tuple[str, int], list[records.Entry]] = {}
    for e in entries:
        by_file.setdefault((e[records.ENDPOINT], records.day_of(e[records.TS])), []).append(e)
    for (endpoint, day), group in by_file.items():
        batch = records.build_tables(group, environment, MODELS)
        assert not batch.rejected
        folder = (
            records.endpoint_folder(settings.logs_path, endpoint)
            / f"date={records.date_of_day(day)}"
        )
        for i, table in enumerate(batch.tables):
            records.write_segment(
                table, folder / f"{environment}-{len(list(folder.glob('*')))}-{i}.parquet"
            )


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + seconds, dt.UTC)


def test_the_grid_is_aligned_on_the_step_and_cut_by_the_range() -> None:
    grid = Grid.covering(at(30), at(200), 60)
    assert grid.times() == [T0, T0 + 60, T0 + 120, T0 + 180]
    assert grid.seconds() == [30, 60, 60, 20]
    assert grid.days() == ["2024-05-01"]
    assert Grid.covering(at(-3600), at(60), 3600).days() == ["2024-05-01"]
    midnight = Grid.covering(at(-11 * 3600), at(0), 3600)
    assert midnight.days() == ["2024-04-30", "2024-05-01"]
    assert default_step(3600) == 60 and default_step(300) == 5 and default_step(7 * 86400) == 21600


def test_the_grid_refuses_an_empty_range_and_too_many_buckets() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        Grid.covering(at(10), at(10), 1)
    with pytest.raises(InvalidInput, match="buckets"):
        Grid.covering(at(0), at(86400), 1)


def test_every_endpoint_with_its_totals_and_series(settings: Settings) -> None:
    write(
        settings,
        [
            request(5, rows=3, latency=0.010),  # one request of three rows
            request(10, latency=0.030),
            request(70, latency=0.020),
            request(75, status="signature_mismatch"),
            request(80, shadow=True, variant="clf-v2"),  # a copy: not live traffic
            request(20, endpoint="reg", variant="clf-v1"),
        ],
    )
    write(settings, [request(15, endpoint="reg", variant="clf-v1")], environment="staging")
    stats = TrafficSeries(settings)
    grid = Grid.covering(at(0), at(120), 60)
    answer = stats.endpoints(grid)
    assert [(e["environment"], e["endpoint"]) for e in answer["endpoints"]] == [
        ("production", "clf"),
        ("production", "reg"),
        ("staging", "reg"),
    ]
    assert answer["times"] == [T0, T0 + 60] and answer["step_s"] == 60
    clf = answer["endpoints"][0]
    assert (clf["requests"], clf["errors"], clf["error_rate"]) == (4, 1, 0.25)
    assert clf["requests_per_s"] == pytest.approx(4 / 120, rel=1e-3)
    assert clf["rows_per_request"] == pytest.approx(5 / 3, rel=1e-3)
    assert clf["series"]["requests"] == [2, 2]
    assert clf["series"]["errors"] == [0, 1]
    assert clf["series"]["error_rate"] == [0.0, 0.5]
    assert clf["series"]["requests_per_s"] == [pytest.approx(2 / 60, rel=1e-3)] * 2
    assert clf["series"]["p50_s"] == [0.02, 0.02]  # answered requests only

    only = stats.endpoints(grid, environment="staging", series=["requests"])
    assert [e["endpoint"] for e in only["endpoints"]] == ["reg"]
    assert list(only["endpoints"][0]["series"]) == ["requests"]
    with pytest.raises(InvalidInput, match="no series named nope"):
        stats.endpoints(grid, series=["nope"])


def test_rates_count_the_requests_the_sampling_left_out(settings: Settings) -> None:
    write(settings, [request(i) for i in range(6)])
    sampled = TrafficSeries(settings.model_copy(update={"log_sample_rate": 0.5}))
    (clf,) = sampled.endpoints(Grid.covering(at(0), at(60), 60))["endpoints"]
    assert clf["requests"] == 6 and clf["requests_per_s"] == pytest.approx(12 / 60, rel=1e-3)


def test_one_endpoint_per_variant_with_errors_by_kind(settings: Settings) -> None:
    write(
        settings,
        [
            request(1, "clf-v1", latency=0.01),
            request(2, "clf-v1", latency=0.03),
            request(3, "clf-v2", rows=4, latency=0.05),
            request(61, "clf-v2", status="prediction_failed"),
            request(62, "clf-v1", status="signature_mismatch"),
            request(63, None, status="invalid_input"),  # failed before a variant was chosen
            request(64, "clf-v2", shadow=True, latency=0.2),
        ],
    )
    stats = TrafficSeries(settings)
    answer = stats.endpoint("clf", Grid.covering(at(0), at(120), 60), environment="production")
    assert answer["totals"]["requests"] == 6 and answer["totals"]["errors"] == 3
    variants = {(v["variant"], v["shadow"]): v for v in answer["variants"]}
    assert set(variants) == {("clf-v1", False), ("clf-v2", False), ("clf-v2", True), (None, False)}
    v1 = variants[("clf-v1", False)]
    assert (v1["model"], v1["version"], v1["requests"], v1["errors"]) == ("clf", 1, 3, 1)
    assert v1["series"]["requests"] == [2, 1] and v1["p50_s"] == pytest.approx(0.02)
    v2 = variants[("clf-v2", False)]
    assert v2["rows_per_request"] == 4 and v2["series"]["errors"] == [0, 1]
    assert variants[("clf-v2", True)]["p99_s"] == pytest.approx(0.2)
    kinds = {k["kind"]: k for k in answer["errors"]}
    assert set(kinds) == {"prediction_failed", "signature_mismatch", "invalid_input"}
    assert kinds["invalid_input"]["by_variant"] == [{"variant": None, "errors": 1}]
    assert kinds["signature_mismatch"]["series"] == [0, 1]
    assert (
        stats.endpoint("clf", Grid.covering(at(0), at(120), 60), environment="staging")["variants"]
        == []
    )


def test_an_endpoint_without_a_log_has_empty_series(settings: Settings) -> None:
    stats = TrafficSeries(settings)
    grid = Grid.covering(at(0), at(120), 60)
    answer = stats.endpoint("quiet", grid, environment=None)
    assert answer["variants"] == [] and answer["errors"] == []
    assert answer["totals"]["requests"] == 0 and answer["totals"]["error_rate"] is None
    assert stats.endpoints(grid)["endpoints"] == []
    with pytest.raises(InvalidInput, match="not an endpoint name"):
        stats.endpoint("../etc", grid, environment=None)


def test_a_past_day_is_read_from_its_cache_rewritten_when_segments_change(
    settings: Settings,
) -> None:
    write(settings, [request(5, latency=0.010), request(70, status="signature_mismatch")])
    write(settings, [request(20, endpoint="reg")], environment="staging")
    folder = records.endpoint_folder(settings.logs_path, "clf") / "date=2024-05-01"
    stats = TrafficSeries(settings)
    grid = Grid.covering(at(0), at(120), 60)
    first = stats.endpoints(grid)
    (cache,) = folder.glob("_traffic-*.cache")  # 2024-05-01 is over: its rows in one file
    assert stats.endpoints(grid) == first  # the same figures, read from the cache
    made = cache.stat().st_mtime_ns
    assert stats.endpoint("clf", grid, environment="production")["totals"]["requests"] == 2
    assert cache.stat().st_mtime_ns == made  # unchanged segments: not rewritten

    # A segment that arrives late changes the figures at once, through a new cache.
    write(settings, [request(30, latency=0.050), request(90, latency=0.070)])
    (clf, _) = stats.endpoints(grid)["endpoints"]
    assert (clf["requests"], clf["errors"], clf["series"]["requests"]) == (4, 1, [2, 2])
    assert clf["p99_s"] == pytest.approx(0.0696, rel=1e-3)
    newer = max(folder.glob("_traffic-*.cache"), key=lambda p: p.stat().st_mtime_ns)
    assert newer != cache and cache.exists()  # kept a minute for queries reading it
    os.utime(cache, (0, 0))
    write(settings, [request(100, latency=0.070)])
    (third,) = stats.endpoints(grid)["endpoints"][:1]
    assert third["requests"] == 5 and not cache.exists()  # the outdated one is gone now
    (newer,) = [p for p in folder.glob("_traffic-*.cache") if p != newer]
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]

    # A segment rewritten in place with more rows (the log writer's open segment) too.
    segment = max(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    table = pq.read_table(segment)
    records.write_segment(pa.concat_tables([table, table]), segment)
    assert stats.endpoints(grid)["endpoints"][0]["requests"] == 6

    # From the segments alone (the caches off, or none can be written) the same figures.
    clf = TrafficSeries(settings, day_caches=False).endpoints(grid)["endpoints"][0]
    assert clf == stats.endpoints(grid)["endpoints"][0] and clf["requests"] == 6
    newer.unlink()
    newer.mkdir()  # a cache that cannot be read or replaced
    for name in ("x", "y"):
        (newer / name).touch()
    assert stats.endpoints(grid)["endpoints"][0] == clf
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_today_is_read_from_its_segments(settings: Settings) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    write(settings, [request(now - T0 - 5), request(now - T0 - 2)])
    since = dt.datetime.fromtimestamp(now - 60, dt.UTC)
    grid = Grid.covering(since, dt.datetime.fromtimestamp(now + 1, dt.UTC), 60)
    (clf,) = TrafficSeries(settings).endpoints(grid)["endpoints"]
    assert clf["requests"] == 2
    # The log writer may still rewrite today's open segments: no cache for today.
    assert not list(settings.logs_path.glob("predictions/*/*/_traffic-*.cache"))

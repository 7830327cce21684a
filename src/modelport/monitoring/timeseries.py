"""Traffic over time, from the prediction log: requests, errors, latency and rows per
request in equal time buckets, for every endpoint at once or per variant and error
kind of one endpoint. What the dashboard charts and `GET /v1/stats` answers.

Only the ``date=`` folders the range touches are read, and only the base columns, so
the last hour of fifty endpoints answers in milliseconds however many days the log
holds. A day that is over (UTC, for `CLOSED_AFTER_S`: the log writer may still
rewrite its last segments a few minutes past midnight) is read from one file per
endpoint, ``_traffic-HASH.cache`` in its ``date=`` folder: the base columns of every
row of the day's segments, written the first time the day is asked for and again when
the segments change (HASH covers their names, sizes and modification times), so a
week reads 7 files per endpoint instead of hundreds of segments and the figures stay
those of the segments. The cache's name does not end in ``.parquet``, so no other
reader of the log sees it, and retention removes it with its folder.

Counts are logged requests (one per request, whatever its rows); rates divide
by the sampling rate (``log_sample_rate``) to estimate the real traffic; latency
quantiles are over answered requests.

Example::

    series = TrafficSeries(settings)
    grid = Grid.covering(now - timedelta(hours=1), now, step_s=60)
    series.endpoints(grid)                      # every endpoint, its totals and sparklines
    series.endpoint("fraud", grid, environment="production")   # per variant, per error kind
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from modelport.errors import InvalidInput
from modelport.monitoring.records import OK, endpoint_folder
from modelport.settings import Settings
from modelport.uri import NAME_PATTERN

#: A past day's base columns, one file per endpoint and day (see the module's
#: docstring): ``_traffic-HASH.cache``, HASH naming the segments it was made from.
CACHE_PREFIX = "_traffic-"
CACHE_SUFFIX = ".cache"
#: Seconds after its end (UTC midnight) from which a day is read from its cache: the
#: log writer rewrites an open segment for up to five minutes (``SEGMENT_SECONDS``).
CLOSED_AFTER_S = 900.0
#: Seconds an outdated cache is kept after a newer one is written, for queries that
#: listed the folder before (a late segment arriving while another worker reads).
OUTDATED_KEPT_S = 60.0
#: What the cache keeps of each row (``endpoint`` and ``date`` come from its folder).
_CACHE_COLUMNS = (
    "environment, variant, model, version, shadow, status, latency_s, ts, "
    "ends_with(prediction_id, '-0') AS first_row"
)
#: Most buckets one answer may hold.
MAX_BUCKETS = 1440
#: Steps a default is picked from: the smallest that gives at most `TARGET_BUCKETS`.
STEPS_S = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
TARGET_BUCKETS = 60
#: Every series a bucketed answer can hold.
SERIES = (
    "requests",
    "requests_per_s",
    "errors",
    "error_rate",
    "p50_s",
    "p90_s",
    "p99_s",
    "rows_per_request",
)
#: The request figures of a group of rows: requests, failed ones, answered rows and
#: requests, and the p50 / p90 / p99 latency of answered requests. A request's first
#: row (prediction id ending in ``-0``) stands for the request.
_FIGURES = (
    "count(*) FILTER (WHERE first_row), "
    f"count(*) FILTER (WHERE first_row AND status <> '{OK}'), "
    f"count(*) FILTER (WHERE status = '{OK}'), "
    f"count(*) FILTER (WHERE first_row AND status = '{OK}'), "
    f"quantile_cont(latency_s, [0.5, 0.9, 0.99]) FILTER (WHERE first_row AND status = '{OK}')"
)


def default_step(window_s: float) -> float:
    """The smallest of `STEPS_S` that cuts ``window_s`` into at most 60 buckets."""
    for step in STEPS_S:
        if window_s / step <= TARGET_BUCKETS:
            return float(step)
    return float(STEPS_S[-1])


@dataclass(frozen=True)
class Grid:
    """Equal buckets of ``step_s`` seconds, aligned on multiples of the step, covering
    ``[since, until)`` (Unix seconds); the first and last may be cut by the range."""

    since: float
    until: float
    step_s: float

    @classmethod
    def covering(cls, since: dt.datetime, until: dt.datetime, step_s: float) -> Grid:
        """The grid of ``[since, until)``; refuses an empty range and too many buckets."""
        start, end = since.timestamp(), until.timestamp()
        if end <= start:
            raise InvalidInput(
                f"the range {since.isoformat()} .. {until.isoformat()} is empty",
                hint="give a window above 0 and an end after its start",
            )
        if step_s <= 0:
            raise InvalidInput(f"step {step_s!r} must be above 0 seconds")
        grid = cls(start, end, float(step_s))
        if grid.buckets > MAX_BUCKETS:
            raise InvalidInput(
                f"a step of {step_s:g}s cuts the window into {grid.buckets} buckets, "
                f"over {MAX_BUCKETS}",
                hint="ask for a larger step (step=5m) or a shorter window",
            )
        return grid

    @property
    def first(self) -> int:
        """Index of the first bucket (bucket ``i`` starts at ``i * step_s``)."""
        return math.floor(self.since / self.step_s)

    @property
    def buckets(self) -> int:
        last = math.ceil(self.until / self.step_s)
        return max(last - self.first, 1)

    def times(self) -> list[float]:
        """The start of each bucket, Unix seconds."""
        return [(self.first + i) * self.step_s for i in range(self.buckets)]

    def seconds(self) -> list[float]:
        """How many seconds of ``[since, until)`` each bucket covers."""
        out = []
        for start in self.times():
            covered = min(start + self.step_s, self.until) - max(start, self.since)
            out.append(max(covered, 1e-9))
        return out

    def days(self) -> list[str]:
        """``YYYY-MM-DD`` of every UTC day the range touches."""
        day = dt.datetime.fromtimestamp(self.since, dt.UTC).date()
        last = dt.datetime.fromtimestamp(max(self.until - 1e-6, self.since), dt.UTC).date()
        out = []
        while day <= last:
            out.append(day.isoformat())
            day += dt.timedelta(days=1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "step_s": self.step_s,
            "times": self.times(),
        }


class TrafficSeries:
    """Bucketed traffic figures of the prediction log under ``settings.logs_path``.

    ``day_caches=False`` reads every day from its segments and writes nothing (what
    bench/ui_bench.py compares the caches against).
    """

    def __init__(self, settings: Settings, *, day_caches: bool = True) -> None:
        self.root = settings.logs_path
        self.sample_rate = settings.log_sample_rate
        self.day_caches = day_caches

    def endpoints(
        self,
        grid: Grid,
        *,
        environment: str | None = None,
        series: Sequence[str] = SERIES,
    ) -> dict[str, Any]:
        """Every endpoint that logged requests in the grid's range (of one
        ``environment``, or all): its totals and the named ``series``, live traffic only."""
        _check_series(series)
        folders = sorted(p for p in (self.root / "predictions").glob("endpoint=*") if p.is_dir())
        where = ["NOT shadow", *_environment(environment)]
        sql = (
            "SELECT environment, endpoint, bucket, "
            f"{_FIGURES} FROM ({self._rows(folders, grid, where)}) "
            "GROUP BY GROUPING SETS ((environment, endpoint, bucket), (environment, endpoint))"
        )
        found: dict[tuple[str, str], _Figures] = {}
        for env, name, bucket, *figures in self._fetch(sql, environment):
            entry = found.setdefault((str(env), str(name)), _Figures(grid))
            entry.add(bucket, figures)
        return grid.to_dict() | {
            "environment": environment,
            "sample_rate": self.sample_rate,
            "endpoints": [
                {"environment": env, "endpoint": name} | figures.to_dict(self.sample_rate, series)
                for (env, name), figures in sorted(found.items())
            ],
        }

    def endpoint(self, endpoint: str, grid: Grid, *, environment: str | None) -> dict[str, Any]:
        """One endpoint: its live totals, each (variant, shadow) with its series, and
        failed requests per error kind (its ``status``) per bucket."""
        if not NAME_PATTERN.match(endpoint):
            raise InvalidInput(
                f"{endpoint!r} is not an endpoint name",
                hint="names are letters, digits, '_', '.' and '-', starting with one of the "
                "first two",
            )
        folders = [endpoint_folder(self.root, endpoint)]
        scope = _environment(environment)
        rows = self._rows(folders, grid, scope)
        by_variant = (
            "SELECT coalesce(variant, '') AS variant, shadow, any_value(model), "
            f"any_value(version), bucket, {_FIGURES} FROM ({rows}) "
            "GROUP BY GROUPING SETS ((variant, shadow, bucket), (variant, shadow))"
        )
        totals_sql = f"SELECT NULL, {_FIGURES} FROM ({rows}) WHERE NOT shadow"
        kinds_sql = (
            "SELECT status, coalesce(variant, ''), bucket, count(*) "
            f"FROM ({rows}) WHERE first_row AND status <> '{OK}' AND NOT shadow "
            "GROUP BY GROUPING SETS ((status, bucket), (status, variant))"
        )
        variants: dict[tuple[str, bool], tuple[str | None, int | None, _Figures]] = {}
        for variant, shadow, model, version, bucket, *figures in self._fetch(
            by_variant, environment
        ):
            key = (str(variant), bool(shadow))
            if key not in variants:
                variants[key] = (model, version, _Figures(grid))
            variants[key][2].add(bucket, figures)
        totals = _Figures(grid)
        for _, *figures in self._fetch(totals_sql, environment):
            totals.add(None, figures)
        return grid.to_dict() | {
            "endpoint": endpoint,
            "environment": environment,
            "sample_rate": self.sample_rate,
            "totals": totals.summary(self.sample_rate),
            "variants": [
                {
                    "variant": variant or None,
                    "shadow": shadow,
                    "model": model,
                    "version": int(version) if version is not None else None,
                }
                | figures.to_dict(self.sample_rate, SERIES)
                for (variant, shadow), (model, version, figures) in sorted(variants.items())
            ],
            "errors": _kinds(grid, self._fetch(kinds_sql, environment)),
        }

    # -- reading -----------------------------------------------------------------

    def _rows(self, folders: Sequence[Path], grid: Grid, where: Sequence[str]) -> str:
        """SQL for the rows of ``folders`` in the grid's range, with their bucket and
        whether each is its request's first row; an empty SELECT without files. Past
        days come from their cache (`day_cache`), today from its segments."""
        closed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=CLOSED_AFTER_S)
        first_open = closed.date().isoformat() if self.day_caches else ""
        segments: list[str] = []
        cached: list[str] = []
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            for folder in folders:
                for day in grid.days():
                    part = folder / f"date={day}"
                    found = _segments(part)
                    cache = day_cache(part, found, con) if found and day < first_open else None
                    if cache is not None:
                        cached.append(str(cache))
                    elif found:
                        segments.append(str(part / "*.parquet"))
        if not segments and not cached:
            return (
                "SELECT NULL::VARCHAR AS environment, NULL::VARCHAR AS endpoint, "
                "NULL::VARCHAR AS variant, NULL::VARCHAR AS model, NULL::BIGINT AS version, "
                "NULL::BOOLEAN AS shadow, NULL::VARCHAR AS status, NULL::DOUBLE AS latency_s, "
                "NULL::BIGINT AS bucket, NULL::BOOLEAN AS first_row WHERE false"
            )
        conditions = [
            f"ts >= to_timestamp({grid.since!r})",
            f"ts < to_timestamp({grid.until!r})",
            *where,
        ]
        parts = [
            (files, first_row)
            for files, first_row in (
                (segments, "ends_with(prediction_id, '-0')"),
                (cached, "first_row"),
            )
            if files
        ]
        return " UNION ALL ".join(
            "SELECT environment, endpoint, variant, model, version, shadow, status, "
            f"latency_s, CAST(floor(epoch(ts) / {grid.step_s!r}) AS BIGINT) AS bucket, "
            f"{first_row} AS first_row "
            f"FROM read_parquet([{', '.join(_literal(f) for f in files)}], "
            "hive_partitioning = true, hive_types = {'endpoint': VARCHAR, 'date': DATE}) "
            f"WHERE {' AND '.join(conditions)}"
            for files, first_row in parts
        )

    def _fetch(self, sql: str, environment: str | None) -> list[tuple[Any, ...]]:
        # An empty log reads no file and names no environment.
        params = {"environment": environment} if "$environment" in sql else {}
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql, params).fetchall()


class _Figures:
    """The figures of one series as rows arrive: totals and one slot per bucket."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.total: list[Any] = [0, 0, 0, 0, None]
        self.buckets: dict[int, list[Any]] = {}

    def add(self, bucket: int | None, figures: list[Any]) -> None:
        if bucket is None:
            self.total = figures
        else:
            self.buckets[int(bucket) - self.grid.first] = figures

    def summary(self, sample_rate: float) -> dict[str, Any]:
        seconds = max(self.grid.until - self.grid.since, 1e-9)
        return _summary(self.total, seconds, sample_rate)

    def to_dict(self, sample_rate: float, names: Sequence[str]) -> dict[str, Any]:
        series: dict[str, list[Any]] = {name: [] for name in names}
        for i, seconds in enumerate(self.grid.seconds()):
            figures = _summary(self.buckets.get(i, [0, 0, 0, 0, None]), seconds, sample_rate)
            for name, values in series.items():
                values.append(figures[name])
        return self.summary(sample_rate) | {"series": series}


def _summary(figures: list[Any], seconds: float, sample_rate: float) -> dict[str, Any]:
    requests, errors, ok_rows, ok_requests, quantiles = figures
    p50, p90, p99 = quantiles if quantiles else (None, None, None)
    return {
        "requests": int(requests),
        "requests_per_s": _round(requests / seconds / sample_rate if sample_rate > 0 else 0.0),
        "errors": int(errors),
        "error_rate": _round(errors / requests if requests else None),
        "p50_s": _round(p50),
        "p90_s": _round(p90),
        "p99_s": _round(p99),
        "rows_per_request": _round(ok_rows / ok_requests if ok_requests else None),
    }


def _round(value: float | None) -> float | None:
    """Four significant digits: what a chart or a table shows, in a quarter of the JSON."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


def _check_series(names: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(SERIES))
    if unknown:
        raise InvalidInput(
            f"no series named {', '.join(unknown)}", hint=f"ask for {', '.join(SERIES)}"
        )


def _kinds(grid: Grid, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Failed requests per error kind: a count per bucket, and a total per variant."""
    kinds: dict[str, dict[str, Any]] = {}
    for kind, variant, bucket, count in rows:
        entry = kinds.setdefault(
            str(kind), {"kind": str(kind), "errors": 0, "by_variant": {}, "series": {}}
        )
        if bucket is not None:
            entry["series"][int(bucket) - grid.first] = int(count)
        else:
            entry["by_variant"][variant or None] = int(count)
            entry["errors"] += int(count)
    out = []
    for kind in sorted(kinds, key=lambda k: (-kinds[k]["errors"], k)):
        entry = kinds[kind]
        counts = entry.pop("series")
        entry["by_variant"] = [
            {"variant": v, "errors": n} for v, n in sorted(entry["by_variant"].items(), key=str)
        ]
        entry["series"] = [counts.get(i, 0) for i in range(grid.buckets)]
        out.append(entry)
    return out


def day_cache(
    folder: Path, segments: Sequence[os.DirEntry[str]], con: duckdb.DuckDBPyConnection
) -> Path | None:
    """The cache of a ``date=`` folder holding ``segments``: its name carries a hash of
    their names, sizes and modification times, so a listing of the folder tells whether
    it is current (a segment rewritten in place changes it too). Written (with ``con``)
    when missing; an outdated one is removed a while later. None when it cannot be
    written (a read-only log, say: the caller reads the segments instead)."""
    try:
        stamps = sorted(f"{e.name} {e.stat().st_size} {e.stat().st_mtime_ns}" for e in segments)
    except FileNotFoundError:  # a segment renamed over while listed: read the segments
        return None
    digest = hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]
    path = folder / f"{CACHE_PREFIX}{digest}{CACHE_SUFFIX}"
    if path.is_file():
        return path
    files = ", ".join(_literal(str(folder / e.name)) for e in segments)
    tmp = folder / f"{path.name}.{uuid.uuid4().hex[:12]}.part"
    try:
        con.execute(
            f"COPY (SELECT {_CACHE_COLUMNS} FROM read_parquet([{files}], "
            f"union_by_name = true)) TO {_literal(str(tmp))} (FORMAT parquet)"
        )
        os.replace(tmp, path)  # readers see the whole file or none
        # An outdated cache goes once no query that listed it can still be reading it.
        for old in folder.glob(f"{CACHE_PREFIX}*{CACHE_SUFFIX}"):
            if old != path and old.stat().st_mtime < time.time() - OUTDATED_KEPT_S:
                old.unlink(missing_ok=True)
    except (OSError, duckdb.Error):
        tmp.unlink(missing_ok=True)
        return None
    return path


def _segments(folder: Path) -> list[os.DirEntry[str]]:
    """The Parquet segments of a ``date=`` folder (none when it is absent)."""
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.name.endswith(".parquet")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _environment(environment: str | None) -> list[str]:
    return [] if environment is None else ["environment = $environment"]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()

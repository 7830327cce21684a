"""The prediction log read back: DuckDB over the Parquet segments, no server needed.

Two views, ``predictions`` and ``labels``, cover every segment under
``settings.logs_path`` (``endpoint`` and ``date`` come from the folder names). They
exist, with their base columns, even before anything was written, so a query or a
monitor never fails on an empty log.

The per-endpoint readers (`tail`, `window`, `failures`, `traffic`) name only that
endpoint's ``date=`` folders in the time range, select only the columns they need and
leave filtering, ordering and limits to DuckDB, so a million rows answer in well under
a second. `traffic` and `by_variant` add the summaries in the segments' footers
(`modelport.monitoring.traffic`) and read rows only of segments across the window's
edges, and `failures` only segments whose summary counts a failure: what the watch
loop asks every minute costs per segment, not per row.

Example::

    store = LogStore(settings)
    store.query("SELECT variant, count(*) FROM predictions GROUP BY variant")
    store.traffic("fraud", since=datetime.now(UTC) - timedelta(minutes=5))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from modelport.errors import InvalidInput
from modelport.monitoring.records import (
    BASE_SCHEMA,
    LABEL_SCHEMA,
    OK,
    endpoint_folder,
    expire_partitions,
)
from modelport.monitoring.traffic import (
    SQL_KEY,
    Figures,
    Group,
    Sketch,
    Summaries,
    Summary,
    by_group,
)
from modelport.settings import Settings
from modelport.uri import NAME_PATTERN

if TYPE_CHECKING:
    import pandas as pd

P = ParamSpec("P")
R = TypeVar("R")

_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}
_PARTITIONS = {"endpoint": "VARCHAR", "date": "DATE"}
_FAILURE_COLUMNS = ["prediction_id", "ts", "status", "error", "model", "version"]


def quote(name: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _timestamp(value: dt.datetime) -> str:
    """A timezone-aware SQL timestamp (naive datetimes are taken as UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return f"TIMESTAMPTZ '{aware.astimezone(dt.UTC).isoformat()}'"


def _empty(schema: pa.Schema, partitions: dict[str, str]) -> str:
    """A SELECT with the schema's columns and no rows: the view before any file exists."""
    typed = [f"NULL::{_SQL_TYPES.get(f.type, 'TIMESTAMPTZ')} AS {quote(f.name)}" for f in schema]
    typed += [f"NULL::{t} AS {quote(n)}" for n, t in partitions.items()]
    return f"SELECT {', '.join(typed)} WHERE false"


def _read(patterns: list[str], partitions: dict[str, str]) -> str:
    files = ", ".join(_literal(p) for p in patterns)
    types = ", ".join(f"{quote(n)}: {t}" for n, t in partitions.items())
    return (
        f"SELECT * FROM read_parquet([{files}], hive_partitioning = true, "
        f"union_by_name = true, hive_types = {{{types}}})"
    )


#: Reads that meet a segment the writer replaced while DuckDB was reading it (an open
#: segment is rewritten with each flush, through a rename) are tried again this often.
REREAD_TRIES = 3


def reread(read: Callable[P, R]) -> Callable[P, R]:
    """``read``, tried again when DuckDB found a segment torn by a concurrent rewrite
    (``TProtocolException``: it read a footer of one version of the file and data of
    the next); any other error, or the last try's, is raised."""

    @functools.wraps(read)
    def again(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, REREAD_TRIES + 1):
            try:
                return read(*args, **kwargs)
            except duckdb.Error as exc:
                if attempt == REREAD_TRIES or "TProtocolException" not in str(exc):
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    return again


class LogStore:
    """Read the prediction log (and labels) of ``settings.logs_path`` with DuckDB."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.logs_path
        self._traffic = Summaries()

    # -- SQL -------------------------------------------------------------------

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the views ``predictions`` and ``labels``."""
        con = _connection()
        con.execute(f"CREATE VIEW predictions AS {self._predictions()}")
        con.execute(f"CREATE VIEW labels AS {self._labels()}")
        return con

    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` over the views; the result as an Arrow table.

        Raises `InvalidInput` with DuckDB's message when the SQL is wrong.
        """
        try:
            return self._query(sql)
        except duckdb.Error as exc:
            raise InvalidInput(
                f"the query failed: {exc}",
                hint="query the views predictions and labels, e.g. "
                "SELECT endpoint, status, count(*) FROM predictions GROUP BY ALL",
            ) from None

    @reread
    def _query(self, sql: str) -> pa.Table:
        with self.connect() as con:
            relation = con.sql(sql)
            return relation.to_arrow_table() if relation is not None else pa.table({})

    def search(
        self,
        *,
        prediction_id: str | None = None,
        endpoint: str | None = None,
        environment: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
    ) -> pa.Table:
        """Logged rows, newest first, each with every column and its newest label
        (``label``, ``label_value``, ``label_ts``; null when none was given).

        ``prediction_id`` matches a prediction id or a request id (every row of that
        request); the other filters narrow by endpoint, environment and ``[since,
        until)``. Values are quoted as SQL literals, never pasted as SQL.
        """
        where = []
        if prediction_id is not None:
            literal = _literal(prediction_id)
            where.append(f"(p.prediction_id = {literal} OR p.request_id = {literal})")
        if endpoint is not None:
            where.append(f"p.endpoint = {_literal(endpoint)}")
        if environment is not None:
            where.append(f"p.environment = {_literal(environment)}")
        if since is not None:
            where.append(f"p.ts >= {_timestamp(since)}")
        if until is not None:
            where.append(f"p.ts < {_timestamp(until)}")
        return self.query(
            "SELECT p.*, l.label, l.label_value, l.ts AS label_ts FROM predictions p "
            "LEFT JOIN (SELECT prediction_id, arg_max(label, ts) AS label, "
            "arg_max(label_value, ts) AS label_value, max(ts) AS ts "
            "FROM labels GROUP BY prediction_id) l USING (prediction_id)"
            f"{_where(where)} "
            f"ORDER BY p.ts DESC, p.prediction_id LIMIT {int(limit)}"
        )

    def _predictions(self, endpoint: str | None = None, dates: list[str] | None = None) -> str:
        """SQL for the prediction rows of one endpoint (or all) on some dates (or all)."""
        base = self.root / "predictions"
        if endpoint is None:
            patterns = [base / "*" / "*" / "*.parquet"] if _any_file(base, "*/*/*.parquet") else []
        else:
            folder = endpoint_folder(self.root, _endpoint(endpoint))
            days = dates if dates is not None else _dates(folder)
            patterns = [
                folder / f"date={day}" / "*.parquet"
                for day in days
                if _any_file(folder / f"date={day}", "*.parquet")
            ]
        if not patterns:
            return _empty(BASE_SCHEMA, _PARTITIONS)
        return _read([str(p) for p in patterns], _PARTITIONS)

    def _labels(self) -> str:
        base = self.root / "labels"
        if not _any_file(base, "*/*.parquet"):
            return _empty(LABEL_SCHEMA, {"date": "DATE"})
        return _read([str(base / "*" / "*.parquet")], {"date": "DATE"})

    # -- one endpoint ------------------------------------------------------------

    def tail(self, endpoint: str, n: int = 20) -> pd.DataFrame:
        """The last ``n`` rows of ``endpoint``, every column, oldest first."""
        return self.window(endpoint, last=n, only_ok=False)

    @reread
    def window(
        self,
        endpoint: str,
        *,
        since: dt.datetime | None = None,
        last: int | None = None,
        columns: list[str] | None = None,
        only_ok: bool = True,
        version: int | None = None,
    ) -> pd.DataFrame:
        """The rows drift is computed on: the last ``last`` rows and/or those since
        ``since``, of one ``version`` or all, oldest first.

        ``columns`` picks columns (a name no segment has comes back all null); by
        default every column.
        """
        where = ["NOT shadow"]
        if only_ok:
            where.append(f"status = '{OK}'")
        if since is not None:
            where.append(f"ts >= {_timestamp(since)}")
        if version is not None:
            where.append(f"version = {int(version)}")
        days = self._days(endpoint, since)
        with _connection() as con:
            if last is None:
                source = self._predictions(endpoint, days)
            else:
                source, cutoff = self._newest(con, endpoint, days, where, last)
                if cutoff is not None:  # row groups older than the cutoff are skipped
                    where.append(f"ts >= {_timestamp(cutoff)}")
            select = "*" if columns is None else _columns(con, source, columns)
            sql = f"SELECT {select}, ts AS __ts FROM ({source}){_where(where)}"
            if last is not None:
                sql = f"SELECT * FROM ({sql} ORDER BY __ts DESC LIMIT {int(last)})"
            frame = con.sql(f"SELECT * FROM ({sql}) ORDER BY __ts").df()
        return frame.drop(columns="__ts")

    def _days(self, endpoint: str, since: dt.datetime | None) -> list[str]:
        """The endpoint's ``date=`` folders from ``since``'s day on (all without it)."""
        days = _dates(endpoint_folder(self.root, _endpoint(endpoint)))
        if since is None:
            return days
        first = _utc(since).date().isoformat()
        return [d for d in days if d >= first]

    def _newest(
        self,
        con: duckdb.DuckDBPyConnection,
        endpoint: str,
        days: list[str],
        where: list[str],
        rows: int,
    ) -> tuple[str, dt.datetime | None]:
        """SQL for the segments that hold the newest ``rows`` rows matching ``where``,
        and a time all of those rows are at or after (None when there are fewer).

        First from the files alone, never their rows (`_newest_segments`); when their
        metadata cannot tell, by reading the fewest newest days that hold enough rows.
        """
        folder = endpoint_folder(self.root, _endpoint(endpoint))
        found = _newest_segments(con, _segments(folder, days), where, rows)
        if found is not None:
            files, cutoff = found
            return _read(files, _PARTITIONS), cutoff
        take = 1
        while True:
            source = self._predictions(endpoint, days[-take:])
            sql = (
                f"SELECT ts FROM ({source}){_where(where)} "
                f"ORDER BY ts DESC LIMIT 1 OFFSET {max(int(rows) - 1, 0)}"
            )
            oldest = con.sql(sql).fetchall()
            if oldest or take >= len(days):
                return source, oldest[0][0] if oldest else None
            take *= 2

    @reread
    def failures(
        self, endpoint: str, *, since: dt.datetime, limit: int = 5
    ) -> list[dict[str, Any]]:
        """The most recent failed requests since ``since`` (one row each), newest first.

        Only segments whose traffic summary counts a failure (or that have none) are read.
        """
        files = [
            segment.path
            for segment, summary in self._summaries_between(endpoint, since)
            if summary is None or summary.errors
        ]
        if not files:
            return []
        source = _read(files, _PARTITIONS)
        names = ", ".join(quote(c) for c in _FAILURE_COLUMNS)
        sql = (
            f"SELECT {names} FROM ({source}) WHERE status <> '{OK}' AND NOT shadow "
            f"AND ts >= {_timestamp(since)} AND ends_with(prediction_id, '-0') "
            f"ORDER BY ts DESC LIMIT {int(limit)}"
        )
        with _connection() as con:
            rows = con.sql(sql).fetchall()
        return [dict(zip(_FAILURE_COLUMNS, row, strict=True)) for row in rows]

    def _days_between(self, endpoint: str, since: dt.datetime, until: dt.datetime) -> list[str]:
        end = _utc(until).date().isoformat()
        return [d for d in self._days(endpoint, since) if d <= end]

    def _summaries_between(
        self, endpoint: str, since: dt.datetime, until: dt.datetime | None = None
    ) -> list[tuple[_Segment, Summary | None]]:
        """The segments that can hold requests of ``[since, until)`` (no end: since
        ``since``), each with its traffic summary (None for a segment without one): those
        written since ``since`` (a row is stamped before its segment is written) whose
        summary does not place every request outside the range."""
        folder = endpoint_folder(self.root, _endpoint(endpoint))
        if until is None:
            days, hi = self._days(endpoint, since), _NO_END
        else:
            days, hi = self._days_between(endpoint, since, until), _micros(until)
        written_since = _utc(since).timestamp() - _CLOCK_SLACK_SECONDS
        lo = _micros(since)
        found = []
        for segment in _segments(folder, days):
            if segment.written < written_since:
                continue
            summary = self._traffic.get(segment.path, segment.stat)
            if summary is None or not summary.outside(lo, hi):
                found.append((segment, summary))
        return found

    def _groups(
        self,
        endpoint: str,
        since: dt.datetime,
        until: dt.datetime,
        environment: str | None = None,
    ) -> dict[Group, Figures]:
        """Requests, failures and latency sketch of each (variant, shadow) of
        ``endpoint`` in ``[since, until)`` (of one ``environment``, or all).

        Segments wholly inside the range add the summaries in their footers; those
        across its edges, or without a summary, are read: one row per request (its
        first), bucketed as the sketches are.
        """
        lo, hi = _micros(since), _micros(until)
        found: list[Mapping[Group, Figures]] = []
        read = []
        for segment, summary in self._summaries_between(endpoint, since, until):
            if summary is None or not summary.within(lo, hi):
                read.append(segment.path)
            elif environment is None or summary.environment == environment:
                found.append(summary.groups)
        if read:
            found.append(self._read_groups(read, since, until, environment))
        return by_group(found)

    def _read_groups(
        self, files: list[str], since: dt.datetime, until: dt.datetime, environment: str | None
    ) -> dict[Group, Figures]:
        key = SQL_KEY.format(column="latency_s")
        sql = (
            f"SELECT variant, shadow, status <> '{OK}' AS failed, "
            f"CASE WHEN status = '{OK}' AND latency_s IS NOT NULL THEN {key} END AS bucket, "
            f"count(*) FROM ({_read(files, _PARTITIONS)}) "
            f"WHERE ts >= {_timestamp(since)} AND ts < {_timestamp(until)} "
            f"AND ends_with(prediction_id, '-0') {_environment(environment)}GROUP BY ALL"
        )
        with _connection() as con:
            rows = con.sql(sql).fetchall()
        counted: dict[Group, list[int]] = {}
        buckets: dict[Group, list[tuple[int, int]]] = {}
        for variant, shadow, failed, bucket, n in rows:
            group = (None if variant is None else str(variant), bool(shadow))
            totals = counted.setdefault(group, [0, 0])
            totals[0] += n
            totals[1] += n if failed else 0
            if bucket is not None:
                buckets.setdefault(group, []).append((bucket, n))
        return {
            group: Figures(requests, errors, Sketch.from_pairs(buckets.get(group, [])))
            for group, (requests, errors) in counted.items()
        }

    @reread
    def by_variant(
        self,
        endpoint: str,
        *,
        since: dt.datetime,
        until: dt.datetime,
        environment: str | None = None,
    ) -> dict[tuple[str, bool], dict[str, Any]]:
        """Requests, errors, error rate and latency (p50, p99 of answered requests) of
        each (variant, shadow) of ``endpoint`` in ``[since, until)`` (of one
        ``environment``, or all). Latency comes from sketches: within 0.5%."""
        groups = self._groups(endpoint, since, until, environment)
        return {
            (variant, shadow): _figures(f)
            for (variant, shadow), f in groups.items()
            if variant is not None
        }

    def outputs(
        self,
        endpoint: str,
        variant: str,
        column: str,
        *,
        since: dt.datetime,
        until: dt.datetime,
        shadow: bool = False,
        environment: str | None = None,
    ) -> pd.Series:
        """One output column (``out_label``...) of a variant's answered rows in
        ``[since, until)``; empty when the variant has no such rows or column."""
        source = self._predictions(endpoint, self._days_between(endpoint, since, until))
        with _connection() as con:
            names = {str(r[0]) for r in con.sql(f"DESCRIBE SELECT * FROM ({source})").fetchall()}
            if column not in names:
                import pandas

                return pandas.Series(dtype=float)
            sql = (
                f"SELECT {quote(column)} FROM ({source}) WHERE status = '{OK}' "
                f"AND variant = $variant AND shadow = {bool(shadow)} "
                f"AND ts >= {_timestamp(since)} AND ts < {_timestamp(until)} "
                f"{_environment(environment)}"
            )
            frame = con.execute(sql, {"variant": variant}).df()
        return frame[column]

    @reread
    def traffic(
        self, endpoint: str, *, since: dt.datetime, until: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Requests, errors and latency of ``endpoint`` in ``[since, until)``.

        ``requests`` and ``errors`` count logged requests; ``requests_per_s`` estimates
        the real rate (logged requests / seconds / ``log_sample_rate``); ``p50_s`` and
        ``p99_s`` are over answered requests (None when there were none), ``error_rate``
        over all (None without requests).
        """
        until = until or dt.datetime.now(dt.UTC)
        groups = self._groups(endpoint, since, until).items()
        live = Figures.total([figures for (_, shadow), figures in groups if not shadow])
        seconds = max((until - since).total_seconds(), 1e-9)
        rate = self.settings.log_sample_rate
        return _figures(live) | {
            "requests_per_s": live.requests / seconds / rate if rate > 0 else 0.0,
            "since": _utc(since).isoformat(),
            "until": _utc(until).isoformat(),
        }

    # -- housekeeping ------------------------------------------------------------

    def apply_retention(self, now: dt.datetime | None = None) -> list[Path]:
        """Delete date partitions older than ``log_retention_days``; what was removed."""
        return expire_partitions(self.root, self.settings.log_retention_days, now)


def _connection() -> duckdb.DuckDBPyConnection:
    """An in-memory connection that shows times in UTC, as they are stored."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _figures(figures: Figures) -> dict[str, Any]:
    """Requests, failed requests, error rate and the p50 / p99 latency of the answered."""
    requests, errors = figures.requests, figures.errors
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p50_s": figures.latency.quantile(0.5),
        "p99_s": figures.latency.quantile(0.99),
    }


#: A time after every logged request, in microseconds.
_NO_END = 2**63 - 1


def _micros(value: dt.datetime) -> int:
    """Microseconds since the epoch, as ``ts`` is stored."""
    return int(_utc(value).timestamp() * 1_000_000)


def _environment(environment: str | None) -> str:
    """``AND environment = '...' `` for one environment; nothing for all."""
    return "" if environment is None else f"AND environment = {_literal(environment)} "


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _columns(con: duckdb.DuckDBPyConnection, source: str, columns: list[str]) -> str:
    """A select list of ``columns``; one no segment has is selected as NULL."""
    present = {row[0] for row in con.sql(f"DESCRIBE {source}").fetchall()}
    names = [quote(c) if c in present else f"NULL AS {quote(c)}" for c in columns]
    return ", ".join(names) or "NULL AS __none"


def _endpoint(name: str) -> str:
    """An endpoint name safe to put in a path and a glob."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"{name!r} is not an endpoint name",
            hint="names are letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return name


#: How far a segment's write time may trail the newest row it holds, in seconds: rows are
#: stamped on the request's clock and written within ``log_flush_seconds``; the slack
#: also covers writers on other hosts sharing the folder with a clock a little ahead.
_CLOCK_SLACK_SECONDS = 60.0


def _newest_segments(
    con: duckdb.DuckDBPyConnection, segments: list[_Segment], where: list[str], rows: int
) -> tuple[list[str], dt.datetime] | None:
    """Of ``segments``, those that can hold the newest
    ``rows`` rows matching ``where``, and a time all of those rows are at or after; None
    when the segments' metadata cannot tell.

    The most recently written segments until they hold ``rows`` rows give a cutoff
    (their oldest row's time, from the ``ts`` statistics); only segments written since
    the cutoff can hold rows after it (a row is stamped before its segment is written).
    One count then checks that enough rows there match ``where``. A busy endpoint writes
    thousands of segments an hour, so this reads a few footers where the fallback reads
    every row of a day.
    """
    newest_first = sorted(segments, key=lambda s: (s.written, s.path), reverse=True)
    held, cutoff = 0, None
    for _, path, _ in newest_first:
        found = _rows_and_oldest(path)
        if found is None:
            return None
        count, oldest = found
        if oldest is not None:
            held, cutoff = held + count, oldest if cutoff is None else min(cutoff, oldest)
        if held >= rows:
            break
    if held < rows or cutoff is None:
        return None
    since = cutoff.timestamp() - _CLOCK_SLACK_SECONDS
    files = [path for written, path, _ in newest_first if written >= since]
    checks = [*where, f"ts >= {_timestamp(cutoff)}"]
    matching = con.sql(f"SELECT count(*) FROM ({_read(files, _PARTITIONS)}){_where(checks)}")
    if matching.fetchall()[0][0] < rows:
        return None
    return files, cutoff


class _Segment(NamedTuple):
    """A segment as listed: when it was written, where, and its ``stat``."""

    written: float
    path: str
    stat: os.stat_result


def _segments(folder: Path, days: list[str]) -> list[_Segment]:
    """The ``.parquet`` segments of ``days``."""
    found = []
    for day in days:
        with contextlib.suppress(OSError):
            for item in os.scandir(folder / f"date={day}"):
                if item.name.endswith(".parquet") and item.is_file():
                    stat = item.stat()
                    found.append(_Segment(stat.st_mtime, item.path, stat))
    return found


def _rows_and_oldest(path: str) -> tuple[int, dt.datetime | None] | None:
    """A segment's row count and its oldest ``ts`` (from the footer's statistics; None
    for an empty segment); None when the footer cannot be read or lacks them."""
    try:
        meta = pq.read_metadata(path)
        if meta.num_rows == 0:
            return 0, None
        schema = meta.schema
        column = next(i for i in range(len(schema)) if schema.column(i).path == "ts")
        oldest = []
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max:
                return None
            oldest.append(stats.min)
    except (OSError, pa.ArrowException, StopIteration):
        return None
    return meta.num_rows, _utc(min(oldest))


def _dates(folder: Path) -> list[str]:
    """``YYYY-MM-DD`` of every ``date=`` folder under ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p.name.removeprefix("date=") for p in folder.glob("date=*") if p.is_dir())


def _any_file(folder: Path, pattern: str) -> bool:
    found: Iterator[Path] = folder.glob(pattern) if folder.is_dir() else iter(())
    return next(found, None) is not None


def _utc(value: dt.datetime) -> dt.datetime:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)

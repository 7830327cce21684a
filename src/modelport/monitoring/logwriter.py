"""The prediction log's writer: records off the hot path, Parquet segments in batches.

`PredictionLog.record` is what a request pays: a sampling draw and an append of
references to a queue, never a copy, a lock or I/O. Every `BUILD_SECONDS` the queued
records become Arrow tables, a few milliseconds of work done on the event loop between
requests (or on the writer thread where there is no loop): two threads taking turns
with the GIL cost a loaded server more than the work itself. Every
``log_flush_seconds`` a daemon thread writes one Parquet segment per (endpoint, day),
with the GIL released while it encodes::

    {logs_path}/predictions/endpoint={endpoint}/date={YYYY-MM-DD}/{host}-{pid}-{seq:08d}.parquet

A segment is written to ``NAME.tmp`` and renamed, so readers never see half a file.
A segment stays open for a few minutes (or `SEGMENT_ROWS` rows): each flush rewrites
it with the new rows added and renames it over itself, so a quiet endpoint makes a
few files an hour rather than one a second, and a reader sees either the old or the
new content, never both. A busy endpoint, one with a segment's worth of rows built
before the flush, gets a new segment instead, written a row group (a segment's worth
of rows or more) at a time as its rows are built (`SegmentWriter`) and closed at the
flush: its rows are encoded in slices soon after they arrive, not held for a second
and encoded at once.

Nothing here may fail or slow a prediction. When the queue holds ``log_buffer_rows``
rows new records are dropped; when a write fails (no space, no permission, anything)
that batch is dropped, the segment being rewritten stays as it was, and the next
flush starts a new, small segment. Both are counted by reason (`LogStats`), reported
to the ``observer`` (the metrics layer) and logged at most once a minute.

Example::

    log = PredictionLog(settings, "production", observer=metrics.log_observer())
    log.start()
    log.record("fraud", version, "fraud-v3", ids, columns, prediction, latency_s=0.002)
    log.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
import pyarrow as pa

from modelport.errors import ModelportError
from modelport.monitoring.records import (
    ENDPOINT,
    TS,
    Entry,
    SegmentWriter,
    build_tables,
    date_of_day,
    day_of,
    endpoint_folder,
    entry,
    expire_partitions,
    merge,
    rows_of,
    write_parquet,
    write_segment,
)
from modelport.monitoring.records import new_prediction_ids as _new_ids
from modelport.monitoring.traffic import concat
from modelport.registry import ModelVersion
from modelport.runtimes.base import Prediction
from modelport.serving.memory import release_free_memory
from modelport.settings import Settings
from modelport.signature import Columns

log = logging.getLogger(__name__)

#: A segment is rewritten with each flush while it and the new rows fit in this many
#: rows (so a flush never writes much more than this, or than its own rows) ...
SEGMENT_ROWS = 4096
#: ... or is this old; then the next flush starts a new one.
SEGMENT_SECONDS = 300.0
#: Rows kept in memory across all open segments (oldest segments close first).
HELD_ROWS = 100_000
#: How often queued records become Arrow tables (segments are written every
#: ``log_flush_seconds``): small, evenly spread slices of work, and records that die
#: young, before the garbage collector moves them to its oldest generation. A busy
#: endpoint's tables are written as soon as the writer thread wakes (as often), so this
#: also bounds the memory its rows take: 64-row requests at full load log about
#: 200,000 rows a second per worker, some 50 MB.
BUILD_SECONDS = 0.1
WARN_EVERY_SECONDS = 60.0
RETENTION_EVERY_SECONDS = 3600.0

#: Drop reasons, as `LogStats.dropped_rows` and the observer count them.
BUFFER_FULL, WRITE_ERROR, CLOSED = "buffer_full", "write_error", "closed"

Observer = Callable[[str, int], None]


@dataclass(frozen=True)
class LogStats:
    """The writer's totals since it started."""

    written_rows: int
    dropped_rows: dict[str, int]
    buffered_rows: int
    segments: int
    last_error: str | None

    @property
    def dropped(self) -> int:
        return sum(self.dropped_rows.values())


@dataclass
class _Segment:
    """A segment this writer may still rewrite: its file and everything in it."""

    path: Path
    table: pa.Table
    opened: float
    rows: int = 0


@dataclass
class _Counts:
    written: int = 0
    segments: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {WRITE_ERROR: 0})
    reported_written: int = 0
    reported_dropped: int = 0
    last_error: str | None = None
    unwarned: int = 0
    next_warning: float = 0.0


class PredictionLog:
    """Record predictions on the hot path; build tables on the event loop, write
    segments from a thread.

    ``record`` and ``record_failure`` are called from one thread (the event loop);
    ``start`` and ``close`` bracket the writer thread's life.
    """

    def __init__(
        self, settings: Settings, environment: str, *, observer: Observer | None = None
    ) -> None:
        self.root = settings.logs_path
        self.environment = environment
        self.observer = observer
        self.sample_rate = settings.log_sample_rate
        self.flush_seconds = settings.log_flush_seconds
        self.retention_days = settings.log_retention_days
        self._limit = settings.log_buffer_rows
        self._queue: deque[Entry] = deque()
        #: the model and version of every variant seen ("fraud-v3" -> ("fraud", 3))
        self._models: dict[str, tuple[str, int]] = {}
        # _appended and _refused change on the caller's thread only; _taken (rows that
        # left the buffer, written or dropped) under _counting.
        self._appended = 0
        self._taken = 0
        self._refused = {BUFFER_FULL: 0, CLOSED: 0}
        self._closed = False
        self._counts = _Counts()
        self._built: dict[tuple[str, int], list[pa.Table]] = {}
        self._segments: dict[tuple[str, int], _Segment] = {}
        self._streams: dict[tuple[str, int], SegmentWriter] = {}
        #: rows out of the buffer at the last flush, and whether the heap was trimmed
        #: since rows last left it: under load it never is (a trim costs the next
        #: allocations their page faults again), once traffic stops it is, once
        self._taken_at_flush = 0
        self._trimmed = True
        self._seq = 0
        self._host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
        self._flushing = threading.Lock()  # one flush at a time
        self._building = threading.Lock()  # the queue and the built tables, briefly
        self._counting = threading.Lock()  # counters both threads update
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_retention = 0.0

    # -- the hot path ----------------------------------------------------------

    def record(
        self,
        endpoint: str,
        version: ModelVersion,
        variant: str,
        prediction_ids: list[str],
        columns: Columns,
        prediction: Prediction,
        latency_s: float,
        *,
        shadow: bool = False,
        stale: list[tuple[str, ...]] | None = None,
    ) -> None:
        """Queue one answered request (all its rows): a tuple of references, no array
        copied; never raises, never blocks. ``shadow``: a shadow variant's answer to a
        copy of the request that ``prediction_ids`` name. ``stale``: per row, the feature
        views whose values were missing or past their TTL (enriched endpoints)."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        n = len(prediction_ids)
        if self._appended - self._taken + n > self._limit:
            self._refuse(n)
            return
        self._appended += n
        if variant not in self._models:
            self._models[variant] = (version.name, version.version)
        self._queue.append(
            entry(
                endpoint,
                variant,
                prediction_ids,
                columns,
                prediction.outputs,
                latency_s,
                shadow=shadow,
                stale=tuple(stale) if stale is not None else None,
            )
        )

    def record_failure(
        self,
        endpoint: str,
        exc: ModelportError,
        *,
        version: ModelVersion | None = None,
        columns: Columns | None = None,
        latency_s: float = 0.0,
        prediction_ids: list[str] | None = None,
        shadow: bool = False,
    ) -> None:
        """Queue a failed request: its status (the error code), message and any inputs.

        One row per decoded input row, or one row when nothing was decoded. A shadow's
        failure keeps the live request's ``prediction_ids``.
        """
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        rows = len(next(iter(columns.values()))) if columns else 0
        ids = prediction_ids if prediction_ids else _new_ids(max(rows, 1))
        if self._appended - self._taken + len(ids) > self._limit:
            self._refuse(len(ids))
            return
        self._appended += len(ids)
        variant = None
        if version is not None:
            variant = f"{version.name}-v{version.version}"
            self._models.setdefault(variant, (version.name, version.version))
        decoded = columns if rows else None
        self._queue.append(
            entry(endpoint, variant, ids, decoded, None, latency_s, exc.code, str(exc), shadow)
        )

    def _refuse(self, rows: int) -> None:
        self._refused[CLOSED if self._closed else BUFFER_FULL] += rows

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (a daemon: it never holds the process up), and the
        building on the running event loop if called from one.

        First builds and writes (to memory) a one-row table, so that what libraries
        set up on first use happens now, before requests, not in the first flush.
        """
        if self._thread is not None:
            return
        warm_up(self.environment)
        with contextlib.suppress(RuntimeError):  # no running loop: the thread builds
            self._loop = asyncio.get_running_loop()
            self._loop.call_later(BUILD_SECONDS, self._build_on_loop)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="modelport-prediction-log", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is buffered and stop; records after this are dropped as ``closed``."""
        self._closed = True
        self._limit = -1
        thread, self._thread = self._thread, None
        if thread is None:
            self.flush()
            return
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("prediction log: the writer did not finish within %.1f s", timeout)
        elif self._queue:  # queued between the writer's last drain and the close
            self.flush()

    def _run(self) -> None:
        due = time.monotonic() + self.flush_seconds
        while not self._stop.wait(min(BUILD_SECONDS, self.flush_seconds)):
            if self._loop is None:
                self._build()
            if time.monotonic() >= due:
                self._flush(build=self._loop is None)
                self._maybe_expire()
                due = time.monotonic() + self.flush_seconds
            else:
                self._write_busy()
        self._flush(build=True)

    def _build_on_loop(self) -> None:
        if self._closed or self._loop is None:
            return
        self._build()
        self._loop.call_later(BUILD_SECONDS, self._build_on_loop)

    # -- the writer ------------------------------------------------------------

    @property
    def stats(self) -> LogStats:
        c = self._counts
        return LogStats(
            written_rows=c.written,
            dropped_rows={**self._refused, **c.dropped},
            buffered_rows=max(self._appended - self._taken, 0),
            segments=c.segments,
            last_error=c.last_error,
        )

    def flush(self) -> None:
        """Write every queued record now (the writer thread does this on its own)."""
        self._flush(build=True)

    def _build(self) -> None:
        """Turn queued records into Arrow tables, kept until the next flush."""
        with self._building:
            self._guarded(self._build_queued)

    def _flush(self, *, build: bool) -> None:
        with self._flushing:
            with self._building:
                if build:
                    self._guarded(self._build_queued)
                built, self._built = self._built, {}
            self._guarded(lambda: self._write_built(built))
            built.clear()  # the written tables, and the request arrays they came from
            taken = self._taken
            if taken != self._taken_at_flush:
                self._trimmed = False
            elif not self._trimmed:  # traffic stopped: give back what the heap kept
                release_free_memory()
                self._trimmed = True
            self._taken_at_flush = taken
            self._report()

    def _write_busy(self) -> None:
        """Stream what is built for busy endpoints into their segments now, rather than
        hold it until the flush: a segment's worth at a time, so that every row group
        but a segment's last has at least `SEGMENT_ROWS` rows."""
        with self._flushing:
            with self._building:
                busy = {
                    key: tables
                    for key, tables in self._built.items()
                    if _rows(tables) >= SEGMENT_ROWS
                }
                for key in busy:
                    del self._built[key]
            for key, tables in busy.items():
                self._guarded(partial(self._stream, key, tables))
            busy.clear()

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # a bug here must not stop the writer
            log.exception("prediction log: unexpected error while writing")
            self._counts.last_error = f"{type(exc).__name__}: {exc}"

    def _build_queued(self) -> None:
        queue = self._queue
        entries = [queue.popleft() for _ in range(len(queue))]
        if not entries:
            return
        for key, group in _by_endpoint_and_day(entries).items():
            try:
                batch = build_tables(group, self.environment, self._models)
            except Exception as exc:
                self._drop(rows_of(group), key, exc)
                continue
            if batch.rejected:
                self._drop(batch.rejected_rows, key, batch.rejected[0][1])
            self._built.setdefault(key, []).extend(batch.tables)

    def _write_built(self, built: dict[tuple[str, int], list[pa.Table]]) -> None:
        """One segment per (endpoint, day) (two if a column changed type); the segments
        streamed since the last flush are closed."""
        for key, tables in built.items():
            if key in self._streams or _rows(tables) >= SEGMENT_ROWS:
                self._stream(key, tables)
                continue
            for table in merge(tables):
                try:
                    self._append(key, table)
                except Exception as exc:
                    self._drop(table.num_rows, key, exc)
                else:
                    with self._counting:
                        self._counts.written += table.num_rows
                        self._taken += table.num_rows
        for key in list(self._streams):
            self._close_stream(key)
        self._close_old_segments()

    def _stream(self, key: tuple[str, int], tables: list[pa.Table]) -> None:
        """Write ``tables`` as a row group of the segment streaming for ``key`` (a new
        one, if none is, or if a column changed type)."""
        for table in merge(tables):
            stream = self._streams.get(key)
            if stream is not None and not stream.fits(table):
                self._close_stream(key)
                stream = None
            try:
                if stream is None:
                    stream = SegmentWriter(self._new_path(*key), table.schema)
                    self._streams[key] = stream
                    self._segments.pop(key, None)  # complete on disk; no longer rewritten
                stream.write(table)
            except Exception as exc:
                self._abort_stream(self._streams.pop(key, None), key, table.num_rows, exc)
                continue
            with self._counting:
                self._taken += table.num_rows

    def _close_stream(self, key: tuple[str, int]) -> None:
        stream = self._streams.pop(key)
        try:
            stream.close()
        except Exception as exc:
            self._abort_stream(stream, key, 0, exc)
            return
        with self._counting:
            self._counts.written += stream.rows
        self._counts.segments += 1

    def _abort_stream(
        self, stream: SegmentWriter | None, key: tuple[str, int], rows: int, exc: Exception
    ) -> None:
        """Drop ``rows`` (not yet out of the buffer) and the unfinished segment."""
        streamed = 0
        if stream is not None:
            stream.abort()
            streamed = stream.rows
        self._drop(rows, key, exc, streamed=streamed)

    def _append(self, key: tuple[str, int], table: pa.Table) -> None:
        """Add ``table`` to the open segment of ``key`` (or a new one) and write it."""
        segment = self._segments.pop(key, None)  # kept again only once written
        combined: pa.Table | None = None
        if segment is not None and segment.rows + table.num_rows <= SEGMENT_ROWS:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError):  # a type changed
                combined = concat([segment.table, table])
        new = segment is None or combined is None
        if segment is None or combined is None:
            segment = _Segment(self._new_path(*key), table, time.monotonic())
            combined = table
        write_segment(combined, segment.path)
        segment.table, segment.rows = combined, combined.num_rows
        self._segments[key] = segment
        self._counts.segments += new

    def _new_path(self, endpoint: str, day: int) -> Path:
        folder = endpoint_folder(self.root, endpoint) / f"date={date_of_day(day)}"
        while True:
            self._seq += 1
            path = folder / f"{self._host}-{os.getpid()}-{self._seq:08d}.parquet"
            if not path.exists():  # a former process with this pid may have used the name
                return path

    def _close_old_segments(self) -> None:
        now = time.monotonic()
        for key, segment in list(self._segments.items()):
            if now - segment.opened > SEGMENT_SECONDS or segment.rows >= SEGMENT_ROWS:
                del self._segments[key]
        held = sum(s.rows for s in self._segments.values())
        for key in sorted(self._segments, key=lambda k: self._segments[k].opened):
            if held <= HELD_ROWS:
                break
            held -= self._segments.pop(key).rows

    def _drop(self, rows: int, key: tuple[str, int], exc: Exception, *, streamed: int = 0) -> None:
        """Count ``rows`` from the buffer, and ``streamed`` rows that had left it for an
        unfinished segment, as dropped."""
        c = self._counts
        with self._counting:
            self._taken += rows
            c.dropped[WRITE_ERROR] += rows + streamed
            c.last_error = f"{type(exc).__name__}: {exc}"
            c.unwarned += rows + streamed
        now = time.monotonic()
        if now >= c.next_warning:
            log.warning(
                "prediction log: could not write %d row(s) of endpoint %s under %s (%s); "
                "they are dropped and counted, predictions are not affected; "
                "the writer tries again at the next flush",
                c.unwarned,
                key[0],
                self.root,
                c.last_error,
            )
            c.unwarned = 0
            c.next_warning = now + WARN_EVERY_SECONDS

    def _report(self) -> None:
        """Tell the observer what was written and dropped since the last report."""
        if self.observer is None:
            return
        c = self._counts
        dropped = sum(chain(self._refused.values(), c.dropped.values()))
        written, lost = c.written - c.reported_written, dropped - c.reported_dropped
        c.reported_written, c.reported_dropped = c.written, dropped
        try:
            if written:
                self.observer("written", written)
            if lost:
                self.observer("dropped", lost)
        except Exception:
            log.exception("prediction log: the observer failed")

    def _maybe_expire(self) -> None:
        now = time.monotonic()
        if now < self._next_retention:
            return
        self._next_retention = now + RETENTION_EVERY_SECONDS
        try:
            expire_partitions(self.root, self.retention_days)
        except OSError as exc:
            log.warning("prediction log: could not apply retention under %s: %s", self.root, exc)


def warm_up(environment: str) -> None:
    """Build and write one row in memory: pyarrow's first-use costs, paid at start."""
    outputs = {"y": np.zeros(1), "p": np.zeros((1, 2))}
    one = entry("-", None, _new_ids(1), {"x": np.zeros(1)}, outputs, 0.0)
    for table in build_tables([one], environment, {}).tables:
        write_parquet(table, pa.BufferOutputStream())


def _rows(tables: list[pa.Table]) -> int:
    return sum(t.num_rows for t in tables)


def _by_endpoint_and_day(entries: list[Entry]) -> dict[tuple[str, int], list[Entry]]:
    """Entries by (endpoint, UTC day); one group without a Python loop when all agree."""
    endpoints = set(map(itemgetter(ENDPOINT), entries))
    stamps = list(map(itemgetter(TS), entries))
    first, last = day_of(min(stamps)), day_of(max(stamps))
    if len(endpoints) == 1 and first == last:
        return {(entries[0][ENDPOINT], first): entries}
    groups: dict[tuple[str, int], list[Entry]] = {}
    for item in entries:
        groups.setdefault((item[ENDPOINT], day_of(item[TS])), []).append(item)
    return groups

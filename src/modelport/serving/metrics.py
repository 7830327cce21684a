"""Prometheus metrics of the serving path and of the monitor, summed across worker processes.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (the server sets it), every worker writes its
samples there and ``/metrics`` answers for all of them: counters and histograms are summed
over every worker that ever ran (a replaced worker's counts stay); the live gauges sum the
workers running now; the monitor's gauges show what it set last. Without the variable the
metrics are this process's own. Names follow Prometheus conventions: base units (seconds,
bytes, ratios in 0..1), ``_total`` counters. Children (one per label set) are resolved once
and cached, so a request costs a few increments, not a label lookup.

Serving (``model``, ``version`` are empty on a failed request; an endpoint that is not
served is ``-``; "live" gauges sum the running workers):

| metric | type | labels | meaning |
| --- | --- | --- | --- |
| modelport_requests_total | counter | endpoint, model, version, code | requests by HTTP status |
| modelport_request_errors_total | counter | endpoint, model, version, kind | failed, by error |
| modelport_request_duration_seconds | histogram | endpoint, model, version | body read to answer |
| modelport_predicted_rows_total | counter | endpoint, model, version | rows predicted |
| modelport_requests_in_flight | live gauge | endpoint | requests being answered |
| modelport_batch_queue_requests | live gauge | endpoint, model, version | waiting for a model |
| modelport_batch_queue_wait_seconds | histogram | endpoint, model, version | wait for the model |
| modelport_model_duration_seconds | histogram | endpoint, model, version | one model call |
| modelport_batch_size_rows | histogram | endpoint, model, version | rows per model call |
| modelport_loaded_models | live gauge | state | versions loading, ready, failed |
| modelport_model_memory_bytes | live gauge | model, version, kind | estimated memory (see below) |
| modelport_prediction_log_rows_total | counter | outcome | log rows written or dropped |
| modelport_shadow_requests_total | counter | endpoint, variant, outcome | shadow copies |
| modelport_rate_limited_requests_total | counter | (none) | 429s on routes other than predict |
| modelport_breaker_state | live gauge (max) | dependency | 0 closed, 1 half-open, 2 open |

A shadow copy's ``outcome`` is ``answered``, ``failed`` (its model or its validation
failed) or ``shed`` (``shadow_max_pending`` copies were already queued; never run).
``kind`` of an error is its ``ModelportError.code`` (``invalid_input``, ``not_found``,
``payload_too_large``, ``model_loading``, ``prediction_failed`` ...) or ``internal``; the
limits of the serving path count there too: ``overloaded`` (shed, the model's queue was
full), ``rate_limited`` and ``deadline_exceeded``. A
model call is concatenating a batch, ``runtime.predict`` and splitting it, so queue wait
plus model time is the time a request spent in the batcher. A version's memory is the
growth of the process's resident set during its load (the artifact's size where that is
unknown or not positive): an estimate, 0 once the version is unloaded.

Monitoring, set by the monitor at each run (the value it set last, not a sum; NaN when a
value could not be computed; ``series`` is endpoint, model, version, column):

| metric | type | labels | meaning |
| --- | --- | --- | --- |
| modelport_drift_score | gauge | series, method | the column's drift statistic |
| modelport_drift_detected | gauge | series | 1 when the column drifted |
| modelport_psi | gauge | series | population stability index |
| modelport_missing_ratio | gauge | series | share of rows missing it |
| modelport_reference_missing_ratio | gauge | series | share of reference rows missing it |
| modelport_out_of_range_ratio | gauge | series | share outside the reference |
| modelport_model_performance | gauge | endpoint, model, version, metric | quality on labels |
| modelport_training_metric | gauge | endpoint, model, version, metric | registered metric |
| modelport_labelled_predictions | gauge | endpoint, model, version | predictions with a label |
| modelport_alerts_firing | gauge | alertname, severity, endpoint | 1 firing, 0 resolved |
| modelport_monitor_last_run_timestamp_seconds | gauge | endpoint | Unix time of the last run |
"""

from __future__ import annotations

import asyncio
import glob
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from modelport.registry import ModelVersion
from modelport.serving.batcher import BatchObserver
from modelport.serving.pool import PoolObserver, Slot, State

#: How often live counts (in flight, queued) and the request path's counters and
#: histograms are written to their metrics.
PUBLISH_SECONDS = 0.5
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MODEL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
MODEL_STATES: tuple[State, ...] = ("loading", "ready", "failed")
LOG_OUTCOMES = ("written", "dropped")

#: Labels of one column of a served version (the monitoring gauges).
_SERIES = ["endpoint", "model", "version", "column"]


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    """The metric families, registered once per process (the app factory makes one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        served = ["endpoint", "model", "version"]
        self.requests = Counter(
            "modelport_requests",
            "Predict requests answered, by HTTP status code.",
            [*served, "code"],
            registry=r,
        )
        self.errors = Counter(
            "modelport_request_errors",
            "Predict requests that failed, by error code (kind).",
            [*served, "kind"],
            registry=r,
        )
        self.duration = Histogram(
            "modelport_request_duration_seconds",
            "Time from the request's body read to its answer sent.",
            served,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("modelport_predicted_rows", "Rows predicted.", served, registry=r)
        self.in_flight = Gauge(
            "modelport_requests_in_flight",
            "Predict requests being answered now.",
            ["endpoint"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "modelport_batch_queue_requests",
            "Requests waiting in a batch queue for their model call.",
            served,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_wait = Histogram(
            "modelport_batch_queue_wait_seconds",
            "Time a request waited in the batch queue before its model call started.",
            served,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.model_duration = Histogram(
            "modelport_model_duration_seconds",
            "Time of one model call (concatenating the batch, predicting, splitting it).",
            served,
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelport_batch_size_rows",
            "Rows per model call after adaptive batching.",
            served,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.loaded_models = Gauge(
            "modelport_loaded_models",
            "Model versions in the pool by state, summed over worker processes.",
            ["state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_memory = Gauge(
            "modelport_model_memory_bytes",
            "Estimated memory of a loaded model version: resident-set growth during its "
            "load, or its artifact's size where that is unknown; 0 once unloaded.",
            ["model", "version", "kind"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_rows = Counter(
            "modelport_prediction_log_rows",
            "Prediction-log rows written to disk or dropped because the buffer was full.",
            ["outcome"],
            registry=r,
        )
        self.shadow_requests = Counter(
            "modelport_shadow_requests",
            "Copies of live requests sent to shadow variants: answered, failed or shed.",
            ["endpoint", "variant", "outcome"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "modelport_breaker_state",
            "A dependency's circuit breaker (modelport.breaker): 0 closed, 1 half-open, "
            "2 open; the worst over the running worker processes.",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rate_limited = Counter(
            "modelport_rate_limited_requests",
            "Requests refused with 429 on routes other than predict (predict requests "
            'count in modelport_request_errors_total{kind="rate_limited"}).',
            registry=r,
        )
        self._monitor_families(r)

    def _monitor_families(self, r: CollectorRegistry) -> None:
        def gauge(name: str, documentation: str, labels: list[str]) -> Gauge:
            # One process (the lease holder's monitor) sets these: its latest value, never
            # a sum; "live" so that they go with it when it exits, until the next holder's run.
            return Gauge(
                name, documentation, labels, registry=r, multiprocess_mode="livemostrecent"
            )

        self.feature_stale_ratio = gauge(
            "modelport_feature_stale_ratio",
            "Share of an endpoint's enriched rows whose values of a feature view were "
            "missing or past the view's TTL, over the monitor window.",
            ["endpoint", "view"],
        )
        self.drift_score = gauge(
            "modelport_drift_score",
            "Drift statistic of a column against the reference, by test (method).",
            [*_SERIES, "method"],
        )
        self.drift_detected = gauge(
            "modelport_drift_detected", "1 when the column drifted, else 0.", _SERIES
        )
        self.psi = gauge(
            "modelport_psi",
            "Population stability index of a column against the reference.",
            _SERIES,
        )
        self.missing_ratio = gauge(
            "modelport_missing_ratio", "Share of rows missing the column (0..1).", _SERIES
        )
        self.reference_missing_ratio = gauge(
            "modelport_reference_missing_ratio",
            "Share of the reference (training) rows missing the column (0..1).",
            _SERIES,
        )
        self.out_of_range_ratio = gauge(
            "modelport_out_of_range_ratio",
            "Share of values outside the reference's range or categories (0..1).",
            _SERIES,
        )
        self.performance = gauge(
            "modelport_model_performance",
            "A quality metric of the model on its labelled predictions.",
            ["endpoint", "model", "version", "metric"],
        )
        self.training_metric = gauge(
            "modelport_training_metric",
            "A quality metric the version was registered with (offline, from training).",
            ["endpoint", "model", "version", "metric"],
        )
        self.labelled = gauge(
            "modelport_labelled_predictions",
            "Predictions in the monitoring window that have a label.",
            ["endpoint", "model", "version"],
        )
        self.alerts_firing = gauge(
            "modelport_alerts_firing",
            "1 while the alert fires, 0 once it resolved.",
            ["alertname", "severity", "endpoint"],
        )
        self.monitor_last_run = gauge(
            "modelport_monitor_last_run_timestamp_seconds",
            "Unix time of the monitor's last run for the endpoint.",
            ["endpoint"],
        )
        self._live: list[LiveCount | LiveCounter | LiveHistogram] = []
        self._firing: set[tuple[str, str, str]] = set()
        self._alerts_lock = threading.Lock()

    # -- hooks of the serving path ---------------------------------------------

    def batch_observer(self, endpoint: str, version: ModelVersion) -> BatchObserver:
        """The observer a batcher reports its model calls and queue to."""
        return _BatchMetrics(self, (endpoint, version.name, str(version.version)))

    def pool_observer(self) -> PoolObserver:
        """The callback a `ModelPool` calls when a version's state changes."""
        states = {state: self.loaded_models.labels(state) for state in MODEL_STATES}

        def observe(slot: Slot, before: State | None, after: State | None) -> None:
            if before is not None:
                states[before].dec()
            if after is not None:
                states[after].inc()
            if before != after and "ready" in (before, after):
                v = slot.version
                memory = self.model_memory.labels(v.name, str(v.version), slot.kind)
                memory.set(slot.memory_bytes if after == "ready" else 0)

        return observe

    def log_observer(self) -> Callable[[str, int], None]:
        """The callback the prediction log calls, from any thread, with ``(outcome, rows)``:
        ``written`` once rows are on disk, ``dropped`` when they could not be kept."""
        children = {outcome: self.log_rows.labels(outcome) for outcome in LOG_OUTCOMES}

        def observe(outcome: str, rows: int) -> None:
            child = children.get(outcome)
            (child if child is not None else self.log_rows.labels(outcome)).inc(rows)

        return observe

    def breaker_observer(self) -> Callable[[str, str], None]:
        """The callback a `modelport.breaker.CircuitBreaker` calls, from any thread, with
        ``(dependency, state)`` on every change of state."""
        from modelport.breaker import STATE_VALUES

        values: dict[str, int] = {str(state): v for state, v in STATE_VALUES.items()}

        def observe(dependency: str, state: str) -> None:
            self.breaker_state.labels(dependency).set(values.get(state, 2))

        return observe

    def shadow_observer(self) -> Callable[[str, str, str], None]:
        """The callback a `ShadowRunner` calls with ``(endpoint, variant, outcome)`` per
        shadow copy (on the event loop); a label set's child is resolved once."""
        children: dict[tuple[str, str, str], Counter] = {}

        def observe(endpoint: str, variant: str, outcome: str) -> None:
            key = (endpoint, variant, outcome)
            child = children.get(key)
            if child is None:
                child = children[key] = self.shadow_requests.labels(*key)
            child.inc()

        return observe

    # -- the monitor's gauges ----------------------------------------------------

    def set_drift(
        self,
        endpoint: str,
        model: str,
        version: int | str,
        column: str,
        method: str,
        score: float | None,
        drifted: bool,
        psi: float | None,
    ) -> None:
        """One column's drift: its test's statistic, whether it drifted, and its PSI."""
        series = (endpoint, model, str(version), column)
        self.drift_score.labels(*series, method).set(_value(score))
        self.drift_detected.labels(*series).set(1 if drifted else 0)
        self.psi.labels(*series).set(_value(psi))

    def set_feature_staleness(self, endpoint: str, view: str, ratio: float | None) -> None:
        """One feature view's stale share on one endpoint (NaN: no enriched rows)."""
        self.feature_stale_ratio.labels(endpoint, view).set(_value(ratio))

    def set_quality(
        self,
        endpoint: str,
        model: str,
        version: int | str,
        column: str,
        missing_ratio: float | None,
        out_of_range_ratio: float | None,
        reference_missing_ratio: float | None = None,
    ) -> None:
        """One column's data quality: shares (0..1) of missing and out-of-range values,
        and the reference's missing share to compare with."""
        series = (endpoint, model, str(version), column)
        self.missing_ratio.labels(*series).set(_value(missing_ratio))
        self.reference_missing_ratio.labels(*series).set(_value(reference_missing_ratio))
        self.out_of_range_ratio.labels(*series).set(_value(out_of_range_ratio))

    def set_performance(
        self,
        endpoint: str,
        model: str,
        version: int | str,
        metrics: Mapping[str, float | None],
        labelled: int,
        training: Mapping[str, float] | None = None,
    ) -> None:
        """A version's quality metrics on labelled predictions, how many had labels, and
        the metrics it was registered with (what ``performance_drop`` compares to)."""
        served = (endpoint, model, str(version))
        for metric, value in metrics.items():
            self.performance.labels(*served, metric).set(_value(value))
        for metric, value in (training or {}).items():
            self.training_metric.labels(*served, metric).set(_value(value))
        self.labelled.labels(*served).set(labelled)

    def set_alerts(self, firing: Iterable[tuple[str, str, str]]) -> None:
        """The alerts firing now, as ``(alertname, severity, endpoint)``, at 1; every alert
        shown firing but not in ``firing`` goes to 0, also one that another worker set
        (the monitor may have moved there)."""
        now = set(firing)
        with self._alerts_lock:
            for labels in (self._firing | self._shown_firing()) - now:
                self.alerts_firing.labels(*labels).set(0)
            for labels in now:
                self.alerts_firing.labels(*labels).set(1)
            self._firing = now

    def _shown_firing(self) -> set[tuple[str, str, str]]:
        """The alerts other worker processes show firing (none when single-process)."""
        directory = multiprocess_dir()
        if directory is None:
            return set()
        from prometheus_client import multiprocess

        files = glob.glob(os.path.join(directory, "gauge_livemostrecent_*.db"))
        return {
            (s.labels["alertname"], s.labels["severity"], s.labels["endpoint"])
            for metric in multiprocess.MultiProcessCollector.merge(files, accumulate=False)
            if metric.name == "modelport_alerts_firing"
            for s in metric.samples
            if s.value
        }

    def mark_monitor_run(self, endpoint: str, when: datetime | float) -> None:
        """The monitor ran for ``endpoint`` at ``when`` (a datetime or Unix seconds)."""
        seconds = when.timestamp() if isinstance(when, datetime) else float(when)
        self.monitor_last_run.labels(endpoint).set(seconds)

    # -- exposition ----------------------------------------------------------------

    def live(self, child: Gauge) -> LiveCount:
        """A count kept in memory and published to ``child`` (see `LiveCount`)."""
        return self._published(LiveCount(child))

    def live_counter(self, child: Counter) -> LiveCounter:
        """Increments kept in memory and added to ``child`` when published."""
        return self._published(LiveCounter(child))

    def live_histogram(self, child: Histogram) -> LiveHistogram:
        """Observations counted in memory and added to ``child`` when published."""
        return self._published(LiveHistogram(child))

    def _published(self, live: _Live) -> _Live:
        self._live.append(live)
        return live

    def publish(self) -> None:
        """Write what every live metric counted to its metric."""
        for count in list(self._live):
            count.publish()

    async def publish_every(self, seconds: float = PUBLISH_SECONDS) -> None:
        """Publish live counts until cancelled (the app runs this for its lifetime)."""
        while True:
            await asyncio.sleep(seconds)
            self.publish()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition for ``/metrics``: every worker's samples when multiprocess."""
        self.publish()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        forget_dead_workers(directory)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=directory)
        return generate_latest(combined), CONTENT_TYPE_LATEST


class LiveCount:
    """A gauge counted as a plain integer on the request path.

    In multi-process mode every gauge write is an mmap write under a lock, too dear
    twice per request; `ServingMetrics.publish` copies the count to its gauge every
    `PUBLISH_SECONDS` and before each scrape answered by this process.
    """

    __slots__ = ("child", "shown", "value")

    def __init__(self, child: Gauge) -> None:
        self.child = child
        self.value = 0
        self.shown = 0

    def publish(self) -> None:
        value = self.value
        if value != self.shown:
            self.child.set(value)
            self.shown = value


class _Increments(Protocol):
    """A counter child, or one of the values a histogram child keeps."""

    def inc(self, amount: float) -> None: ...


class LiveCounter:
    """A counter child incremented as a plain number on the request path.

    In multi-process mode each increment is an mmap write under a lock (about a
    microsecond, several per request); here it is an addition, and `publish` adds what
    accrued to the child. A scrape answered by this process publishes first; another
    worker's increments show within `PUBLISH_SECONDS`, and a worker that is killed loses
    at most that much of them. One thread increments a given counter.
    """

    __slots__ = ("child", "shown", "total")

    def __init__(self, child: _Increments) -> None:
        self.child = child
        self.total = 0.0
        self.shown = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.total += amount

    def publish(self) -> None:
        total = self.total
        if total != self.shown:
            self.child.inc(total - self.shown)
            self.shown = total


class LiveHistogram:
    """A histogram child observed in memory on the request path: a `LiveCounter` for
    each of its buckets and one for its sum, over the values prometheus_client keeps
    for a histogram (one per bucket, made cumulative when exposed, and the sum: what
    its observe() increments). One thread observes a given histogram."""

    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, child: Histogram) -> None:
        self.bounds: list[float] = list(child._upper_bounds)  # ends with +Inf
        self.buckets = [LiveCounter(value) for value in child._buckets]
        self.sum = LiveCounter(child._sum)

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)].total += 1  # the first bound >= value
        self.sum.total += value

    def publish(self) -> None:
        for bucket in self.buckets:
            bucket.publish()
        self.sum.publish()


#: What `ServingMetrics.publish` writes out.
_Live = TypeVar("_Live", LiveCount, LiveCounter, LiveHistogram)


class _BatchMetrics:
    """A batcher's `BatchObserver`: its label children, resolved once."""

    __slots__ = ("_lock", "_model", "_queued", "_sizes", "_waits")

    def __init__(self, metrics: ServingMetrics, labels: tuple[str, str, str]) -> None:
        self._sizes = metrics.live_histogram(metrics.batch_size.labels(*labels))
        self._waits = metrics.live_histogram(metrics.queue_wait.labels(*labels))
        self._model = metrics.live_histogram(metrics.model_duration.labels(*labels))
        self._queued = metrics.live(metrics.queued.labels(*labels))
        self._lock = threading.Lock()  # calls end on the event loop or the batcher's thread

    def batch(self, rows: int, queue_waits: Sequence[float], model_seconds: float) -> None:
        with self._lock:
            self._sizes.observe(rows)
            self._model.observe(model_seconds)
            for wait in queue_waits:
                self._waits.observe(wait)

    def queued(self, change: int) -> None:
        self._queued.value += change


def _value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of worker processes that have exited.

    A worker that died (and was replaced) leaves its files behind; its counters must
    stay, but its in-flight requests, queue and loaded models went with it.
    """
    from prometheus_client import multiprocess

    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = path[: -len(".db")].rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

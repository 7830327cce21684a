"""Prometheus metrics of the serving path, summed across worker processes.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (the server sets it), every worker writes its
samples there and ``/metrics`` answers for all of them; otherwise the metrics are this
process's own. Names follow Prometheus conventions: base units, ``_total`` counters.

| metric | type | labels |
| --- | --- | --- |
| ``modelport_requests_total`` | counter | endpoint, model, version, code |
| ``modelport_request_duration_seconds`` | histogram | endpoint |
| ``modelport_predicted_rows_total`` | counter | endpoint, model, version |
| ``modelport_batch_size_rows`` | histogram | endpoint, model, version |
| ``modelport_batch_queue_wait_seconds`` | histogram | endpoint, model, version |
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from modelport.registry import ModelVersion
from modelport.serving.batcher import BatchObserver

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class ServingMetrics:
    """The metric families, registered once per process."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "modelport_requests",
            "Predict requests answered, by HTTP status code.",
            ["endpoint", "model", "version", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "modelport_request_duration_seconds",
            "Time from the request's body read to its answer.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter(
            "modelport_predicted_rows",
            "Rows predicted.",
            ["endpoint", "model", "version"],
            registry=r,
        )
        self.batch_size = Histogram(
            "modelport_batch_size_rows",
            "Rows per model call after adaptive batching.",
            ["endpoint", "model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "modelport_batch_queue_wait_seconds",
            "Time a request waited in the batch queue before its model call started.",
            ["endpoint", "model", "version"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    def batch_observer(self, endpoint: str, version: ModelVersion) -> BatchObserver:
        """The callback a batcher calls after each model call."""
        labels = (endpoint, version.name, str(version.version))
        sizes = self.batch_size.labels(*labels)
        waits = self.queue_wait.labels(*labels)

        def observe(rows: int, queue_waits: Sequence[float]) -> None:
            sizes.observe(rows)
            for wait in queue_waits:
                waits.observe(wait)

        return observe

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition for ``/metrics``: every worker's samples when multiprocess."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=directory)
        return generate_latest(combined), CONTENT_TYPE_LATEST

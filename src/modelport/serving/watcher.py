"""The server's watch loop: monitor every endpoint, export the gauges, evaluate alerts.

Every ``monitor_interval_seconds`` one process per environment (whoever holds the
``watch/<environment>`` lease in the registry database, among workers and replicas)
runs the monitor on each endpoint, keeps the report, sets the monitoring gauges and
evaluates the alert rules. The others wait; when the holder stops, its lease runs out
and another takes over. Nothing here is on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from modelport.alerting.engine import AlertEngine, Evaluation
from modelport.client import Client
from modelport.errors import ModelportError
from modelport.monitoring.labels import LabelStore
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.monitor import Monitor
from modelport.registry.watching import WatchStore
from modelport.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)


class Watcher:
    """Monitor and alert for the environment ``client.settings.env``."""

    def __init__(self, client: Client, *, metrics: ServingMetrics | None = None) -> None:
        settings = client.settings
        self.client = client
        self.environment = settings.env
        self.interval = settings.monitor_interval_seconds
        self.metrics = metrics
        self.watch = WatchStore(client.registry.engine)
        self.logs = LogStore(settings)
        self.monitor = Monitor(
            client, logs=self.logs, labels=LabelStore(settings, registry=client.registry)
        )
        self.engine = AlertEngine(
            client.registry,
            self.watch,
            self.logs,
            environment=settings.env,
            base_url=settings.base_url,
        )
        self.holder = f"{socket.gethostname()}-{os.getpid()}"
        self.lease = f"watch/{settings.env}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await asyncio.to_thread(self.watch.release_lease, self.lease, self.holder)
        await asyncio.to_thread(self.engine.close)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # the registry or the log being away must not stop the loop
                log.exception("watch loop failed; will retry")

    def tick(self, now: datetime | None = None) -> Evaluation | None:
        """One round, if this process holds the lease: monitor, keep, export, alert."""
        ttl = max(3 * self.interval, 10.0)
        if not self.watch.acquire_lease(self.lease, self.holder, ttl):
            return None
        now = now or datetime.now(UTC)
        config = self.engine.config()
        for deployment in self.client.registry.list_deployments(self.environment):
            try:
                report = self.monitor.run(
                    deployment.endpoint,
                    environment=self.environment,
                    thresholds=config.thresholds(),
                    now=now,
                )
            except ModelportError as exc:
                log.warning("monitor of %s skipped: %s", deployment.endpoint, exc)
                continue
            self.watch.add_monitor_run(
                self.environment, deployment.endpoint, report["model"], report["version"], report
            )
            self._export(report, now)
        evaluation = self.engine.evaluate(now)
        if self.metrics is not None:
            self.metrics.set_alerts(
                (a.name, a.labels.get("severity", ""), a.labels.get("endpoint", ""))
                for a in evaluation.firing
            )
        return evaluation

    def _export(self, report: dict[str, Any], now: datetime) -> None:
        """Set the monitoring gauges from one report."""
        m = self.metrics
        if m is None:
            return
        endpoint, model, version = report["endpoint"], report["model"], str(report["version"])
        drift = report.get("drift") or {}
        for column in drift.get("columns") or []:
            name = column["column"]
            m.set_drift(
                endpoint,
                model,
                version,
                name,
                column.get("method") or "",
                column.get("score"),
                bool(column.get("drifted")),
                column.get("psi"),
            )
            m.set_quality(
                endpoint,
                model,
                version,
                name,
                column.get("missing_rate"),
                column.get("out_of_range_rate"),
                column.get("reference_missing_rate"),
            )
        for column in drift.get("outputs") or []:
            m.set_drift(
                endpoint,
                model,
                version,
                f"output:{column['column']}",
                column.get("method") or "",
                column.get("score"),
                bool(column.get("drifted")),
                column.get("psi"),
            )
        performance = report.get("performance") or {}
        metrics = {k: v for k, v in performance.items() if isinstance(v, int | float)}
        metrics.pop("n_labelled", None)
        metrics.pop("version", None)
        m.set_performance(
            endpoint,
            model,
            version,
            metrics,
            int(performance.get("n_labelled") or 0),
            training=report.get("training_metrics") or {},
        )
        m.mark_monitor_run(endpoint, now)

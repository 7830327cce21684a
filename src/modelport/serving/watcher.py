"""The server's background loops: monitor and alert, and drive rollouts.

Every ``monitor_interval_seconds`` one process per environment (whoever holds the
``watch/<environment>`` lease in the registry database, among workers and replicas)
runs the monitor on each endpoint, keeps the report, sets the monitoring gauges and
evaluates the alert rules. The others wait; when the holder stops, its lease runs out
and another takes over. Nothing here is on the request path, and only the holder
loads what monitoring needs (pandas, SciPy, DuckDB): a worker that only predicts
stays small.

Every ``rollout_interval_seconds`` the holder of the ``rollouts/<environment>`` lease
runs the rollout driver (`modelport.rollouts.Rollouts.tick`): it judges running
rollouts whose step interval is over and starts rollouts for followed aliases that
moved. A rollback's incident goes out through the same alert engine and routes.

Every ``batch_interval_seconds`` the holder of the ``batch/<environment>`` lease starts
the environment's scheduled batch jobs whose cron slot has come
(`modelport.batch.jobs.Scheduler`), each on a thread of its own. A server whose
environment has no scheduled job only asks the registry whether one appeared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from modelport.client import Client
from modelport.errors import ModelportError
from modelport.registry.watching import WatchStore
from modelport.serving.metrics import ServingMetrics

if TYPE_CHECKING:
    from modelport.alerting.engine import AlertEngine, Evaluation
    from modelport.alerting.model import Alert
    from modelport.batch.jobs import Scheduler
    from modelport.monitoring.monitor import Monitor
    from modelport.registry.rollouts import Rollout
    from modelport.rollouts import Rollouts

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
        self.holder = f"{socket.gethostname()}-{os.getpid()}"
        self.lease = f"watch/{settings.env}"
        self.rollout_interval = settings.rollout_interval_seconds
        self.rollout_lease = f"rollouts/{settings.env}"
        self.batch_interval = settings.batch_interval_seconds
        self.batch_lease = f"batch/{settings.env}"
        self._tasks: list[asyncio.Task[None]] = []

    @cached_property
    def monitor(self) -> Monitor:
        from modelport.monitoring.labels import LabelStore
        from modelport.monitoring.logstore import LogStore
        from modelport.monitoring.monitor import Monitor

        settings = self.client.settings
        labels = LabelStore(settings, registry=self.client.registry)
        return Monitor(self.client, logs=LogStore(settings), labels=labels)

    @cached_property
    def engine(self) -> AlertEngine:
        from modelport.alerting.engine import AlertEngine

        return AlertEngine(
            self.client.registry,
            self.watch,
            self.monitor.logs,
            environment=self.environment,
            base_url=self.client.settings.base_url,
        )

    @cached_property
    def rollouts(self) -> Rollouts:
        from modelport.rollouts import Rollouts

        return Rollouts(self.client, environment=self.environment, announce=self._announce)

    @cached_property
    def batch(self) -> Scheduler:
        from modelport.batch.jobs import Scheduler

        return Scheduler(self.client, self.environment)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.interval > 0:
            self._tasks.append(loop.create_task(self._run(self.interval, self.tick)))
        if self.rollout_interval > 0:
            self._tasks.append(loop.create_task(self._run(self.rollout_interval, self.drive)))
        if self.batch_interval > 0:
            self._tasks.append(loop.create_task(self._run(self.batch_interval, self.schedule)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for lease in (self.lease, self.rollout_lease, self.batch_lease):
            try:
                await asyncio.to_thread(self.watch.release_lease, lease, self.holder)
            except Exception as exc:  # registry away: the lease runs out by itself
                log.warning("could not release the %s lease (%s); it expires by itself", lease, exc)
        if "engine" in self.__dict__:  # built only by a process that held the lease
            await asyncio.to_thread(self.engine.close)

    async def _run(self, interval: float, step: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(step)
            except Exception:  # the registry or the log being away must not stop the loop
                log.exception("%s loop failed; will retry", step.__name__)

    def drive(self, now: datetime | None = None) -> list[Rollout] | None:
        """One round of the rollout driver, if this process holds its lease: judge
        running rollouts whose interval is over, follow moved aliases."""
        ttl = max(3 * self.rollout_interval, 10.0)
        if not self.watch.acquire_lease(self.rollout_lease, self.holder, ttl):
            return None
        if "rollouts" not in self.__dict__ and not self._rollout_work():
            return []  # nothing to drive: the driver (and what judging imports) stays unloaded
        return self.rollouts.tick(now)

    def schedule(self, now: datetime | None = None) -> list[tuple[str, datetime]] | None:
        """One round of the batch scheduler, if this process holds its lease: start the
        jobs whose slot has come (at ``now``, default the clock); what it started."""
        ttl = max(3 * self.batch_interval, 10.0)
        if not self.watch.acquire_lease(self.batch_lease, self.holder, ttl):
            return None
        if "batch" not in self.__dict__:
            from modelport.registry.batch import BatchStore

            if not BatchStore(self.client.registry.engine).has_schedules(self.environment):
                return []  # no scheduled job: the scheduler stays unloaded
        return self.batch.tick(now)

    def _rollout_work(self) -> bool:
        """Whether a rollout is active or an endpoint follows an alias (two small queries)."""
        from modelport.registry.rollouts import RolloutStore

        store = RolloutStore(self.client.registry.engine)
        if store.find(self.environment, active_only=True, limit=1):
            return True
        deployments = self.client.registry.list_deployments(self.environment)
        return any(d.spec.follow is not None for d in deployments)

    def _announce(self, alert: Alert, diagnosis: dict[str, Any]) -> int:
        incident, _ = self.engine.announce(alert, diagnosis)
        return incident

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
        for view in (report.get("features") or {}).get("views") or []:
            m.set_feature_staleness(endpoint, view["view"], view.get("stale_ratio"))
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

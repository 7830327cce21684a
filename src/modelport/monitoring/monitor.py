"""The monitor: drift, data quality, traffic and performance of one endpoint, now.

It reads the endpoint's recent predictions from the prediction log (the version the
endpoint serves, successful requests only), compares them with the reference profile
and sample stored with that version at registration, joins the labels that arrived,
and returns one report. The server runs it on a schedule (``monitor_interval_seconds``)
and keeps each report in the registry for alert rules and incidents;
``modelport monitor run`` runs it on demand.

Example::

    report = Monitor(client).run("fraud", window="1h")
    report["drift"]["columns"][0]["psi"]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelport.durations import parse_duration
from modelport.errors import InvalidInput
from modelport.monitoring.drift import ColumnThreshold, drift_report
from modelport.monitoring.labels import LabelStore
from modelport.monitoring.logstore import LogStore

if TYPE_CHECKING:
    from modelport.client import Client
    from modelport.registry import ModelVersion

#: Labelled predictions are looked for this far back (labels arrive late).
PERFORMANCE_WINDOW = "30d"


class Monitor:
    """Compute monitoring reports for the endpoints of one environment."""

    def __init__(
        self,
        client: Client,
        *,
        logs: LogStore | None = None,
        labels: LabelStore | None = None,
    ) -> None:
        self.client = client
        self.logs = logs or LogStore(client.settings)
        self.labels = labels or LabelStore(client.settings, registry=client.registry)

    def run(
        self,
        endpoint: str,
        *,
        environment: str | None = None,
        window: str | None = None,
        last: int | None = None,
        thresholds: dict[str, ColumnThreshold] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """One report for ``endpoint``: drift over ``window`` (and/or the ``last`` rows)."""
        started = time.perf_counter()
        env = environment or self.client.settings.env
        window = window or self.client.settings.monitor_window
        try:
            span = parse_duration(window)
        except InvalidInput as exc:
            raise InvalidInput(f"--window: {exc.message}", hint=exc.hint) from None
        if last is not None and last < 1:
            raise InvalidInput(f"--last must be a positive number of rows, not {last}")
        # A window's rows are capped (its newest): an hour of a busy endpoint is more
        # rows than drift needs and than a serving process should hold.
        cap = self.client.settings.monitor_max_rows
        last = cap if last is None else min(last, cap)
        deployment = self.client.registry.get_deployment(env, endpoint)
        primary = deployment.spec.primary
        mv = self.client.registry.get_version(primary.model, primary.version)
        now = now or datetime.now(UTC)
        since = now - timedelta(seconds=span)
        live = self.logs.window(endpoint, since=since, last=last, version=mv.version)
        report: dict[str, Any] = {
            "environment": env,
            "endpoint": endpoint,
            "model": mv.name,
            "version": mv.version,
            "window": window,
            "last": last,
            "since": since.isoformat(),
            "until": now.isoformat(),
            "rows": int(len(live)),
            "drift": self._drift(mv, live, thresholds),
            "performance": self._performance(endpoint, mv, now),
            "training_metrics": dict(mv.metrics),
            "traffic": dict(self.logs.traffic(endpoint, since=since, until=now)),
            "features": _freshness(deployment.spec.features, live),
        }
        report["seconds"] = round(time.perf_counter() - started, 4)
        return report

    def _drift(
        self, mv: ModelVersion, live: Any, thresholds: dict[str, ColumnThreshold] | None
    ) -> dict[str, Any]:
        if not mv.profile:
            return {
                "rows": int(len(live)),
                "columns": [],
                "outputs": [],
                "note": f"{mv.uri} has no reference profile to measure drift against; "
                "register versions with a sample of their training data (--sample)",
            }
        inputs = {f"in_{c}": c for c in mv.profile.get("columns", {})}
        frame = live[[c for c in inputs if c in live.columns]].rename(columns=inputs)
        for column in inputs.values():
            if column not in frame.columns:
                frame[column] = None
        outputs = {
            name: f"out_{name}"
            for name in (mv.profile.get("outputs") or {})
            if f"out_{name}" in live.columns
        }
        for column in outputs.values():
            frame[column] = live[column]
        reference = self.client.reference_sample(mv)
        result = drift_report(
            mv.profile, reference, frame, output_columns=outputs, thresholds=thresholds
        )
        return result.to_dict()

    def _performance(self, endpoint: str, mv: ModelVersion, now: datetime) -> dict[str, Any]:
        since = now - timedelta(seconds=parse_duration(PERFORMANCE_WINDOW))
        rows = self.labels.performance(endpoint, since=since, until=now)
        mine = [r for r in rows if r.get("version") == mv.version and r.get("model") == mv.name]
        if not mine:
            return {"n_labelled": 0, "since": since.isoformat()}
        return dict(mine[0]) | {"since": since.isoformat()}


def _freshness(views: tuple[str, ...], live: Any) -> dict[str, Any]:
    """Per feature view of the deployment, the share of logged rows whose value was
    missing or past the view's TTL when the request was enriched (``stale_features``)."""
    if not views:
        return {"rows": 0, "views": []}
    column = live["stale_features"] if "stale_features" in live.columns else None
    marks = [list(m) for m in column.dropna()] if column is not None else []
    rows = len(marks)
    return {
        "rows": rows,
        "views": [
            {
                "view": view,
                "stale_ratio": sum(view in m for m in marks) / rows if rows else None,
            }
            for view in views
        ],
    }

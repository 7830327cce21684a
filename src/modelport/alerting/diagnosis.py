"""What an incident tells the on-call engineer first.

Built once when an incident opens (and refreshed while it fires): the signal and its
recent values, what changed around the start (deployments with time and who, new
model versions), the most drifted columns, sample failing requests with their
errors, stale features, a link to the incident on the server, and the exact command
that puts the endpoint back on the version it served before.

Example::

    diagnosis = Diagnoser(registry, logs, watch, base_url).build(alert, history, now)
    diagnosis["rollback_command"]
    # 'modelport deploy fraud models:/fraud/2 --env production --reason "roll back ..."'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelport.alerting.model import Alert
from modelport.errors import ModelportError
from modelport.registry import DeploymentEvent, Registry
from modelport.registry.watching import WatchStore

if TYPE_CHECKING:
    from modelport.monitoring.logstore import LogStore

log = logging.getLogger(__name__)

#: How far before an incident's start changes are looked for.
CHANGES_LOOKBACK = timedelta(hours=24)
TOP_COLUMNS = 5
SAMPLE_FAILURES = 5


def _primary(spec: dict[str, Any] | None) -> tuple[str, int] | None:
    variants = (spec or {}).get("variants") or []
    if not variants:
        return None
    first = max(variants, key=lambda v: v.get("weight", 0))
    return str(first["model"]), int(first["version"])


def rollback_command(
    environment: str, endpoint: str, history: Sequence[DeploymentEvent], incident: int | None
) -> str | None:
    """The command that serves the version the endpoint had before its current one."""
    if not history:
        return None
    current = _primary(history[-1].spec)
    for event in reversed(history):
        for spec in (event.spec, event.previous):
            before = _primary(spec)
            if before is not None and before != current:
                model, version = before
                why = f"roll back: incident {incident}" if incident else "roll back"
                return (
                    f"modelport deploy {endpoint} models:/{model}/{version} "
                    f'--env {environment} --reason "{why}"'
                )
    return None


class Diagnoser:
    """Gather an incident's diagnosis from the registry, the log and the monitor."""

    def __init__(
        self, registry: Registry, logs: LogStore, watch: WatchStore, base_url: str
    ) -> None:
        self.registry = registry
        self.logs = logs
        self.watch = watch
        self.base_url = base_url.rstrip("/")

    def build(
        self,
        alert: Alert,
        values: Sequence[tuple[datetime, float | None]],
        *,
        threshold: float,
        incident_id: int | None,
    ) -> dict[str, Any]:
        environment = alert.labels.get("environment", "")
        endpoint = alert.labels.get("endpoint")
        diagnosis: dict[str, Any] = {
            "signal": {
                "name": alert.labels.get("signal", alert.name),
                "value": alert.value,
                "threshold": threshold,
                "values": [[t.isoformat(), v] for t, v in values],
                "summary": alert.annotations.get("summary", ""),
            },
            "changes": [],
            "drifted_columns": [],
            "failing_requests": [],
            "stale_features": [],
            "link": f"{self.base_url}/v1/incidents/{incident_id}" if incident_id else None,
            "rollback_command": None,
        }
        if endpoint is None:
            return diagnosis
        for part, gather in (
            ("changes", self._changes),
            ("drifted_columns", self._drifted),
            ("failing_requests", self._failures),
            ("stale_features", self._stale),
        ):
            try:
                diagnosis[part] = gather(environment, endpoint, alert.starts_at)
            except (ModelportError, OSError, ValueError):
                log.exception("diagnosis of %s: could not gather %s", endpoint, part)
        try:
            history = self.registry.history(environment, endpoint)
            diagnosis["rollback_command"] = rollback_command(
                environment, endpoint, history, incident_id
            )
        except ModelportError:
            log.exception("diagnosis of %s: could not read the deployment history", endpoint)
        return diagnosis

    def _changes(self, environment: str, endpoint: str, start: datetime) -> list[dict[str, Any]]:
        since = start - CHANGES_LOOKBACK
        changes: list[dict[str, Any]] = []
        models: set[str] = set()
        for event in self.registry.history(environment, endpoint):
            primary = _primary(event.spec)
            if primary is not None:
                models.add(primary[0])
            if event.created_at < since:
                continue
            before, after = _primary(event.previous), primary
            serves = lambda p: f"models:/{p[0]}/{p[1]}" if p else "nothing"  # noqa: E731
            changes.append(
                {
                    "time": event.created_at.isoformat(),
                    "kind": f"deployment {event.action}",
                    "summary": f"{endpoint}: {serves(before)} -> {serves(after)}"
                    + (f" ({event.reason})" if event.reason else ""),
                    "actor": event.actor,
                }
            )
        for model in sorted(models):
            for mv in self.registry.list_versions(model):
                if mv.created_at >= since:
                    changes.append(
                        {
                            "time": mv.created_at.isoformat(),
                            "kind": "new version",
                            "summary": f"{mv.uri} registered ({mv.flavor})",
                            "actor": mv.created_by,
                        }
                    )
        return sorted(changes, key=lambda c: c["time"])

    def _drifted(self, environment: str, endpoint: str, _start: datetime) -> list[dict[str, Any]]:
        report = self.watch.latest_monitor_run(environment, endpoint)
        columns = ((report or {}).get("drift") or {}).get("columns") or []
        ranked = sorted(columns, key=lambda c: c.get("psi") or 0.0, reverse=True)
        return [
            {
                "column": c.get("column"),
                "method": c.get("method"),
                "score": c.get("score"),
                "threshold": c.get("threshold"),
                "drifted": c.get("drifted"),
                "psi": c.get("psi"),
            }
            for c in ranked[:TOP_COLUMNS]
        ]

    def _stale(self, environment: str, endpoint: str, _start: datetime) -> list[str]:
        """Feature views whose values were missing or past their TTL for some rows of the
        latest monitor run, worst first, as lines."""
        report = self.watch.latest_monitor_run(environment, endpoint)
        views = ((report or {}).get("features") or {}).get("views") or []
        stale = [v for v in views if (v.get("stale_ratio") or 0.0) > 0]
        stale.sort(key=lambda v: v["stale_ratio"], reverse=True)
        return [
            f"{v['view']}: {v['stale_ratio']:.1%} of enriched rows missing or past the TTL; "
            f"refresh with: modelport features materialize-incremental {v['view']}"
            for v in stale
        ]

    def _failures(self, _environment: str, endpoint: str, start: datetime) -> list[dict[str, Any]]:
        rows = self.logs.failures(
            endpoint, since=start - timedelta(minutes=15), limit=SAMPLE_FAILURES
        )
        return [
            {
                "prediction_id": r.get("prediction_id"),
                "time": _text_time(r.get("ts")),
                "status": r.get("status"),
                "error": r.get("error"),
            }
            for r in rows
        ]


def _text_time(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)

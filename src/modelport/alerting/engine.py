"""The built-in alert engine: evaluate rules, group alerts, open incidents, notify.

Each `evaluate` reads every endpoint's signals, keeps a rule ``pending`` until its
condition has held for its ``for`` duration, then fires it. Firing alerts are routed
(`modelport.alerting.routing`) and grouped per receiver by the route's ``group_by``
labels, as Alertmanager does: a group notifies after ``group_wait``, again when new
alerts join it (at most every ``group_interval``), repeats every ``repeat_interval``,
and sends one ``resolved`` notice when all its alerts clear. A group's first firing
notice opens an incident with its diagnosis.

Every group's state lives in the registry database and changes by compare-and-set,
so however many workers or replicas evaluate, exactly one sends each notification.
Deliveries run in a thread pool with retries and never block the caller; every
attempt is recorded with the incident.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelport.alerting.diagnosis import Diagnoser
from modelport.alerting.model import SEVERITY_ORDER, Alert, Notification
from modelport.alerting.notifiers import DeliveryAttempt, Notifier, build_notifier, deliver
from modelport.alerting.routing import resolve_routes
from modelport.alerting.rules import AlertRule, EndpointSignals, signal_value
from modelport.alerting.watchconfig import WatchConfig, load_watch_config
from modelport.errors import ModelportError
from modelport.registry import Registry
from modelport.registry.watching import AlertGroupState, WatchStore

if TYPE_CHECKING:
    from modelport.monitoring.logstore import LogStore

log = logging.getLogger(__name__)

#: Recent values of each (rule, endpoint) kept for incidents' diagnoses.
HISTORY = 20


@dataclass
class Evaluation:
    """What one `AlertEngine.evaluate` found and did."""

    firing: list[Alert] = field(default_factory=list)
    pending: list[Alert] = field(default_factory=list)
    notified: list[Notification] = field(default_factory=list)
    values: dict[tuple[str, str], float | None] = field(default_factory=dict)


@dataclass
class _Group:
    key: str
    receiver: str
    labels: dict[str, str]
    group_wait: float
    group_interval: float
    repeat_interval: float
    alerts: list[Alert] = field(default_factory=list)


class AlertEngine:
    """Rules -> alerts -> groups -> incidents and notifications, for one environment."""

    def __init__(
        self,
        registry: Registry,
        watch: WatchStore,
        logs: LogStore,
        *,
        environment: str,
        base_url: str,
        executor: Executor | None = None,
        retry_backoff_s: float = 1.0,
        notifier_factory: Callable[[Any], Notifier] = build_notifier,
    ) -> None:
        self.registry = registry
        self.watch = watch
        self.logs = logs
        self.environment = environment
        self.base_url = base_url.rstrip("/")
        self.diagnoser = Diagnoser(registry, logs, watch, base_url)
        self.executor = executor or ThreadPoolExecutor(4, thread_name_prefix="modelport-notify")
        self.retry_backoff_s = retry_backoff_s
        self.notifier_factory = notifier_factory
        self._pending: dict[str, datetime] = {}
        self._history: dict[tuple[str, str], deque[tuple[datetime, float | None]]] = {}
        self._rules: dict[str, AlertRule] = {}

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    def config(self) -> WatchConfig:
        return load_watch_config(self.watch)

    # -- evaluation ------------------------------------------------------------

    def evaluate(self, now: datetime | None = None) -> Evaluation:
        """Evaluate every rule on every endpoint once, and notify what changed."""
        now = now or datetime.now(UTC)
        config = self.config()
        result = Evaluation()
        self._rules = {r.name: r for r in config.rules()}
        for deployment in self.registry.list_deployments(self.environment):
            try:
                self._evaluate_endpoint(deployment.endpoint, config, now, result)
            except ModelportError:
                log.exception("could not evaluate alert rules on %s", deployment.endpoint)
        groups = self._group(result.firing, config)
        # An alert another evaluator already fired stays fired here while it holds,
        # even though this process has not yet seen it hold for its ``for``.
        still = {a.fingerprint for a in result.pending}
        result.notified = self._transition(groups, config, now, still)
        return result

    def _evaluate_endpoint(
        self, endpoint: str, config: WatchConfig, now: datetime, result: Evaluation
    ) -> None:
        deployment = self.registry.get_deployment(self.environment, endpoint)
        primary = deployment.spec.primary
        mv = self.registry.get_version(primary.model, primary.version)
        model = self.registry.get_model(mv.name)
        base = {
            "environment": self.environment,
            "endpoint": endpoint,
            "model": mv.name,
            "version": str(mv.version),
            "owner": mv.owner or model.owner or "",
            "team": model.team or "",
        }

        def traffic(seconds: float) -> Mapping[str, Any]:
            return self.logs.traffic(endpoint, since=now - timedelta(seconds=seconds), until=now)

        signals = EndpointSignals(
            endpoint=endpoint,
            traffic=traffic,
            monitor=self.watch.latest_monitor_run(self.environment, endpoint),
            training=mv.metrics,
        )
        for rule in self._rules.values():
            if not rule.applies_to(self.environment, endpoint):
                continue
            value = signal_value(rule, signals)
            result.values[(rule.name, endpoint)] = value
            history = self._history.setdefault((rule.name, endpoint), deque(maxlen=HISTORY))
            history.append((now, value))
            labels = (
                base
                | rule.labels
                | {
                    "alertname": rule.name,
                    "severity": rule.severity,
                    "signal": rule.signal,
                }
            )
            key = f"{rule.name}\x1f{endpoint}"
            if value is None or not rule.breached(value):
                self._pending.pop(key, None)
                continue
            since = self._pending.setdefault(key, now)
            alert = Alert(
                labels=labels,
                annotations={
                    "summary": rule.describe(endpoint, value),
                    "description": f"{rule.signal} {rule.op} {rule.threshold:g}"
                    f" held for {rule.for_} ({config.signal_help(rule.signal)})",
                },
                state="firing",
                starts_at=since,
                value=value,
            )
            held = (now - since).total_seconds() >= rule.for_seconds
            (result.firing if held else result.pending).append(alert)

    def _group(self, alerts: list[Alert], config: WatchConfig) -> dict[str, _Group]:
        groups: dict[str, _Group] = {}
        for alert in alerts:
            for route in resolve_routes(config.routing, alert.labels):
                key = route.group_key(alert.labels)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(
                        key=key,
                        receiver=route.receiver,
                        labels=route.group_labels(alert.labels),
                        group_wait=route.group_wait_s,
                        group_interval=route.group_interval_s,
                        repeat_interval=route.repeat_interval_s,
                    )
                group.alerts.append(alert)
        return groups

    # -- events ------------------------------------------------------------------

    def announce(self, alert: Alert, diagnosis: dict[str, Any]) -> tuple[int, list[Notification]]:
        """Something that happened once (a rollout rolled back): an incident with
        ``diagnosis``, notified at once to every receiver its labels route to (no
        group wait: the system already acted, a person must know now). The incident
        is recorded as resolved, the event being over; the notification says firing.
        Returns the incident's id and the notifications sent."""
        config = self.config()
        routes = resolve_routes(config.routing, alert.labels)
        label_key = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items())) + "}"
        incident = self.watch.open_incident(
            environment=self.environment,
            endpoint=alert.labels.get("endpoint"),
            group_key=f"{label_key}@{alert.starts_at.isoformat()}",
            title=alert.annotations.get("summary", alert.name),
            severity=alert.labels.get("severity", "critical"),
            labels={k: v for k, v in alert.labels.items() if k in _INCIDENT_LABELS},
            alerts=[_alert_dict(alert)],
            diagnosis=diagnosis,
            started_at=alert.starts_at,
        )
        self.watch.update_incident(incident.id, status="resolved", resolved_at=alert.starts_at)
        sent = []
        for route in routes:
            group = _Group(
                key=f"{route.group_key(alert.labels)}@{incident.id}",
                receiver=route.receiver,
                labels=route.group_labels(alert.labels),
                group_wait=0,
                group_interval=0,
                repeat_interval=0,
                alerts=[alert],
            )
            sent.append(self._notify(route.receiver, "firing", group, incident.id, config))
        return incident.id, sent

    # -- state changes ----------------------------------------------------------

    def _transition(
        self, groups: dict[str, _Group], config: WatchConfig, now: datetime, still: set[str]
    ) -> list[Notification]:
        states = {s.group_key: s for s in self.watch.alert_groups(self.environment)}
        sent: list[Notification] = []
        for key, group in groups.items():
            note = self._firing(group, states.get(key), config, now)
            if note is not None:
                sent.append(note)
        for key, state in states.items():
            if key in groups or (state.status == "firing" and still & set(state.alerts)):
                continue
            note = self._resolved(state, config, now)
            if note is not None:
                sent.append(note)
        return sent

    def _firing(
        self, group: _Group, state: AlertGroupState | None, config: WatchConfig, now: datetime
    ) -> Notification | None:
        fingerprints = sorted(a.fingerprint for a in group.alerts)
        first_seen = state.first_seen_at if state is not None else now
        if state is None or state.status == "pending":
            if (now - first_seen).total_seconds() < group.group_wait:
                if state is None:
                    self._claim(None, group, "pending", fingerprints, first_seen, None, None)
                return None
            reason = "new"
        else:
            since = (now - (state.notified_at or first_seen)).total_seconds()
            grew = not set(fingerprints) <= set(state.alerts)
            changed = fingerprints != sorted(state.alerts)
            if changed and since >= group.group_interval:
                reason = "changed" if grew else "partly resolved"
            elif since >= group.repeat_interval:
                reason = "repeat"
            else:
                return None
        incident_id = state.incident_id if state is not None else None
        if incident_id is None:
            incident_id = self._open_incident(group, now)
        if not self._claim(state, group, "firing", fingerprints, first_seen, now, incident_id):
            return None
        log.info("alert group %s: %s, notifying %s", group.key, reason, group.receiver)
        return self._notify(group.receiver, "firing", group, incident_id, config)

    def _resolved(
        self, state: AlertGroupState, config: WatchConfig, now: datetime
    ) -> Notification | None:
        # Removing the row is the compare-and-set: whoever removes it sends the notice.
        if not self.watch.forget_group(state) or state.status != "firing":
            return None
        incident = None
        if state.incident_id is not None:
            incident = self.watch.get_incident(state.incident_id)
            if incident.status == "firing":
                resolved = [
                    a | {"state": "resolved", "ends_at": now.isoformat()} for a in incident.alerts
                ]
                self.watch.update_incident(
                    state.incident_id, status="resolved", resolved_at=now, alerts=resolved
                )
        alerts = [_alert_from_dict(a, ends_at=now) for a in (incident.alerts if incident else [])]
        group = _Group(
            key=state.group_key,
            receiver=state.receiver,
            labels=dict(incident.labels) if incident else {},
            group_wait=0,
            group_interval=0,
            repeat_interval=0,
            alerts=alerts,
        )
        return self._notify(state.receiver, "resolved", group, state.incident_id, config)

    def _claim(
        self,
        state: AlertGroupState | None,
        group: _Group,
        status: str,
        fingerprints: list[str],
        first_seen: datetime,
        notified_at: datetime | None,
        incident_id: int | None,
    ) -> bool:
        return self.watch.claim_group(
            state,
            environment=self.environment,
            group_key=group.key,
            receiver=group.receiver,
            incident_id=incident_id,
            status=status,
            alerts=fingerprints,
            first_seen_at=first_seen,
            notified_at=notified_at,
        )

    def _open_incident(self, group: _Group, now: datetime) -> int:
        lead = max(group.alerts, key=lambda a: a.starts_at)
        label_key = "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.labels.items())) + "}"
        endpoint = lead.labels.get("endpoint")
        names = sorted({a.name for a in group.alerts})
        title = f"{', '.join(names)} on {endpoint or self.environment}"
        incident = self.watch.open_incident(
            environment=self.environment,
            endpoint=endpoint,
            group_key=label_key,
            title=title,
            severity=max((a.labels.get("severity", "warning") for a in group.alerts), key=_rank),
            labels=group.labels | {k: v for k, v in lead.labels.items() if k in _INCIDENT_LABELS},
            alerts=[_alert_dict(a) for a in group.alerts],
            diagnosis={},
            started_at=min(a.starts_at for a in group.alerts),
        )
        if not incident.diagnosis:
            diagnosis = self._diagnose(lead, incident.id)
            self.watch.update_incident(incident.id, diagnosis=diagnosis)
        return incident.id

    def _diagnose(self, alert: Alert, incident_id: int) -> dict[str, Any]:
        endpoint = alert.labels.get("endpoint", "")
        rule = self._rules.get(alert.name)
        values = list(self._history.get((alert.name, endpoint), ()))
        return self.diagnoser.build(
            alert,
            values,
            threshold=rule.threshold if rule else float("nan"),
            incident_id=incident_id,
        )

    def _notify(
        self,
        receiver: str,
        status: str,
        group: _Group,
        incident_id: int | None,
        config: WatchConfig,
    ) -> Notification:
        incident = self.watch.get_incident(incident_id) if incident_id is not None else None
        if incident is not None and status == "firing":
            self.watch.update_incident(incident.id, alerts=[_alert_dict(a) for a in group.alerts])
        notification = Notification(
            receiver=receiver,
            status="firing" if status == "firing" else "resolved",
            group_key=group.key,
            group_labels=group.labels,
            alerts=group.alerts,
            external_url=self.base_url,
            incident_id=incident_id,
            incident_url=f"{self.base_url}/v1/incidents/{incident_id}" if incident_id else None,
            diagnosis=incident.diagnosis if incident is not None else {},
        )
        receiver_config = config.receiver(receiver)
        notifier = self.notifier_factory(receiver_config)

        def record(attempt: DeliveryAttempt) -> None:
            self.watch.record_attempt(
                incident_id=incident_id,
                environment=self.environment,
                group_key=group.key,
                receiver=receiver,
                status=notification.status,
                attempt=attempt.attempt,
                ok=attempt.ok,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_s=attempt.duration_s,
            )

        self.executor.submit(_deliver_logged, notifier, notification, record, self.retry_backoff_s)
        return notification


_INCIDENT_LABELS = ("environment", "endpoint", "model", "version", "owner", "team", "severity")


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.get(severity, 0)


def _deliver_logged(
    notifier: Notifier,
    notification: Notification,
    record: Callable[[DeliveryAttempt], None],
    backoff_s: float,
) -> None:
    try:
        delivered = deliver(notifier, notification, backoff_s=backoff_s, on_attempt=record)
    except Exception:
        log.exception("notifying %s failed", notification.receiver)
        return
    if not delivered:
        log.warning("could not notify %s about %s", notification.receiver, notification.group_key)


def _alert_dict(alert: Alert) -> dict[str, Any]:
    return {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "state": alert.state,
        "starts_at": alert.starts_at.isoformat(),
        "ends_at": alert.ends_at.isoformat() if alert.ends_at else None,
        "value": alert.value,
        "fingerprint": alert.fingerprint,
    }


def _alert_from_dict(data: dict[str, Any], *, ends_at: datetime) -> Alert:
    return Alert(
        labels=dict(data["labels"]),
        annotations=dict(data["annotations"]),
        state="resolved",
        starts_at=datetime.fromisoformat(data["starts_at"]),
        ends_at=ends_at,
        value=data.get("value"),
    )

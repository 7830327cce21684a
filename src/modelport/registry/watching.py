"""What watching keeps in the registry database: configuration documents, monitor runs,
leases, incidents, alert groups and notification attempts.

It shares the registry's engine, so on PostgreSQL every replica sees the same
incidents, and the compare-and-set on an alert group's ``generation`` lets exactly one
evaluator notify each state change.

Example::

    store = WatchStore(registry.engine)
    if store.acquire_lease("monitor/production", holder="host-1-123", ttl_s=30):
        ...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from modelport.errors import NotFound
from modelport.registry import schema as t
from modelport.registry.entities import now as _now
from modelport.registry.entities import utc as _utc

#: Monitor runs kept per endpoint; older ones are deleted as new ones arrive.
MONITOR_RUNS_KEPT = 500


def _iso(ts: datetime | None) -> str | None:
    return _utc(ts).isoformat() if ts is not None else None


@dataclass(frozen=True)
class Incident:
    """An alert group's activation, from first firing to resolved, with its diagnosis."""

    id: int
    environment: str
    endpoint: str | None
    group_key: str
    title: str
    severity: str
    status: str
    labels: dict[str, str]
    alerts: list[dict[str, Any]]
    diagnosis: dict[str, Any]
    started_at: datetime
    resolved_at: datetime | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "endpoint": self.endpoint,
            "group_key": self.group_key,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "labels": self.labels,
            "alerts": self.alerts,
            "diagnosis": self.diagnosis,
            "started_at": _iso(self.started_at),
            "resolved_at": _iso(self.resolved_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class AlertGroupState:
    """What was last notified for one receiver's alert group."""

    environment: str
    group_key: str
    receiver: str
    incident_id: int | None
    status: str
    alerts: list[str]
    first_seen_at: datetime
    notified_at: datetime | None
    generation: int


class WatchStore:
    """Watching state in the registry database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- documents -----------------------------------------------------------

    def get_document(self, name: str) -> tuple[dict[str, Any], int] | None:
        """A configuration document and its revision, or None when never applied."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.documents).where(t.documents.c.name == name)).first()
        return (dict(row.body), int(row.revision)) if row is not None else None

    def put_document(self, name: str, body: dict[str, Any], *, actor: str | None = None) -> int:
        """Store a document; the revision goes up only when the body changed."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.documents).where(t.documents.c.name == name)).first()
            if row is None:
                conn.execute(
                    t.documents.insert().values(
                        name=name, body=body, revision=1, updated_at=_now(), updated_by=actor
                    )
                )
                return 1
            if row.body == body:
                return int(row.revision)
            revision = int(row.revision) + 1
            conn.execute(
                t.documents.update()
                .where(t.documents.c.name == name)
                .values(body=body, revision=revision, updated_at=_now(), updated_by=actor)
            )
            return revision

    # -- leases --------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew ``name`` for ``ttl_s`` seconds; False while someone else holds it."""
        now = _now()
        expires = now + timedelta(seconds=ttl_s)
        lease = t.leases.c
        with self.engine.begin() as conn:
            taken = conn.execute(
                t.leases.update()
                .where(lease.name == name)
                .where(sa.or_(lease.holder == holder, lease.expires_at < now))
                .values(holder=holder, expires_at=expires)
            ).rowcount
            if taken:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(t.leases.insert().values(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.leases.delete().where(t.leases.c.name == name).where(t.leases.c.holder == holder)
            )

    # -- monitor runs --------------------------------------------------------

    def add_monitor_run(
        self, environment: str, endpoint: str, model: str, version: int, report: dict[str, Any]
    ) -> None:
        runs = t.monitor_runs.c
        with self.engine.begin() as conn:
            conn.execute(
                t.monitor_runs.insert().values(
                    environment=environment,
                    endpoint=endpoint,
                    model=model,
                    version=version,
                    rows=int(report.get("rows", 0)),
                    report=report,
                    computed_at=_now(),
                )
            )
            cutoff = conn.execute(
                sa.select(runs.id)
                .where(runs.environment == environment, runs.endpoint == endpoint)
                .order_by(runs.id.desc())
                .offset(MONITOR_RUNS_KEPT)
                .limit(1)
            ).scalar()
            if cutoff is not None:
                conn.execute(
                    t.monitor_runs.delete().where(
                        runs.environment == environment,
                        runs.endpoint == endpoint,
                        runs.id <= cutoff,
                    )
                )

    def latest_monitor_run(self, environment: str, endpoint: str) -> dict[str, Any] | None:
        runs = t.monitor_runs.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.monitor_runs)
                .where(runs.environment == environment, runs.endpoint == endpoint)
                .order_by(runs.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return dict(row.report) | {"computed_at": _iso(row.computed_at)}

    def monitor_runs(
        self, environment: str, endpoint: str, *, limit: int, fields: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` kept runs of an endpoint, oldest first: each run's ``id``,
        ``computed_at`` (ISO) and the named ``fields`` of its report (None when absent)."""
        runs = t.monitor_runs.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(runs.id, runs.report, runs.computed_at)
                .where(runs.environment == environment, runs.endpoint == endpoint)
                .order_by(runs.id.desc())
                .limit(limit)
            ).all()
        return [
            {"id": int(row.id), "computed_at": _iso(row.computed_at)}
            | {key: row.report.get(key) for key in fields}
            for row in reversed(rows)
        ]

    # -- incidents -----------------------------------------------------------

    def open_incident(
        self,
        *,
        environment: str,
        endpoint: str | None,
        group_key: str,
        title: str,
        severity: str,
        labels: dict[str, str],
        alerts: list[dict[str, Any]],
        diagnosis: dict[str, Any],
        started_at: datetime,
    ) -> Incident:
        """The firing incident of this group, created when there is none."""
        c = t.incidents.c
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(t.incidents).where(
                    c.environment == environment, c.group_key == group_key, c.status == "firing"
                )
            ).first()
            if row is not None:
                return self._incident(row)
            now = _now()
            new_id = conn.execute(
                t.incidents.insert()
                .values(
                    environment=environment,
                    endpoint=endpoint,
                    group_key=group_key,
                    title=title,
                    severity=severity,
                    status="firing",
                    labels=labels,
                    alerts=alerts,
                    diagnosis=diagnosis,
                    started_at=started_at,
                    updated_at=now,
                )
                .returning(c.id)
            ).scalar_one()
            row = conn.execute(sa.select(t.incidents).where(c.id == new_id)).one()
        return self._incident(row)

    def update_incident(self, incident_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.incidents.update()
                .where(t.incidents.c.id == incident_id)
                .values(updated_at=_now(), **values)
            )

    def get_incident(self, incident_id: int) -> Incident:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.incidents).where(t.incidents.c.id == incident_id)
            ).first()
        if row is None:
            raise NotFound(
                f"incident {incident_id} does not exist", hint="modelport incidents list shows them"
            )
        return self._incident(row)

    def list_incidents(
        self, environment: str | None = None, *, status: str | None = None, limit: int = 100
    ) -> list[Incident]:
        c = t.incidents.c
        query = sa.select(t.incidents).order_by(c.id.desc()).limit(limit)
        if environment is not None:
            query = query.where(c.environment == environment)
        if status is not None:
            query = query.where(c.status == status)
        with self.engine.connect() as conn:
            return [self._incident(row) for row in conn.execute(query)]

    @staticmethod
    def _incident(row: Any) -> Incident:
        return Incident(
            id=int(row.id),
            environment=row.environment,
            endpoint=row.endpoint,
            group_key=row.group_key,
            title=row.title,
            severity=row.severity,
            status=row.status,
            labels=dict(row.labels),
            alerts=list(row.alerts),
            diagnosis=dict(row.diagnosis),
            started_at=_utc(row.started_at),
            resolved_at=_utc(row.resolved_at),
            updated_at=_utc(row.updated_at),
        )

    # -- alert groups --------------------------------------------------------

    def alert_groups(self, environment: str) -> list[AlertGroupState]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.alert_groups).where(t.alert_groups.c.environment == environment)
            ).all()
        return [
            AlertGroupState(
                environment=r.environment,
                group_key=r.group_key,
                receiver=r.receiver,
                incident_id=r.incident_id,
                status=r.status,
                alerts=list(r.alerts),
                first_seen_at=_utc(r.first_seen_at),
                notified_at=_utc(r.notified_at),
                generation=int(r.generation),
            )
            for r in rows
        ]

    def claim_group(
        self,
        previous: AlertGroupState | None,
        *,
        environment: str,
        group_key: str,
        receiver: str,
        incident_id: int | None,
        status: str,
        alerts: list[str],
        first_seen_at: datetime,
        notified_at: datetime | None,
    ) -> bool:
        """Move a group to a new state if nobody else did since ``previous`` was read.

        True means this caller won the change and alone sends its notification.
        """
        values = {
            "receiver": receiver,
            "incident_id": incident_id,
            "status": status,
            "alerts": alerts,
            "first_seen_at": first_seen_at,
            "notified_at": notified_at,
        }
        g = t.alert_groups.c
        try:
            with self.engine.begin() as conn:
                if previous is None:
                    conn.execute(
                        t.alert_groups.insert().values(
                            environment=environment, group_key=group_key, generation=1, **values
                        )
                    )
                    return True
                return bool(
                    conn.execute(
                        t.alert_groups.update()
                        .where(
                            g.environment == environment,
                            g.group_key == group_key,
                            g.generation == previous.generation,
                        )
                        .values(generation=previous.generation + 1, **values)
                    ).rowcount
                )
        except IntegrityError:
            return False

    def forget_group(self, state: AlertGroupState) -> bool:
        """Drop a group's row if nobody changed it since ``state`` was read, so its next
        activation starts afresh. True means this caller removed it (and alone says so)."""
        g = t.alert_groups.c
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    t.alert_groups.delete().where(
                        g.environment == state.environment,
                        g.group_key == state.group_key,
                        g.generation == state.generation,
                    )
                ).rowcount
            )

    # -- notification attempts -----------------------------------------------

    def record_attempt(
        self,
        *,
        incident_id: int | None,
        environment: str,
        group_key: str,
        receiver: str,
        status: str,
        attempt: int,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_s: float,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.notifications.insert().values(
                    incident_id=incident_id,
                    environment=environment,
                    group_key=group_key,
                    receiver=receiver,
                    status=status,
                    attempt=attempt,
                    ok=ok,
                    status_code=status_code,
                    error=error,
                    duration_s=duration_s,
                    created_at=_now(),
                )
            )

    def notifications(self, incident_id: int) -> list[dict[str, Any]]:
        n = t.notifications.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.notifications).where(n.incident_id == incident_id).order_by(n.id)
            ).all()
        return [
            {
                "receiver": r.receiver,
                "status": r.status,
                "attempt": r.attempt,
                "ok": r.ok,
                "status_code": r.status_code,
                "error": r.error,
                "duration_s": r.duration_s,
                "at": _iso(r.created_at),
            }
            for r in rows
        ]

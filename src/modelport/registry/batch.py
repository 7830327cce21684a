"""Batch jobs and their runs as the registry keeps them.

A job is a `JobSpec` declared in modelport.yaml for one environment (``batch_jobs``);
a run is one execution of a job or of a one-off spec, from start to outcome
(``batch_runs``). Two compare-and-sets keep several servers and the CLI from doing the
same work twice:

- `BatchStore.claim_due` moves a job's ``last_scheduled_for`` forward only if nobody
  did first: one scheduler wins each schedule slot;
- `BatchStore.start_run` fills the run's ``active_key`` (unique, "environment/job")
  while it runs: a second run of the same job is refused with `Conflict` until the
  first finishes, or until its heartbeat stops (its process died) and it is marked
  failed as abandoned.

Example::

    store = BatchStore(registry.engine)
    store.put_job(spec.with_(name="nightly", env="production"), actor="ana")
    if store.claim_due("production", "nightly", slot):
        run = store.start_run(spec, trigger="schedule", scheduled_for=slot)
        ...
        store.finish_run(run.run_id, manifest=manifest)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from modelport.batch.spec import JobSpec, Manifest
from modelport.errors import Conflict, NotFound
from modelport.registry import schema as t
from modelport.registry.entities import iso
from modelport.registry.entities import now as _now
from modelport.registry.entities import utc as _utc

Trigger = Literal["schedule", "cli", "api"]
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
#: How often a running run says it is alive, and how long a silence means its process
#: died: long enough for a busy registry, short enough that a crash does not block the
#: job's next slot for long.
HEARTBEAT_S = 15.0
ABANDONED_AFTER_S = 120.0


@dataclass(frozen=True)
class BatchJob:
    """A job as applied: its spec, schedule and the last slot a scheduler claimed."""

    environment: str
    name: str
    spec: JobSpec
    schedule: str | None
    last_scheduled_for: datetime | None
    updated_at: datetime
    updated_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "name": self.name,
            "schedule": self.schedule,
            "spec": self.spec.to_dict(),
            "last_scheduled_for": iso(self.last_scheduled_for),
            "updated_at": iso(self.updated_at),
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class BatchRun:
    """One run: what ran, who started it, how it ended and what it counted."""

    run_id: str
    environment: str
    job: str | None
    trigger: str
    status: str
    spec: JobSpec
    output: str
    started_at: datetime
    model: str | None = None
    version: int | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int | None = None
    error: str | None = None
    note: str | None = None
    started_by: str | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    scheduled_for: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "environment": self.environment,
            "job": self.job,
            "trigger": self.trigger,
            "status": self.status,
            "output": self.output,
            "model": self.model,
            "version": self.version,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rejected": self.rows_rejected,
            "error": self.error,
            "note": self.note,
            "started_by": self.started_by,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "finished_at": iso(self.finished_at),
            "duration_s": self.duration_s,
            "scheduled_for": iso(self.scheduled_for),
            "spec": self.spec.to_dict(),
        }


def _in_utc(ts: datetime) -> datetime:
    """``ts`` in UTC (naive means UTC): SQLite keeps the clock reading, not the zone."""
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def new_run_id(at: datetime | None = None) -> str:
    """``20261126T020000-3f9c1a2b``: sorts by start time, unique without coordination."""
    return f"{(at or _now()):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


class BatchStore:
    """The ``batch_jobs`` and ``batch_runs`` tables, on the registry's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- jobs ----------------------------------------------------------------

    def put_job(self, spec: JobSpec, *, actor: str | None = None) -> bool:
        """Create or replace the job ``spec.name`` of ``spec.env``; False when the
        registry holds this spec already.

        A changed schedule starts afresh (its first run is its first slot after now);
        any other change keeps where the schedule stopped.
        """
        if not spec.name:
            raise ValueError("a job needs a name")
        body = spec.to_dict()
        c = t.batch_jobs.c
        key = (c.environment == spec.env, c.name == spec.name)
        values: dict[str, Any] = {
            "spec": body,
            "schedule": spec.schedule,
            "updated_at": _now(),
            "updated_by": actor,
        }
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(c.spec, c.schedule).where(*key)).first()
            if row is not None and row.spec == body:
                return False
            if row is None:
                conn.execute(
                    t.batch_jobs.insert().values(environment=spec.env, name=spec.name, **values)
                )
                return True
            if row.schedule != spec.schedule:
                values["last_scheduled_for"] = None
            conn.execute(t.batch_jobs.update().where(*key).values(**values))
        return True

    def get_job(self, environment: str, name: str) -> BatchJob:
        c = t.batch_jobs.c
        query = sa.select(t.batch_jobs).where(c.environment == environment, c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            known = [j.name for j in self.list_jobs(environment)]
            raise NotFound(
                f"batch job {name!r} does not exist in {environment}",
                hint=f"jobs in {environment}: {known}; jobs are declared under `batch:` in "
                "modelport.yaml (`modelport apply`)",
            )
        return _to_job(row)

    def list_jobs(self, environment: str | None = None) -> list[BatchJob]:
        """Jobs by environment and name (every environment's when None)."""
        c = t.batch_jobs.c
        query = sa.select(t.batch_jobs).order_by(c.environment, c.name)
        if environment is not None:
            query = query.where(c.environment == environment)
        with self.engine.connect() as conn:
            return [_to_job(r) for r in conn.execute(query)]

    def has_schedules(self, environment: str) -> bool:
        """Whether any job of ``environment`` has a schedule (one small query)."""
        c = t.batch_jobs.c
        query = (
            sa.select(c.id).where(c.environment == environment, c.schedule.is_not(None)).limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def delete_job(self, environment: str, name: str) -> None:
        """Forget a job; its runs stay in the history."""
        c = t.batch_jobs.c
        with self.engine.begin() as conn:
            done = conn.execute(
                t.batch_jobs.delete().where(c.environment == environment, c.name == name)
            )
        if not done.rowcount:
            raise NotFound(f"batch job {name!r} does not exist in {environment}")

    def claim_due(self, environment: str, name: str, scheduled_for: datetime) -> bool:
        """Take the schedule slot ``scheduled_for`` of a job; True for exactly one caller.

        A compare-and-set: the job's ``last_scheduled_for`` moves to the slot only if it
        is still before it, so of two schedulers looking at the same slot one wins, and
        a slot already taken (or an older one) is never taken again.
        """
        c = t.batch_jobs.c
        slot = _in_utc(scheduled_for)
        with self.engine.begin() as conn:
            done = conn.execute(
                t.batch_jobs.update()
                .where(c.environment == environment, c.name == name)
                .where(sa.or_(c.last_scheduled_for.is_(None), c.last_scheduled_for < slot))
                .values(last_scheduled_for=slot)
            )
        return bool(done.rowcount)

    # -- runs ----------------------------------------------------------------

    def start_run(
        self,
        spec: JobSpec,
        *,
        trigger: Trigger,
        run_id: str | None = None,
        scheduled_for: datetime | None = None,
        actor: str | None = None,
    ) -> BatchRun:
        """Record a run as running. A named job runs once at a time: `Conflict` while
        another run of it is alive (one whose heartbeat stopped is marked failed first)."""
        now = _now()
        run_id = run_id or new_run_id(now)
        active = f"{spec.env}/{spec.name}" if spec.name else None
        if active is not None:
            self.fail_abandoned(environment=spec.env, job=spec.name, now=now)
        values = {
            "run_id": run_id,
            "environment": spec.env,
            "job": spec.name,
            "trigger": trigger,
            "status": RUNNING,
            "active_key": active,
            "spec": spec.to_dict(),
            "output": spec.output,
            "started_by": actor,
            "started_at": now,
            "heartbeat_at": now,
            "scheduled_for": _in_utc(scheduled_for) if scheduled_for is not None else None,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(t.batch_runs.insert().values(**values))
        except IntegrityError:
            raise self._conflict(spec, scheduled_for) from None
        return self.get_run(run_id)

    def _conflict(self, spec: JobSpec, scheduled_for: datetime | None) -> Conflict:
        running = self.running(spec.env, spec.name) if spec.name else None
        if running is not None:
            return Conflict(
                f"batch job {spec.name!r} is running already in {spec.env} "
                f"(run {running.run_id}, started {iso(running.started_at)})",
                hint=f"wait for it: `modelport batch show {running.run_id}`",
            )
        slot = f" for {iso(_in_utc(scheduled_for))}" if scheduled_for is not None else ""
        return Conflict(f"batch job {spec.name!r} has a run{slot} already")

    def heartbeat(self, run_id: str) -> None:
        """Say a running run is alive."""
        c = t.batch_runs.c
        with self.engine.begin() as conn:
            conn.execute(
                t.batch_runs.update()
                .where(c.run_id == run_id, c.status == RUNNING)
                .values(heartbeat_at=_now())
            )

    def finish_run(
        self,
        run_id: str,
        *,
        manifest: Manifest | None = None,
        error: str | None = None,
        note: str | None = None,
    ) -> BatchRun:
        """Record a run's outcome: failed with ``error`` when one is given, else
        succeeded; the model, version and counts come from the manifest when there is
        one (a run that failed before its first chunk may have none). ``note`` says
        what else is worth knowing (that there was nothing new to score, say)."""
        values: dict[str, Any] = {
            "status": FAILED if error is not None else SUCCEEDED,
            "error": error,
            "note": note,
            "active_key": None,
            "finished_at": _now(),
        }
        if manifest is not None:
            values |= {
                "model": manifest.model or None,
                "version": manifest.version or None,
                "rows_in": manifest.rows_in,
                "rows_out": manifest.rows_out,
                "rows_rejected": manifest.rows_rejected,
            }
        with self.engine.begin() as conn:
            done = conn.execute(
                t.batch_runs.update().where(t.batch_runs.c.run_id == run_id).values(**values)
            )
        if not done.rowcount:
            raise NotFound(f"batch run {run_id!r} does not exist")
        return self.get_run(run_id)

    def fail_abandoned(
        self,
        *,
        environment: str | None = None,
        job: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Mark failed the running runs whose heartbeat stopped ``ABANDONED_AFTER_S``
        ago (their process died); how many there were."""
        now = now or _now()
        c = t.batch_runs.c
        query = (
            t.batch_runs.update()
            .where(c.status == RUNNING)
            .where(c.heartbeat_at < now - timedelta(seconds=ABANDONED_AFTER_S))
        )
        if environment is not None:
            query = query.where(c.environment == environment)
        if job is not None:
            query = query.where(c.job == job)
        error = f"abandoned: no heartbeat for {ABANDONED_AFTER_S:g}s (its process stopped)"
        with self.engine.begin() as conn:
            done = conn.execute(
                query.values(status=FAILED, active_key=None, error=error, finished_at=now)
            )
        return int(done.rowcount)

    def running(self, environment: str, job: str) -> BatchRun | None:
        """The job's run in progress, if any."""
        c = t.batch_runs.c
        query = sa.select(t.batch_runs).where(c.active_key == f"{environment}/{job}")
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _to_run(row) if row is not None else None

    def get_run(self, run_id: str) -> BatchRun:
        query = sa.select(t.batch_runs).where(t.batch_runs.c.run_id == run_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"batch run {run_id!r} does not exist", hint="list runs: `modelport batch runs`"
            )
        return _to_run(row)

    def list_runs(
        self,
        job: str | None = None,
        *,
        environment: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[BatchRun]:
        """Runs, newest first."""
        c = t.batch_runs.c
        query = sa.select(t.batch_runs).order_by(c.started_at.desc(), c.run_id.desc())
        if job is not None:
            query = query.where(c.job == job)
        if environment is not None:
            query = query.where(c.environment == environment)
        if status is not None:
            query = query.where(c.status == status)
        with self.engine.connect() as conn:
            return [_to_run(r) for r in conn.execute(query.limit(limit))]


def _to_job(row: Any) -> BatchJob:
    return BatchJob(
        environment=row.environment,
        name=row.name,
        spec=JobSpec.from_dict(row.spec),
        schedule=row.schedule,
        last_scheduled_for=_utc(row.last_scheduled_for),
        updated_at=_utc(row.updated_at),
        updated_by=row.updated_by,
    )


def _to_run(row: Any) -> BatchRun:
    return BatchRun(
        run_id=row.run_id,
        environment=row.environment,
        job=row.job,
        trigger=row.trigger,
        status=row.status,
        spec=JobSpec.from_dict(row.spec),
        output=row.output,
        started_at=_utc(row.started_at),
        model=row.model,
        version=row.version,
        rows_in=row.rows_in,
        rows_out=row.rows_out,
        rows_rejected=row.rows_rejected,
        error=row.error,
        note=row.note,
        started_by=row.started_by,
        heartbeat_at=_utc(row.heartbeat_at),
        finished_at=_utc(row.finished_at),
        scheduled_for=_utc(row.scheduled_for),
    )


__all__ = [
    "ABANDONED_AFTER_S",
    "HEARTBEAT_S",
    "BatchJob",
    "BatchRun",
    "BatchStore",
    "Trigger",
    "new_run_id",
]

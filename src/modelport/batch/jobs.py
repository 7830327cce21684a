"""Batch jobs by name: run one now, or on its cron schedule, and keep the history.

A job is a `JobSpec` declared under ``batch:`` in modelport.yaml and applied to the
registry (`modelport.registry.batch.BatchStore`). `run_job` runs one by name: it
records a run row, calls `modelport.batch.predict`, and records the outcome (a failure
with its error, then re-raised), whoever starts it: ``modelport batch run`` (an
external scheduler such as cron or Airflow), ``POST /v1/batch/jobs/{name}/run``, or
the server's `Scheduler`.

Scheduling rules (cron, five fields, UTC):

- a slot is due once its time has passed; `due` gives the newest passed slot after
  the last one taken, so slots missed while no server ran give **one** run, not one
  per slot;
- a job runs once at a time: while a run is going (in any process) its slots are left,
  and become that one run as soon as it ends;
- each slot is taken by a compare-and-set (`BatchStore.claim_due`), so of several
  servers on one registry exactly one starts it.

Example::

    manifest = run_job(client, "nightly_scores", env="production")
    due(spec, last=datetime(2026, 11, 26, 1, 0, tzinfo=UTC), now=datetime.now(UTC))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter

from modelport.batch.spec import JobSpec, Manifest
from modelport.errors import Conflict, ModelportError
from modelport.registry.batch import (
    HEARTBEAT_S,
    BatchJob,
    BatchRun,
    BatchStore,
    Trigger,
    new_run_id,
)

if TYPE_CHECKING:
    from modelport.batch.progress import Progress
    from modelport.client import Client

log = logging.getLogger(__name__)

#: Shorthands accepted besides five cron fields.
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_schedule(expression: str) -> str:
    """``expression`` if it is a cron schedule of five fields (minute, hour, day of
    month, month, day of week) or a macro like ``@daily``; `ValueError` saying why not."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in MACROS:
            raise ValueError(f"unknown schedule {text!r}; the shorthands are {', '.join(MACROS)}")
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"a schedule has five fields (minute hour day-of-month month day-of-week), "
            f"{text!r} has {len(fields)}; e.g. '0 2 * * *' is 02:00 UTC every day"
        )
    try:
        croniter(text)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"invalid schedule {text!r}: {exc}") from None
    return text


def due(job: JobSpec, last: datetime, now: datetime) -> datetime | None:
    """The slot of ``job``'s schedule to run at ``now``, or None if none is due.

    ``last`` is the last slot taken (or, for a job never run, when its schedule was
    applied). A slot is due once ``now`` has reached it; of several passed slots the
    newest is returned, so missed slots give one run.

    Example::

        spec = JobSpec(model="models:/m/1", input="in/", output="out/", schedule="0 * * * *")
        due(spec, last=datetime(2026, 1, 1, 9, 0, tzinfo=UTC),
            now=datetime(2026, 1, 1, 12, 30, tzinfo=UTC))
        # datetime(2026, 1, 1, 12, 0, tzinfo=UTC): 10:00 and 11:00 were missed, 12:00 runs
    """
    if job.schedule is None:
        return None
    last, now = _in_utc(last), _in_utc(now)
    following: datetime = croniter(job.schedule, last).get_next(datetime)
    if following > now:
        return None
    # the newest slot at or before now: the one before the start of the next minute
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    newest: datetime = croniter(job.schedule, minute).get_prev(datetime)
    return _in_utc(max(newest, following))


def next_slot(job: JobSpec, after: datetime) -> datetime | None:
    """The first slot of ``job``'s schedule after ``after`` (None without a schedule)."""
    if job.schedule is None:
        return None
    return _in_utc(croniter(job.schedule, _in_utc(after)).get_next(datetime))


def _in_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


# -- one run ---------------------------------------------------------------------------


@dataclass
class PendingRun:
    """A run recorded as running and not started yet: `execute` runs it (in this thread
    or another one) and records how it ended.

    The job's output folder is the job's own: a run finding there a finished run of the
    same model and inputs has nothing new to score (recorded with a note, counting no
    rows); one finding an older run of the job (other inputs, another version, a failed
    or interrupted run) replaces it, unless ``resume`` asks to continue it. A folder
    holding anything else is left alone and the run fails.
    """

    client: Client
    store: BatchStore
    run: BatchRun
    resume: bool = False
    progress: Progress | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def execute(self) -> Manifest:
        """Run the job; its manifest when it succeeds. A failure is recorded with its
        error and raised again."""
        alive = threading.Event()
        beating = threading.Thread(
            target=self._beat, args=(alive,), name=f"batch-heartbeat-{self.run_id}", daemon=True
        )
        beating.start()
        try:
            manifest, note = self._predict()
        except BaseException as exc:
            alive.set()
            self._failed(exc)
            raise
        alive.set()
        counted = manifest
        if manifest.run_id != self.run_id:
            note = f"nothing new: the output holds run {manifest.run_id} (same model and inputs)"
            counted = replace(manifest, rows_in=0, rows_out=0, rows_rejected=0, chunks=[])
        self.store.finish_run(self.run_id, manifest=counted, note=note)
        return manifest

    def _predict(self) -> tuple[Manifest, str | None]:
        """The engine's manifest, and a note when this run replaced an older one."""
        from modelport.batch import predict

        spec, run_id, progress = self.run.spec, self.run_id, self.progress
        try:
            manifest = predict(
                self.client, spec, resume=self.resume, run_id=run_id, progress=progress
            )
            return manifest, None
        except Conflict:
            older = read_manifest(spec.output)
            if self.resume or older is None or not self._owns(older):
                raise
        manifest = predict(self.client, spec, overwrite=True, run_id=run_id, progress=progress)
        return manifest, f"replaced run {older.run_id} ({older.status}) in the output folder"

    def _owns(self, manifest: Manifest) -> bool:
        """Whether ``manifest`` is an earlier run of this very job (not this run's)."""
        spec = self.run.spec
        return (
            manifest.run_id != self.run_id
            and manifest.job == spec.name
            and manifest.spec.get("env", spec.env) == spec.env
        )

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                self.store.heartbeat(self.run_id)
            except Exception:  # a registry hiccup must not stop the run; the next beat retries
                log.warning("heartbeat of batch run %s failed", self.run_id, exc_info=True)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, ModelportError):
            error = str(exc)
        elif isinstance(exc, KeyboardInterrupt | SystemExit):
            error = "interrupted"
        else:
            error = f"{type(exc).__name__}: {exc}"
        manifest = read_manifest(self.run.output)
        if manifest is not None and manifest.run_id != self.run_id:
            manifest = None  # an earlier run's: this one failed before writing its own
        try:
            self.store.finish_run(self.run_id, manifest=manifest, error=error)
        except Exception:  # the original error matters more than the bookkeeping's
            log.exception("could not record the failure of batch run %s", self.run_id)


def begin_run(
    client: Client,
    name: str,
    *,
    env: str = "production",
    resume: bool = False,
    trigger: Trigger = "cli",
    scheduled_for: datetime | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> PendingRun:
    """Record a run of job ``name`` as running and hand it back to execute.

    `NotFound` when the job does not exist; `Conflict` while another run of it is
    going (in any process).
    """
    store = BatchStore(client.registry.engine)
    job = store.get_job(env, name)
    run = store.start_run(
        job.spec,
        trigger=trigger,
        run_id=run_id or new_run_id(),
        scheduled_for=scheduled_for,
        actor=client.settings.user,
    )
    return PendingRun(client, store, run, resume=resume, progress=progress)


def run_job(
    client: Client,
    name: str,
    *,
    env: str = "production",
    resume: bool = False,
    trigger: Trigger = "cli",
    scheduled_for: datetime | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Run job ``name`` of ``env`` now and record it in the history.

    Returns the run's manifest (status ``succeeded``). A failing run is recorded as
    failed with its error, which is raised again (a `ModelportError` from the engine).
    ``resume`` continues the job's last interrupted run from its last complete chunk;
    ``progress`` hears of each chunk (`modelport.batch.progress`).

    Example::

        manifest = run_job(client, "nightly_scores")
        print(manifest.rows_out)
    """
    pending = begin_run(
        client,
        name,
        env=env,
        resume=resume,
        trigger=trigger,
        scheduled_for=scheduled_for,
        run_id=run_id,
        progress=progress,
    )
    return pending.execute()


def run_in_background(
    client: Client, name: str, *, env: str = "production", trigger: Trigger = "api"
) -> BatchRun:
    """Record a run of ``name`` and run it on a thread of its own; the run as recorded
    (running). `NotFound` and `Conflict` as for `begin_run`, before anything starts."""
    pending = begin_run(client, name, env=env, trigger=trigger)
    threading.Thread(
        target=_quietly, args=(pending.execute,), name=f"batch-{pending.run_id}", daemon=True
    ).start()
    return pending.run


def _quietly(run: Callable[[], object]) -> None:
    """Run; a failure is in the run's history already, so it is only logged here."""
    try:
        run()
    except ModelportError as exc:
        log.warning("batch run failed: %s", exc)
    except Exception:
        log.exception("batch run failed")


def read_manifest(output: str) -> Manifest | None:
    """The manifest in an output folder (local or an object store's), if there is one
    and it reads."""
    from pyarrow import ArrowException

    from modelport.batch.runner import Output

    try:
        return Output(output).read_manifest()
    except (ModelportError, OSError, ValueError, ArrowException):
        return None


def run_view(run: BatchRun) -> dict[str, Any]:
    """A run as ``batch show`` and ``GET /v1/batch/runs/{id}`` show it: the row, and its
    manifest's chunk counts when the output folder still holds this run's manifest
    (else ``{"other_run": ID}``, the run whose manifest it holds, or None)."""
    body = run.to_dict()
    manifest = read_manifest(run.output)
    if manifest is None:
        body["manifest"] = None
    elif manifest.run_id != run.run_id:
        body["manifest"] = {"other_run": manifest.run_id}
    else:
        body["manifest"] = {
            "status": manifest.status,
            "runtime": manifest.runtime,
            "engine": manifest.engine,
            "model_sha256": manifest.model_sha256,
            "inputs": len(manifest.inputs),
            "chunks": len(manifest.chunks),
            "chunks_with_rejects": sum(1 for c in manifest.chunks if c.rows_rejected),
            "rows_in": manifest.rows_in,
            "rows_out": manifest.rows_out,
            "rows_rejected": manifest.rows_rejected,
        }
    return body


def job_view(job: BatchJob, now: datetime, store: BatchStore | None = None) -> dict[str, Any]:
    """A job as ``batch jobs`` and ``GET /v1/batch/jobs`` show it: the spec, its next
    slot (a passed one when it is due now) and, with ``store``, its latest run."""
    body = job.to_dict()
    base = job.last_scheduled_for or job.updated_at
    upcoming = due(job.spec, base, now) or next_slot(job.spec, base)
    body["next_run"] = upcoming.isoformat() if upcoming is not None else None
    if store is not None:
        latest = store.list_runs(job.name, environment=job.environment, limit=1)
        body["last_run"] = latest[0].to_dict() if latest else None
    return body


# -- the schedule ----------------------------------------------------------------------

#: What the scheduler calls to run a job: `run_job` unless a caller says otherwise.
Runner = Callable[..., Any]


@dataclass
class Scheduler:
    """Starts the scheduled jobs of one environment as their slots come.

    `tick` is called by the server's watcher (under the ``batch/<env>`` lease) every
    ``batch_interval_seconds``: each job with a due slot that is not running already
    has the slot claimed (compare-and-set) and runs on a thread of its own.

    Example::

        scheduler = Scheduler(client, "production")
        scheduler.tick()          # what started now: [("nightly_scores", slot)]
        scheduler.wait(timeout=60)
    """

    client: Client
    environment: str
    runner: Runner = field(default=run_job)
    _threads: dict[str, threading.Thread] = field(default_factory=dict, init=False)

    @property
    def store(self) -> BatchStore:
        return BatchStore(self.client.registry.engine)

    def tick(self, now: datetime | None = None) -> list[tuple[str, datetime]]:
        """Start every job whose slot is due at ``now`` (default: the clock); the
        (job, slot) pairs started."""
        now = now or datetime.now(UTC)
        store = self.store
        store.fail_abandoned(environment=self.environment)
        started = []
        for job in store.list_jobs(self.environment):
            if job.schedule is None:
                continue
            slot = due(job.spec, job.last_scheduled_for or job.updated_at, now)
            if slot is None or self.busy(job.name):
                continue
            if not store.claim_due(self.environment, job.name, slot):
                continue  # another scheduler took it
            self._start(job.name, slot)
            started.append((job.name, slot))
        return started

    def busy(self, name: str) -> bool:
        """Whether a run of ``name`` is going, here or in another process."""
        thread = self._threads.get(name)
        if thread is not None and thread.is_alive():
            return True
        return self.store.running(self.environment, name) is not None

    def _start(self, name: str, slot: datetime) -> None:
        def run() -> None:
            log.info("batch job %s: running its %s slot", name, slot.isoformat())
            self.runner(
                self.client, name, env=self.environment, trigger="schedule", scheduled_for=slot
            )

        thread = threading.Thread(
            target=_quietly, args=(run,), name=f"batch-{self.environment}-{name}", daemon=True
        )
        self._threads[name] = thread
        thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the runs this scheduler started; False if some still run."""
        deadline = None if timeout is None else datetime.now(UTC) + timedelta(seconds=timeout)
        for thread in list(self._threads.values()):
            left = None
            if deadline is not None:
                left = max(0.0, (deadline - datetime.now(UTC)).total_seconds())
            thread.join(left)
        return not any(t.is_alive() for t in self._threads.values())


__all__ = [
    "MACROS",
    "PendingRun",
    "Runner",
    "Scheduler",
    "begin_run",
    "check_schedule",
    "due",
    "job_view",
    "next_slot",
    "read_manifest",
    "run_in_background",
    "run_job",
    "run_view",
]

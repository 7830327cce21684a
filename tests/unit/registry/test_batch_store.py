"""Batch jobs and runs in the registry: jobs per environment, the schedule's
compare-and-set, one run of a job at a time, abandoned runs. Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from modelport.batch.spec import JobSpec, Manifest
from modelport.errors import Conflict, NotFound
from modelport.registry import Registry
from modelport.registry import schema as t
from modelport.registry.batch import ABANDONED_AFTER_S, BatchStore

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
JOB = JobSpec(
    model="models:/fraud@champion",
    input="/data/tx/",
    output="/out/scores",
    id_columns=("tx_id",),
    name="nightly",
    env="production",
    schedule="0 2 * * *",
)


@pytest.fixture
def store(registry_url: str) -> Iterator[BatchStore]:
    registry = Registry(registry_url)
    yield BatchStore(registry.engine)
    registry.close()


def manifest(run_id: str, rows: int = 10) -> Manifest:
    return Manifest(
        run_id=run_id,
        job="nightly",
        spec=JOB.to_dict(),
        model="fraud",
        version=3,
        model_sha256="ab" * 32,
        runtime="compiled",
        engine="local",
        inputs=[],
        started_at=T0.isoformat(),
        status="succeeded",
        rows_in=rows,
        rows_out=rows - 1,
        rows_rejected=1,
    )


def test_jobs_are_kept_per_environment_and_rewritten_only_on_change(store: BatchStore) -> None:
    assert store.put_job(JOB, actor="ana")
    assert not store.put_job(JOB)
    assert store.put_job(JOB.with_(env="staging", schedule=None))
    job = store.get_job("production", "nightly")
    assert (job.spec, job.schedule, job.updated_by, job.last_scheduled_for) == (
        JOB,
        "0 2 * * *",
        "ana",
        None,
    )
    assert [(j.environment, j.name) for j in store.list_jobs()] == [
        ("production", "nightly"),
        ("staging", "nightly"),
    ]
    assert store.has_schedules("production") and not store.has_schedules("staging")
    assert store.put_job(JOB.with_(chunk_rows=10), actor="bo")
    assert store.get_job("production", "nightly").spec.chunk_rows == 10
    store.delete_job("staging", "nightly")
    assert [j.environment for j in store.list_jobs()] == ["production"]
    with pytest.raises(NotFound, match="jobs in staging: \\[\\]"):
        store.get_job("staging", "nightly")
    with pytest.raises(NotFound):
        store.delete_job("staging", "nightly")


def test_a_slot_is_claimed_once_and_never_an_older_one(store: BatchStore) -> None:
    store.put_job(JOB)
    assert store.claim_due("production", "nightly", T0)
    assert not store.claim_due("production", "nightly", T0)
    assert not store.claim_due("production", "nightly", T0 - timedelta(days=1))
    assert store.claim_due("production", "nightly", T0 + timedelta(days=1))
    assert store.get_job("production", "nightly").last_scheduled_for == T0 + timedelta(days=1)
    assert not store.claim_due("production", "unknown", T0)
    # a slot written in another zone is the same instant
    later = T0 + timedelta(days=2)
    assert store.claim_due("production", "nightly", later.astimezone(timezone(timedelta(hours=1))))
    assert not store.claim_due("production", "nightly", later)


def test_a_changed_schedule_starts_afresh(store: BatchStore) -> None:
    store.put_job(JOB)
    store.claim_due("production", "nightly", T0)
    store.put_job(JOB.with_(workers=2))
    assert store.get_job("production", "nightly").last_scheduled_for == T0
    store.put_job(JOB.with_(workers=2, schedule="0 3 * * *"))
    assert store.get_job("production", "nightly").last_scheduled_for is None


def test_concurrent_claims_of_one_slot_have_one_winner(store: BatchStore) -> None:
    store.put_job(JOB)
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        results.append(store.claim_due("production", "nightly", T0))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]


def test_a_run_is_recorded_from_start_to_outcome(store: BatchStore) -> None:
    store.put_job(JOB)
    run = store.start_run(JOB, trigger="schedule", run_id="r1", scheduled_for=T0, actor="ana")
    assert (run.status, run.trigger, run.job, run.output, run.scheduled_for) == (
        "running",
        "schedule",
        "nightly",
        "/out/scores",
        T0,
    )
    assert store.running("production", "nightly") == run
    done = store.finish_run("r1", manifest=manifest("r1"))
    assert (done.status, done.model, done.version, done.error) == ("succeeded", "fraud", 3, None)
    assert (done.rows_in, done.rows_out, done.rows_rejected) == (10, 9, 1)
    assert done.finished_at is not None and done.duration_s is not None
    assert store.running("production", "nightly") is None
    assert done.to_dict()["spec"]["id_columns"] == ["tx_id"]

    failed = store.start_run(JOB, trigger="cli", run_id="r2")
    failed = store.finish_run(failed.run_id, error="input /data/tx/ does not exist")
    assert (failed.status, failed.error, failed.rows_in) == (
        "failed",
        "input /data/tx/ does not exist",
        None,
    )
    with pytest.raises(NotFound, match="batch runs"):
        store.get_run("nope")
    with pytest.raises(NotFound):
        store.finish_run("nope", error="x")


def test_a_job_runs_once_at_a_time(store: BatchStore) -> None:
    store.put_job(JOB)
    first = store.start_run(JOB, trigger="schedule", scheduled_for=T0)
    with pytest.raises(Conflict, match=f"running already in production \\(run {first.run_id}"):
        store.start_run(JOB, trigger="cli")
    store.start_run(JOB.with_(env="staging"), trigger="cli")  # another environment's job
    store.start_run(JOB.with_(name=None), trigger="cli")  # one-off runs are not limited
    store.start_run(JOB.with_(name=None), trigger="cli")
    store.finish_run(first.run_id, error="boom")
    store.start_run(JOB, trigger="cli")
    # a slot gives at most one run, even after the first one ended
    with pytest.raises(Conflict):
        store.start_run(JOB, trigger="schedule", scheduled_for=T0)


def test_a_run_whose_heartbeat_stopped_is_failed_as_abandoned(store: BatchStore) -> None:
    store.put_job(JOB)
    stale = store.start_run(JOB, trigger="schedule")
    store.heartbeat(stale.run_id)
    assert store.fail_abandoned() == 0
    long_ago = datetime.now(UTC) - timedelta(seconds=ABANDONED_AFTER_S + 5)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(t.batch_runs)
            .where(t.batch_runs.c.run_id == stale.run_id)
            .values(heartbeat_at=long_ago)
        )
    fresh = store.start_run(JOB, trigger="cli")  # the abandoned run no longer blocks
    abandoned = store.get_run(stale.run_id)
    assert abandoned.status == "failed" and "abandoned" in (abandoned.error or "")
    assert store.running("production", "nightly") == fresh


def test_runs_are_listed_newest_first_by_job_environment_and_status(store: BatchStore) -> None:
    store.put_job(JOB)
    ids = []
    for n in range(3):
        run = store.start_run(JOB, trigger="cli", run_id=f"2026112{n}T000000-aaaa")
        store.finish_run(run.run_id, error="x" if n == 1 else None)
        ids.append(run.run_id)
    store.start_run(JOB.with_(name="other"), trigger="api", run_id="z-other")
    store.start_run(JOB.with_(env="staging"), trigger="api", run_id="z-staging")
    listed = [r.run_id for r in store.list_runs("nightly", environment="production")]
    assert listed == ids[::-1]
    assert len(store.list_runs(limit=2)) == 2
    assert {r.run_id for r in store.list_runs(environment="staging")} == {"z-staging"}
    assert [r.run_id for r in store.list_runs(status="failed")] == [ids[1]]

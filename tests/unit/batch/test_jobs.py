"""Jobs by name and on a schedule: cron slots, missed runs, one run at a time, two
schedulers on one registry, and the run history `run_job` keeps.

The engine is replaced by a small fake here, so that the history is tested alone (the
real engine runs in tests/e2e/test_batch_jobs.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelport.batch.jobs import Scheduler, check_schedule, due, job_view, next_slot, run_job
from modelport.batch.spec import JobSpec, Manifest
from modelport.client import Client
from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry.batch import BatchStore
from modelport.settings import Settings

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
HOURLY = JobSpec(
    model="models:/fraud/1", input="in/", output="out/", name="hourly", schedule="0 * * * *"
)


# -- the schedule ------------------------------------------------------------------------


def test_schedules_have_five_fields_or_a_shorthand() -> None:
    assert check_schedule("0 2 * * *") == "0 2 * * *"
    assert check_schedule(" */15  *  * * 1-5 ") == "*/15 * * * 1-5"
    assert check_schedule("@daily") == "@daily"
    with pytest.raises(ValueError, match="five fields .* has 6"):
        check_schedule("0 0 2 * * *")
    with pytest.raises(ValueError, match="out of range"):
        check_schedule("61 * * * *")
    with pytest.raises(ValueError, match="unknown schedule '@reboot'"):
        check_schedule("@reboot")


def test_a_slot_is_due_once_its_time_has_passed() -> None:
    assert due(HOURLY, T0, T0 + timedelta(minutes=59, seconds=59)) is None
    assert due(HOURLY, T0, T0 + timedelta(hours=1)) == T0 + timedelta(hours=1)
    assert due(HOURLY, T0, T0 + timedelta(hours=1, seconds=30)) == T0 + timedelta(hours=1)
    assert due(HOURLY.with_(schedule=None), T0, T0 + timedelta(days=1)) is None
    assert next_slot(HOURLY, T0) == T0 + timedelta(hours=1)
    # times without a zone are UTC
    naive = T0.replace(tzinfo=None)
    assert due(HOURLY, naive, naive + timedelta(hours=1)) == T0 + timedelta(hours=1)


def test_missed_slots_give_one_run_at_the_newest() -> None:
    down_until = T0 + timedelta(hours=5, minutes=20)
    assert due(HOURLY, T0, down_until) == T0 + timedelta(hours=5)
    every_minute = HOURLY.with_(schedule="* * * * *")
    assert due(every_minute, T0, T0 + timedelta(minutes=3, seconds=1)) == T0 + timedelta(minutes=3)
    nightly = HOURLY.with_(schedule="0 2 * * *")
    assert due(nightly, T0, T0 + timedelta(days=3, hours=1)) == T0 + timedelta(days=3)


# -- the scheduler -----------------------------------------------------------------------


class Runs:
    """A runner recording what it was asked to run; ``hold`` keeps runs going."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, datetime | None]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.lock = threading.Lock()

    def __call__(self, client: Client, name: str, **kwargs: Any) -> None:
        with self.lock:
            self.started.append((name, kwargs["trigger"], kwargs["scheduled_for"]))
        assert kwargs["env"] == "production"
        self.hold.wait(10)


@pytest.fixture
def jobs_client(registry_url: str, tmp_path: Path) -> Iterator[Client]:
    client = Client(Settings(home=tmp_path / "home", registry_url=registry_url, user="ana"))
    store = BatchStore(client.registry.engine)
    store.put_job(HOURLY)
    store.put_job(HOURLY.with_(name="adhoc", schedule=None))
    store.claim_due("production", "hourly", T0)  # its last slot: T0
    yield client
    client.close()


def test_a_due_job_is_started_once_per_slot(jobs_client: Client) -> None:
    runs = Runs()
    scheduler = Scheduler(jobs_client, "production", runner=runs)
    assert scheduler.tick(T0 + timedelta(minutes=30)) == []
    slot = T0 + timedelta(hours=1)
    assert scheduler.tick(slot + timedelta(seconds=5)) == [("hourly", slot)]
    assert scheduler.wait(5)
    assert scheduler.tick(slot + timedelta(minutes=10)) == []
    assert runs.started == [("hourly", "schedule", slot)]
    assert scheduler.tick(T0 + timedelta(hours=4, minutes=1)) == [
        ("hourly", T0 + timedelta(hours=4))
    ]
    assert scheduler.wait(5)


def test_two_schedulers_on_one_registry_never_both_start_a_slot(
    jobs_client: Client, registry_url: str, tmp_path: Path
) -> None:
    other = Client(Settings(home=tmp_path / "other", registry_url=registry_url))
    runs = Runs()
    schedulers = [Scheduler(c, "production", runner=runs) for c in (jobs_client, other)]
    barrier = threading.Barrier(2)
    started: list[list[tuple[str, datetime]]] = []
    try:
        for hour in (1, 2, 3):
            now = T0 + timedelta(hours=hour, seconds=1)

            def tick(scheduler: Scheduler, now: datetime = now) -> None:
                barrier.wait()
                started.append(scheduler.tick(now))

            threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for scheduler in schedulers:
                assert scheduler.wait(5)
    finally:
        other.close()
    slots = [slot for _, slot in (s for found in started for s in found)]
    assert sorted(slots) == [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    assert len(runs.started) == 3


def test_a_job_still_running_is_not_started_again_and_catches_up_once(
    jobs_client: Client,
) -> None:
    runs = Runs()
    runs.hold.clear()
    scheduler = Scheduler(jobs_client, "production", runner=runs)
    assert scheduler.tick(T0 + timedelta(hours=1)) == [("hourly", T0 + timedelta(hours=1))]
    # the run goes on past the next two slots: they are left, not started beside it
    assert scheduler.tick(T0 + timedelta(hours=2)) == []
    assert scheduler.tick(T0 + timedelta(hours=3)) == []
    runs.hold.set()
    assert scheduler.wait(5)
    assert scheduler.tick(T0 + timedelta(hours=3, minutes=5)) == [
        ("hourly", T0 + timedelta(hours=3))
    ]
    assert scheduler.wait(5)
    assert [slot for _, _, slot in runs.started] == [T0 + timedelta(hours=h) for h in (1, 3)]


def test_a_run_in_another_process_holds_the_schedule_back(jobs_client: Client) -> None:
    store = BatchStore(jobs_client.registry.engine)
    running = store.start_run(store.get_job("production", "hourly").spec, trigger="cli")
    runs = Runs()
    scheduler = Scheduler(jobs_client, "production", runner=runs)
    assert scheduler.tick(T0 + timedelta(hours=1)) == []
    store.finish_run(running.run_id)
    assert scheduler.tick(T0 + timedelta(hours=1)) == [("hourly", T0 + timedelta(hours=1))]
    assert scheduler.wait(5)


def test_job_view_says_when_a_job_runs_next(jobs_client: Client) -> None:
    store = BatchStore(jobs_client.registry.engine)
    hourly = store.get_job("production", "hourly")
    view = job_view(hourly, T0 + timedelta(minutes=10), store)
    assert view["next_run"] == (T0 + timedelta(hours=1)).isoformat()
    assert view["last_run"] is None
    overdue = job_view(hourly, T0 + timedelta(hours=2, minutes=10))
    assert overdue["next_run"] == (T0 + timedelta(hours=2)).isoformat()
    assert job_view(store.get_job("production", "adhoc"), T0)["next_run"] is None


# -- runs by name ------------------------------------------------------------------------


class FakeEngine:
    """`modelport.batch.predict`'s contract: a manifest when it succeeds; a failed
    manifest in the output folder and a `ModelportError` when it fails."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        client: Client,
        spec: JobSpec,
        *,
        resume: bool = False,
        overwrite: bool = False,
        run_id: str | None = None,
        progress: Any = None,
    ) -> Manifest:
        assert run_id is not None
        self.calls.append({"spec": spec, "resume": resume, "run_id": run_id})
        manifest = Manifest(
            run_id=run_id,
            job=spec.name,
            spec=spec.to_dict(),
            model="fraud",
            version=1,
            model_sha256="0" * 64,
            runtime="native",
            engine="local",
            inputs=[],
            started_at=datetime.now(UTC).isoformat(),
            rows_in=5,
            rows_out=5,
            status="succeeded",
        )
        if self.fail is not None:
            out = Path(spec.output)
            out.mkdir(parents=True, exist_ok=True)
            manifest.status, manifest.rows_out = "failed", 2
            (out / "_manifest.json").write_text(json.dumps(manifest.to_dict()))
            raise self.fail
        return manifest


@pytest.fixture
def named(client: Client, tmp_path: Path) -> Client:
    store = BatchStore(client.registry.engine)
    store.put_job(HOURLY.with_(name="scores", output=str(tmp_path / "out"), schedule=None))
    return client


def test_run_job_records_a_run_that_succeeded(
    named: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine()
    monkeypatch.setattr("modelport.batch.predict", engine, raising=False)
    manifest = run_job(named, "scores", resume=True, run_id="r-1")
    assert manifest.rows_out == 5 and engine.calls[0]["resume"] is True
    assert engine.calls[0]["spec"].name == "scores"
    (run,) = BatchStore(named.registry.engine).list_runs("scores")
    assert (run.run_id, run.status, run.trigger, run.started_by) == (
        "r-1",
        "succeeded",
        "cli",
        "tester",
    )
    assert (run.model, run.version, run.rows_in, run.rows_out) == ("fraud", 1, 5, 5)


def test_run_job_records_a_failure_with_its_error_and_raises_it(
    named: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine(fail=InvalidInput("input in/ does not exist", hint="check the path"))
    monkeypatch.setattr("modelport.batch.predict", engine, raising=False)
    with pytest.raises(InvalidInput, match="does not exist"):
        run_job(named, "scores", trigger="api", run_id="r-2")
    run = BatchStore(named.registry.engine).get_run("r-2")
    assert (run.status, run.trigger) == ("failed", "api")
    assert run.error == "input in/ does not exist (check the path)"
    assert (run.rows_in, run.rows_out) == (5, 2)  # from the failed run's manifest
    assert BatchStore(named.registry.engine).running("production", "scores") is None


def test_an_unexpected_error_is_recorded_too(
    named: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "modelport.batch.predict", FakeEngine(fail=OSError("disk full")), raising=False
    )
    with pytest.raises(OSError):
        run_job(named, "scores", run_id="r-3")
    assert BatchStore(named.registry.engine).get_run("r-3").error == "OSError: disk full"


def test_unknown_and_running_jobs_are_refused_before_anything_runs(
    named: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine()
    monkeypatch.setattr("modelport.batch.predict", engine, raising=False)
    with pytest.raises(NotFound, match="batch job 'nope' does not exist in production"):
        run_job(named, "nope")
    with pytest.raises(NotFound):
        run_job(named, "scores", env="staging")
    store = BatchStore(named.registry.engine)
    store.start_run(store.get_job("production", "scores").spec, trigger="schedule")
    with pytest.raises(Conflict, match="running already"):
        run_job(named, "scores")
    assert engine.calls == []


# -- the server's watcher ----------------------------------------------------------------


def test_the_watcher_loads_the_scheduler_only_for_scheduled_jobs(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.serving.watcher import Watcher

    engine = FakeEngine()
    monkeypatch.setattr("modelport.batch.predict", engine, raising=False)
    watcher = Watcher(client)
    store = BatchStore(client.registry.engine)
    store.put_job(HOURLY.with_(name="adhoc", schedule=None, output=str(tmp_path / "a")))
    assert watcher.schedule() == []
    assert "batch" not in watcher.__dict__  # nothing scheduled: nothing loaded

    store.put_job(HOURLY.with_(output=str(tmp_path / "h")))
    store.claim_due("production", "hourly", T0)
    assert watcher.schedule(T0 + timedelta(hours=1, seconds=3)) == [
        ("hourly", T0 + timedelta(hours=1))
    ]
    assert watcher.batch.wait(5)
    (run,) = store.list_runs("hourly")
    assert (run.status, run.trigger, run.scheduled_for) == (
        "succeeded",
        "schedule",
        T0 + timedelta(hours=1),
    )
    # another process holding the batch lease schedules instead of this one
    other = Watcher(client)
    other.holder = "elsewhere"
    assert other.schedule(T0 + timedelta(hours=2, seconds=3)) is None


# -- with the engine: the job's output folder ----------------------------------------------


@pytest.fixture
def scored(
    client: Client, tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> tuple[Client, Path]:
    """clf v1 registered; job ``scores`` scores data/rows.parquet into out/."""
    path, frame = sklearn_classifier
    client.register_model("clf", path, owner="ana@example.com", sample_input=frame)
    (tmp_path / "data").mkdir()
    frame.head(30).to_parquet(tmp_path / "data" / "rows.parquet", index=False)
    spec = JobSpec(
        model="models:/clf/1",
        input=str(tmp_path / "data" / "rows.parquet"),
        output=str(tmp_path / "out"),
        workers=1,
        name="scores",
    )
    BatchStore(client.registry.engine).put_job(spec)
    return client, tmp_path


def test_a_rerun_with_nothing_new_scores_nothing_and_new_data_replaces_the_output(
    scored: tuple[Client, Path],
) -> None:
    client, root = scored
    store = BatchStore(client.registry.engine)
    first = run_job(client, "scores", run_id="r-1")
    assert first.run_id == "r-1" and first.rows_out == 30

    again = run_job(client, "scores", run_id="r-2")
    assert again.run_id == "r-1"  # the output already holds this job's run
    second = store.get_run("r-2")
    assert (second.status, second.rows_in, second.rows_out) == ("succeeded", 0, 0)
    assert second.note is not None and second.note.startswith(
        "nothing new: the output holds run r-1"
    )

    pd.read_parquet(root / "data" / "rows.parquet").head(10).to_parquet(
        root / "data" / "rows.parquet", index=False
    )
    third = run_job(client, "scores", run_id="r-3")
    assert third.run_id == "r-3" and third.rows_out == 10
    assert store.get_run("r-3").note == "replaced run r-1 (succeeded) in the output folder"
    assert (
        job_view(store.get_job("production", "scores"), datetime.now(UTC), store)["last_run"][
            "run_id"
        ]
        == "r-3"
    )


def test_a_folder_holding_something_else_is_left_alone_and_the_run_fails(
    scored: tuple[Client, Path],
) -> None:
    client, root = scored
    (root / "out").mkdir()
    (root / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(Conflict, match="not empty"):
        run_job(client, "scores", run_id="r-1")
    run = BatchStore(client.registry.engine).get_run("r-1")
    assert run.status == "failed" and "not empty" in (run.error or "")
    assert (root / "out" / "precious.txt").read_text() == "keep me"


def test_a_missing_input_fails_the_run_with_its_error(scored: tuple[Client, Path]) -> None:
    client, root = scored
    (root / "data" / "rows.parquet").unlink()
    with pytest.raises(NotFound, match="does not exist"):
        run_job(client, "scores", run_id="r-1")
    run = BatchStore(client.registry.engine).get_run("r-1")
    assert run.status == "failed" and "rows.parquet" in (run.error or "")
    assert run.finished_at is not None


def test_a_running_run_keeps_its_heartbeat(named: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    beats: list[datetime | None] = []
    store = BatchStore(named.registry.engine)

    def slow(client: Client, spec: JobSpec, **kwargs: Any) -> Manifest:
        time.sleep(0.4)
        beats.append(store.get_run(kwargs["run_id"]).heartbeat_at)
        return FakeEngine()(client, spec, **kwargs)

    monkeypatch.setattr("modelport.batch.jobs.HEARTBEAT_S", 0.05)
    monkeypatch.setattr("modelport.batch.predict", slow, raising=False)
    run_job(named, "scores", run_id="r-4")
    started = store.get_run("r-4").started_at
    assert beats[0] is not None and beats[0] > started

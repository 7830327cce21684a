"""Batch routes: list jobs and runs, read a run, start one in the background (202),
404 for an unknown job, 409 while it runs.

The engine is replaced by a fake whose runs wait for the test to let them finish; the
real engine runs in tests/e2e/test_batch_jobs.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelport.batch.spec import JobSpec, Manifest
from modelport.client import Client
from modelport.registry.batch import BatchStore


class HeldEngine:
    """Runs that succeed once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

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
        self.release.wait(10)
        return Manifest(
            run_id=run_id,
            job=spec.name,
            spec=spec.to_dict(),
            model="clf",
            version=1,
            model_sha256="0" * 64,
            runtime="native",
            engine="local",
            inputs=[],
            started_at=datetime.now(UTC).isoformat(),
            status="succeeded",
            rows_in=3,
            rows_out=3,
        )


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldEngine]:
    held = HeldEngine()
    monkeypatch.setattr("modelport.batch.predict", held, raising=False)
    yield held
    held.release.set()


@pytest.fixture
def batch_server(
    client: Client, tmp_path: Path, make_server: Callable[..., TestClient]
) -> TestClient:
    store = BatchStore(client.registry.engine)
    spec = JobSpec(model="models:/clf/1", input="in/", output=str(tmp_path / "out"))
    store.put_job(spec.with_(name="scores", schedule="0 2 * * *"))
    store.put_job(spec.with_(name="staging_only", env="staging"))
    return make_server(
        monitor_interval_seconds=0, rollout_interval_seconds=0, batch_interval_seconds=0
    )


def wait_for_status(server: TestClient, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, Any] = server.get(f"/v1/batch/runs/{run_id}").json()
        if body["status"] == status:
            return body
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {status}")


def test_a_run_starts_in_the_background_and_lands_in_the_history(
    batch_server: TestClient, engine: HeldEngine
) -> None:
    jobs = batch_server.get("/v1/batch/jobs").json()["jobs"]
    assert [(j["name"], j["schedule"]) for j in jobs] == [("scores", "0 2 * * *")]
    assert jobs[0]["next_run"].endswith("T02:00:00+00:00") and jobs[0]["last_run"] is None

    started = batch_server.post("/v1/batch/jobs/scores/run")
    assert started.status_code == 202, started.text
    run = started.json()
    assert (run["status"], run["trigger"], run["job"]) == ("running", "api", "scores")
    assert run["url"] == f"/v1/batch/runs/{run['run_id']}"

    again = batch_server.post("/v1/batch/jobs/scores/run")
    assert again.status_code == 409, again.text
    assert "running already" in again.json()["error"]

    engine.release.set()
    done = wait_for_status(batch_server, run["run_id"], "succeeded")
    assert (done["model"], done["version"], done["rows_out"]) == ("clf", 1, 3)
    assert done["manifest"] is None  # the fake engine writes no output

    runs = batch_server.get("/v1/batch/runs", params={"job": "scores", "limit": 5}).json()
    assert [r["run_id"] for r in runs["runs"]] == [run["run_id"]]
    jobs = batch_server.get("/v1/batch/jobs").json()["jobs"]
    assert jobs[0]["last_run"]["status"] == "succeeded"


def test_unknown_jobs_and_runs_are_404(batch_server: TestClient, engine: HeldEngine) -> None:
    missing = batch_server.post("/v1/batch/jobs/nope/run")
    assert missing.status_code == 404
    assert "batch job 'nope' does not exist in production" in missing.json()["error"]
    # another environment's job is not this server's
    assert batch_server.post("/v1/batch/jobs/staging_only/run").status_code == 404
    assert batch_server.get("/v1/batch/runs/nope").status_code == 404
    assert batch_server.get("/v1/batch/runs").json() == {"runs": []}

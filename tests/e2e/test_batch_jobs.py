"""Batch jobs as a user drives them: declared in modelport.yaml and applied, run by
name from the CLI (as cron or Airflow would), recorded in the history, failing with
their error and a non-zero exit, and run by a server on their cron schedule."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from modelport.registry import Registry
from modelport.registry import schema as t
from modelport.registry.batch import BatchStore
from tests.e2e.test_cli import cli
from tests.integration.conftest import LiveServer, start_server, stop_server

CONFIG = """
models:
  clf:
    owner: ana@example.com
    versions:
      - path: clf.skops
        sample: sample.csv
        aliases: [champion]
batch:
  scores:
    model: models:/clf@champion
    input: data/rows.parquet
    output: out/scores
    id_columns: [row_id]
    chunk_rows: 40
    workers: 1
  broken:
    model: models:/clf/1
    input: data/missing/
    output: out/broken
    workers: 1
  every_minute:
    model: models:/clf/1
    input: data/rows.parquet
    output: out/every_minute
    id_columns: [row_id]
    workers: 1
    schedule: "* * * * *"
"""


@pytest.fixture
def project(tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Path:
    """A folder with a model, its sample, 100 rows to score and the modelport.yaml."""
    path, frame = sklearn_classifier  # written to tmp_path/clf.skops
    frame.to_csv(tmp_path / "sample.csv", index=False)
    (tmp_path / "data").mkdir()
    rows = frame.head(100).copy()
    rows.insert(0, "row_id", [f"r{i}" for i in range(len(rows))])
    rows.to_parquet(tmp_path / "data" / "rows.parquet", index=False)
    config = tmp_path / "modelport.yaml"
    config.write_text(textwrap.dedent(CONFIG).lstrip(), encoding="utf-8")
    assert path.parent == tmp_path
    return config


def runs(home: Path, *args: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cli(home, "batch", "runs", *args, "--json").stdout)
    return found


def test_apply_then_run_jobs_by_name(tmp_path: Path, project: Path) -> None:
    home = tmp_path / "home"
    plan = cli(home, "apply", "-f", str(project), "--dry-run").stdout
    assert "+ batch       production/scores" in plan
    assert "schedule * * * * *" in plan
    cli(home, "apply", "-f", str(project))

    jobs = json.loads(cli(home, "--json", "batch", "jobs").stdout)
    assert [j["name"] for j in jobs] == ["broken", "every_minute", "scores"]
    assert {j["name"]: j["last_run"] for j in jobs}["scores"] is None

    done = cli(home, "batch", "run", "scores")
    assert "production/scores: succeeded" in done.stdout
    out = tmp_path / "out" / "scores"
    assert (out / "_manifest.json").exists()
    scored = pd.read_parquet([p for p in out.rglob("*.parquet") if "_rejects" not in p.parts])
    assert len(scored) == 100 and "row_id" in scored.columns

    (run,) = runs(home, "scores")
    assert (run["status"], run["trigger"], run["job"], run["started_by"]) == (
        "succeeded",
        "cli",
        "scores",
        "ana",
    )
    assert (run["model"], run["version"], run["rows_in"], run["rows_out"]) == ("clf", 1, 100, 100)
    shown = json.loads(cli(home, "batch", "show", run["run_id"], "--json").stdout)
    assert shown["manifest"]["chunks"] == 3  # 100 rows, 40 per chunk
    assert shown["manifest"]["status"] == "succeeded"
    assert "manifest  succeeded; 3 chunks" in cli(home, "batch", "show", run["run_id"]).stdout
    assert "succeeded" in cli(home, "batch", "runs").stdout

    failed = cli(home, "batch", "run", "broken", check=False)
    assert failed.returncode != 0
    assert "production/broken: run " in failed.stderr and "failed" in failed.stderr
    (broken,) = runs(home, "broken")
    assert broken["status"] == "failed" and broken["trigger"] == "cli"
    assert "missing" in broken["error"]
    assert broken["finished_at"] is not None

    unknown = cli(home, "batch", "run", "nope", check=False)
    assert unknown.returncode == 4 and "batch job 'nope' does not exist" in unknown.stderr
    assert cli(home, "batch", "run", "scores", "--env", "staging", check=False).returncode == 4


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path], LiveServer]]:
    started: list[LiveServer] = []

    def run(home: Path) -> LiveServer:
        env = os.environ | {
            "MODELPORT_HOME": str(home),
            "MODELPORT_WORKERS": "1",
            "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
            "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
            "MODELPORT_BATCH_INTERVAL_SECONDS": "0.2",
        }
        server = start_server(env, tmp_path / "server.log")
        started.append(server)
        return server

    yield run
    for server in started:
        stop_server(server)


def wait_for_run(
    http: httpx.Client, job: str, status: str, trigger: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in http.get("/v1/batch/runs", params={"job": job}).json()["runs"]:
            if run["status"] == status and run["trigger"] == trigger:
                return dict(run)
        time.sleep(0.2)
    raise AssertionError(f"no {status} {trigger} run of {job} after {timeout}s")


def test_a_server_runs_a_scheduled_job_and_runs_on_request(
    tmp_path: Path, project: Path, serve: Callable[[Path], LiveServer]
) -> None:
    home = tmp_path / "home"
    cli(home, "apply", "-f", str(project))
    # the job was applied two minutes ago: one slot at least has passed, so the server
    # runs it at its first look instead of at the next minute
    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    applied = BatchStore(registry.engine).get_job("production", "every_minute").updated_at
    with registry.engine.begin() as conn:
        conn.execute(
            sa.update(t.batch_jobs)
            .where(t.batch_jobs.c.name == "every_minute")
            .values(updated_at=applied - timedelta(minutes=2))
        )
    registry.close()

    server = serve(home)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        scheduled = wait_for_run(http, "every_minute", "succeeded", "schedule")
        assert scheduled["scheduled_for"] is not None and scheduled["rows_out"] == 100
        assert (tmp_path / "out" / "every_minute" / "_manifest.json").exists()

        started = http.post("/v1/batch/jobs/scores/run")
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        done = wait_for_run(http, "scores", "succeeded", "api")
        assert done["run_id"] == run_id
        shown = http.get(f"/v1/batch/runs/{run_id}").json()
        assert shown["manifest"]["chunks"] == 3

        assert http.post("/v1/batch/jobs/nope/run").status_code == 404
        jobs_seen = {j["name"]: j for j in http.get("/v1/batch/jobs").json()["jobs"]}
        assert jobs_seen["every_minute"]["last_run"]["trigger"] == "schedule"
    # the slot the server ran is the job's last: one run per slot
    every = runs(home, "every_minute")
    assert len({r["scheduled_for"] for r in every}) == len(every)

"""Batch routes: the jobs of this server's environment and the history of their runs.

- ``GET /v1/batch/jobs``: the jobs, with their schedule and next slot;
- ``GET /v1/batch/runs?job=&limit=``: runs, newest first;
- ``GET /v1/batch/runs/{run_id}``: one run, with its manifest's chunk counts;
- ``POST /v1/batch/jobs/{name}/run``: start a run now, in the background; 202 with the
  run id (poll the run), 404 for an unknown job, 409 while the job is running.

The environment is the server's (``MODELPORT_ENV``), as for the other routes. Each
calls `modelport.batch.jobs` and `modelport.registry.batch.BatchStore` in a thread, as
the CLI does; scheduled runs are started by the servers' watcher, not by these routes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.safepaths import check_location
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.registry.batch import BatchStore

router = APIRouter(prefix="/v1/batch", tags=["batch"])


def _store(request: Request) -> BatchStore:
    from modelport.registry.batch import BatchStore

    return BatchStore(app_state(request).client.registry.engine)


@router.get("/jobs")
async def list_jobs(request: Request) -> Response:
    """The batch jobs of this server's environment: spec, schedule, next slot, last run."""
    from modelport.batch.jobs import job_view

    state = app_state(request)
    store = _store(request)

    def views() -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [job_view(j, now, store) for j in store.list_jobs(state.settings.env)]

    return json_response({"jobs": await asyncio.to_thread(views)})


@router.get("/runs")
async def list_runs(
    request: Request,
    job: Annotated[str | None, Query(description="Only this job's runs.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """Runs of this server's environment, newest first."""
    env = app_state(request).settings.env
    store = _store(request)
    runs = await asyncio.to_thread(store.list_runs, job, environment=env, limit=limit)
    return json_response({"runs": [r.to_dict() for r in runs]})


@router.get("/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> Response:
    """One run: status, model and version, counts, error, and its manifest's chunks."""
    from modelport.batch.jobs import run_view

    store = _store(request)
    run = await asyncio.to_thread(store.get_run, run_id)
    return json_response(await asyncio.to_thread(run_view, run))


@router.post("/jobs/{name}/run", status_code=202)
async def run_job(name: str, request: Request) -> Response:
    """Start a run of job ``name`` now; it goes on in the background. 202 with the run
    (``run_id``, status ``running``); 409 while another run of the job is going."""
    from modelport.batch.jobs import run_in_background

    state = app_state(request)
    settings = state.settings
    job = await asyncio.to_thread(_store(request).get_job, settings.env, name)
    for field in ("input", "output"):
        # Started over HTTP: local paths stay inside the allowed roots (when set) and
        # remote URLs off link-local, metadata and (unless allowed) private addresses.
        await asyncio.to_thread(
            check_location,
            getattr(job.spec, field),
            settings.data_roots,
            allow_private=settings.allow_private_urls,
            what=f"the {field} of batch job {name!r}",
        )
    run = await asyncio.to_thread(
        run_in_background, state.client, name, env=settings.env, trigger="api"
    )
    body = run.to_dict() | {"url": f"/v1/batch/runs/{run.run_id}"}
    return json_response(body, 202)

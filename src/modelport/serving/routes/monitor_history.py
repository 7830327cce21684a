"""Monitor history routes: the monitor runs the server kept, and one column's live
histogram beside its reference.

Read-only and off the hot path. The server's monitor loop stores a report per endpoint
every ``MODELPORT_MONITOR_INTERVAL_SECONDS`` (the registry's ``monitor_runs``, the last
500 per endpoint); these routes give the dashboard's monitoring page its drift heatmap
and the histograms behind a cell.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.errors import InvalidInput, NotFound
from modelport.registry import schema as t
from modelport.registry.entities import utc
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.client import Client

router = APIRouter(prefix="/v1", tags=["monitoring"])

#: What a run keeps of its report: drift per column, data quality, traffic, performance.
RUN_FIELDS = ("model", "version", "window", "since", "until", "rows", "drift", "traffic")


def monitor_runs(
    client: Client, environment: str, endpoint: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` stored monitor runs of an endpoint, oldest first."""
    runs = t.monitor_runs.c
    with client.registry.engine.connect() as conn:
        rows = conn.execute(
            sa.select(runs.id, runs.report, runs.computed_at)
            .where(runs.environment == environment, runs.endpoint == endpoint)
            .order_by(runs.id.desc())
            .limit(limit)
        ).all()
    return [
        {"id": int(row.id), "computed_at": utc(row.computed_at).isoformat()}
        | {key: row.report.get(key) for key in RUN_FIELDS}
        for row in reversed(rows)
    ]


def column_histogram(
    client: Client, environment: str, endpoint: str, column: str, window: str
) -> dict[str, Any]:
    """One input or output column of the served version: the reference profile's
    histogram and the live rows of ``window`` counted on the same bin edges."""
    import numpy as np

    from modelport.durations import parse_duration
    from modelport.monitoring.logstore import LogStore

    deployment = client.registry.get_deployment(environment, endpoint)
    primary = deployment.spec.primary
    mv = client.registry.get_version(primary.model, primary.version)
    profile = mv.profile or {}
    side, prof = "in", (profile.get("columns") or {}).get(column)
    if prof is None:
        side, prof = "out", (profile.get("outputs") or {}).get(column)
    if prof is None:
        raise NotFound(
            f"{mv.uri} has no reference profile for column {column!r}",
            hint="pick a column of the version's signature; the model page lists them",
        )
    hist = prof.get("histogram")
    if not hist or len(hist.get("edges") or ()) < 2:
        raise InvalidInput(
            f"column {column!r} of {mv.uri} has no histogram in its profile ({prof.get('kind')})",
            hint="histograms are kept for numeric columns",
        )
    since = datetime.now(UTC) - timedelta(seconds=parse_duration(window))
    name = f"{side}_{column}"
    live = LogStore(client.settings).window(
        endpoint,
        since=since,
        last=client.settings.monitor_max_rows,
        columns=[name],
        version=mv.version,
    )
    values = np.asarray(live[name], dtype=np.float64) if name in live.columns else np.empty(0)
    values = values[np.isfinite(values)]
    edges = np.asarray(hist["edges"], dtype=np.float64)
    # Same bins as the profile: the last one closed on the right, as numpy's.
    counts = np.histogram(values[(values >= edges[0]) & (values <= edges[-1])], edges)[0]
    return {
        "environment": environment,
        "endpoint": endpoint,
        "model": mv.name,
        "version": mv.version,
        "column": column,
        "window": window,
        "since": since.isoformat(),
        "edges": [float(e) for e in edges],
        "reference": {"counts": [int(c) for c in hist["counts"]], "rows": int(sum(hist["counts"]))},
        "current": {
            "counts": [int(c) for c in counts],
            "rows": int(values.size),
            "below": int((values < edges[0]).sum()),
            "above": int((values > edges[-1]).sum()),
        },
    }


@router.get("/endpoints/{endpoint}/monitor/history")
async def monitor_history(
    request: Request,
    endpoint: str,
    limit: Annotated[int, Query(ge=1, le=500, description="The newest N runs.")] = 48,
) -> Response:
    """The monitor runs the server kept for an endpoint, oldest first."""
    state = app_state(request)
    env = state.settings.env
    runs = await asyncio.to_thread(monitor_runs, state.client, env, endpoint, limit)
    return json_response({"environment": env, "endpoint": endpoint, "runs": runs})


@router.get("/endpoints/{endpoint}/monitor/histogram")
async def monitor_histogram(
    request: Request,
    endpoint: str,
    column: Annotated[str, Query(description="An input or output column.")],
    window: Annotated[str | None, Query(description="e.g. 5m, 1h (the monitor window)")] = None,
) -> Response:
    """A column's reference histogram and its live one over ``window``, on the same bins."""
    state = app_state(request)
    body = await asyncio.to_thread(
        column_histogram,
        state.client,
        state.settings.env,
        endpoint,
        column,
        window or state.settings.monitor_window,
    )
    return json_response(body)

"""Traffic statistics routes: requests, errors and latency over time, from the
prediction log. Read-only; what the dashboard charts.

- ``GET /v1/stats``: every endpoint that logged requests in the window, with its
  totals and per-bucket series (sparklines), live traffic only.
- ``GET /v1/endpoints/{endpoint}/stats``: one endpoint per variant (shadows apart),
  and failed requests per error kind.

Both take ``window`` (``1h``), ``step`` (a bucket, ``1m``; by default the window cut
into about 60), ``until`` (the window's end: an ISO time or a duration back from now;
default now) and ``environment``. Each calls `modelport.monitoring.timeseries` in a
thread.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.durations import parse_duration
from modelport.errors import InvalidInput
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.monitoring.timeseries import Grid

router = APIRouter(prefix="/v1", tags=["monitoring"])

Window = Annotated[str, Query(description="How far back the window goes: 1h, 30m, 7d.")]
Step = Annotated[
    str | None, Query(description="Bucket size, e.g. 1m; default: the window in ~60 buckets.")
]
Until = Annotated[
    str | None,
    Query(description="End of the window: an ISO time or a duration back from now (default now)."),
]


def _grid(window: str, step: str | None, until: str | None) -> Grid:
    # Imported here: the log readers need DuckDB, which workers that only predict never
    # load.
    from modelport.monitoring.labels import parse_time
    from modelport.monitoring.timeseries import Grid, default_step

    now = datetime.now(UTC)
    end = parse_time(until, now=now) if until else now
    seconds = parse_duration(window)
    if seconds <= 0:
        raise InvalidInput(f"window {window!r} must be above 0", hint="e.g. window=1h")
    size = parse_duration(step) if step else default_step(seconds)
    return Grid.covering(end - timedelta(seconds=seconds), end, size)


@router.get("/stats")
async def all_endpoints(
    request: Request,
    window: Window = "1h",
    step: Step = None,
    until: Until = None,
    environment: Annotated[
        str | None, Query(description="Only this environment (default: every one).")
    ] = None,
    series: Annotated[
        str | None,
        Query(description="Comma-separated series to include (default: every one)."),
    ] = None,
) -> Response:
    """Requests, errors and latency of every endpoint in the window, with per-bucket
    series."""
    from modelport.monitoring.timeseries import SERIES, TrafficSeries

    grid = _grid(window, step, until)
    names = [s.strip() for s in series.split(",") if s.strip()] if series else list(SERIES)
    stats = TrafficSeries(app_state(request).settings)
    body = await asyncio.to_thread(stats.endpoints, grid, environment=environment, series=names)
    return json_response(body)


@router.get("/endpoints/{endpoint}/stats")
async def one_endpoint(
    request: Request,
    endpoint: str,
    window: Window = "1h",
    step: Step = None,
    until: Until = None,
    environment: Annotated[
        str | None, Query(description="The environment (default: the server's).")
    ] = None,
) -> Response:
    """An endpoint's requests, errors, latency and rows per request over time, per
    variant, and its failed requests per error kind."""
    from modelport.monitoring.timeseries import TrafficSeries

    state = app_state(request)
    grid = _grid(window, step, until)
    stats = TrafficSeries(state.settings)
    body = await asyncio.to_thread(
        stats.endpoint, endpoint, grid, environment=environment or state.settings.env
    )
    return json_response(body)

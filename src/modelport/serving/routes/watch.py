"""Watching routes: monitor reports on demand, alert rules, incidents.

Off the hot path; each calls `modelport.watching.Watching`, as the CLI does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.watching import Watching

router = APIRouter(prefix="/v1", tags=["monitoring"])

#: Largest id a registry row can have (a signed 64-bit integer): larger ids are refused
#: with a 400 before the database sees them.
MAX_ID = 2**63 - 1


def _watching(request: Request) -> Watching:
    # Imported here: monitoring needs pandas, SciPy and DuckDB, which workers that only
    # predict never load.
    from modelport.watching import Watching

    return Watching(app_state(request).client)


@router.get("/endpoints/{endpoint}/monitor")
async def monitor_endpoint(
    request: Request,
    endpoint: str,
    window: Annotated[str | None, Query(description="e.g. 1h, 30m, 7d")] = None,
    last: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only the last N predictions.")
    ] = None,
) -> Response:
    """Drift, data quality, traffic and performance of an endpoint, computed now."""
    watching = _watching(request)
    env = app_state(request).settings.env
    report = await asyncio.to_thread(
        watching.monitor, endpoint, environment=env, window=window, last=last
    )
    return json_response(report)


@router.get("/alerts")
async def alert_rules(request: Request) -> Response:
    """The alert rules in force, the receivers, and the document's revision."""
    config = await asyncio.to_thread(_watching(request).config)
    body: dict[str, Any] = {
        "revision": config.revision,
        "rules": [r.model_dump(by_alias=True) for r in config.rules()],
        "receivers": sorted(config.spec.receiver_map()),
    }
    return json_response(body)


@router.get("/incidents")
async def list_incidents(
    request: Request,
    status: Annotated[str | None, Query(description="firing or resolved")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Incidents of this server's environment, newest first."""
    env = app_state(request).settings.env
    incidents = await asyncio.to_thread(
        _watching(request).incidents, environment=env, status=status, limit=limit
    )
    return json_response([i.to_dict() for i in incidents])


@router.get("/incidents/{incident_id}")
async def show_incident(
    request: Request, incident_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """An incident with its diagnosis and every notification attempt."""
    return json_response(await asyncio.to_thread(_watching(request).incident, incident_id))

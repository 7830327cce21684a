"""Comparison routes: ``GET /v1/endpoints/{endpoint}/shadow`` compares each shadow
variant with the live answers to the same requests, ``POST /v1/endpoints/{endpoint}/replay``
replays logged requests against another environment's deployment.

Off the hot path; each calls what the CLI calls (`modelport.monitoring.comparison`,
`modelport.replay`), in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.errors import InvalidInput
from modelport.serving.codecs import parse_json
from modelport.serving.http import json_response, read_body
from modelport.serving.state import app_state

router = APIRouter(prefix="/v1", tags=["monitoring"])

#: Most rows one replay request may read.
MAX_REPLAY_ROWS = 100_000
_REPLAY_FIELDS = frozenset({"from", "to", "window", "limit"})

_REPLAY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string", "default": "production"},
                        "to": {"type": "string", "default": "staging"},
                        "window": {"type": "string", "default": "1h"},
                        "limit": {"type": "integer", "default": 10_000},
                    },
                },
                "example": {"from": "production", "to": "staging", "window": "1h"},
            }
        },
    }
}


@router.get("/endpoints/{endpoint}/shadow")
async def shadow(
    request: Request,
    endpoint: str,
    since: Annotated[
        str, Query(description="A duration back from now (1h) or an ISO time.")
    ] = "1h",
) -> Response:
    """Each shadow variant the endpoint serves now, compared with the live answers."""
    from modelport.monitoring.comparison import shadow_report
    from modelport.monitoring.labels import parse_time
    from modelport.monitoring.logstore import LogStore

    state = app_state(request)
    now = datetime.now(UTC)
    report = await asyncio.to_thread(
        shadow_report,
        LogStore(state.settings),
        state.client.registry,
        endpoint,
        environment=state.settings.env,
        since=parse_time(since, now=now),
        until=now,
    )
    return json_response(report)


def parse_replay(body: Any) -> dict[str, Any]:
    """``replay`` keyword arguments from a decoded body (every field optional)."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise InvalidInput(
            f"the replay body must be a JSON object, not {type(body).__name__}",
            hint='send {"from": "production", "to": "staging", "window": "1h"}',
        )
    extra = sorted(set(body) - _REPLAY_FIELDS)
    if extra:
        raise InvalidInput(
            f"unexpected replay field(s) {extra}", hint=f"use {sorted(_REPLAY_FIELDS)}"
        )
    kwargs: dict[str, Any] = {}
    for field, name in (("from", "source"), ("to", "target")):
        if field in body:
            if not isinstance(body[field], str) or not body[field]:
                raise InvalidInput(f"'{field}' must be an environment name, not {body[field]!r}")
            kwargs[name] = body[field]
    if "window" in body:
        window = body["window"]
        if isinstance(window, bool) or not isinstance(window, str | int | float):
            raise InvalidInput(f"'window' must be a duration such as 1h, not {window!r}")
        kwargs["window"] = window
    if "limit" in body:
        limit = body["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"'limit' must be a positive integer, not {limit!r}")
        if limit > MAX_REPLAY_ROWS:
            raise InvalidInput(
                f"'limit' {limit} is over {MAX_REPLAY_ROWS} rows",
                hint="replay more rows from the command line: modelport replay ... --limit N",
            )
        kwargs["limit"] = limit
    return kwargs


@router.post("/endpoints/{endpoint}/replay", openapi_extra=_REPLAY_BODY)
async def replay_endpoint(request: Request, endpoint: str) -> Response:
    """Replay logged live requests against another environment's deployment, in this
    process, and compare the answers with the logged ones."""
    from modelport.replay import replay

    state = app_state(request)
    raw = await read_body(request, state.settings.max_body_bytes)
    kwargs = parse_replay(parse_json(raw) if raw.strip() else None)
    report = await asyncio.to_thread(replay, state.client, endpoint, **kwargs)
    return json_response(report.to_dict())

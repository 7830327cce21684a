"""Feature routes: list the views, push rows, read an entity's online values.

- ``GET /v1/features``: the registered views;
- ``POST /v1/features/{view}/push`` with ``{"rows": [{...}, ...], "to": "online"}``
  (``online``, ``offline`` or ``both``): every row checked against the view, then
  written; answers the counts;
- ``GET /v1/features/{view}/{key}``: the values held for ``key``, their event time,
  age and whether they are stale (older than the view's ttl); 404 naming the view or
  the key when there is none.

Each calls `modelport.features.api.Features` on the server's online store
(``AppState.online_store``), as the CLI and the Python API do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.errors import InvalidInput, NotFound, PayloadTooLarge
from modelport.features.api import TARGETS, Features
from modelport.serving.codecs import parse_json
from modelport.serving.http import json_response, read_body
from modelport.serving.state import app_state

router = APIRouter(prefix="/v1/features", tags=["features"])

#: Most rows one push may carry; larger loads go through a file (``modelport features push``).
MAX_PUSH_ROWS = 10_000

_PUSH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": '{"rows": [...], "to": "online"}'},
                "example": {"rows": [{"user_id": "u1", "age": 31.0}], "to": "online"},
            }
        },
    }
}


def _features(request: Request) -> Features:
    state = app_state(request)
    return Features(state.client, store=state.online_store)


def parse_push(body: Any) -> tuple[list[Mapping[str, Any]], str]:
    """The rows and the target of a push body, or an error naming the bad part."""
    if not isinstance(body, Mapping) or "rows" not in body:
        raise InvalidInput("a push body is an object with 'rows'", hint='{"rows": [{...}]}')
    extra = sorted(set(body) - {"rows", "to"})
    if extra:
        raise InvalidInput(f"unexpected push field(s) {extra}", hint="send rows and to")
    rows, to = body["rows"], body.get("to", "online")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise InvalidInput("'rows' must be a list of objects", hint='{"rows": [{...}]}')
    if len(rows) > MAX_PUSH_ROWS:
        raise PayloadTooLarge(
            f"'rows' holds {len(rows)} rows, over the limit of {MAX_PUSH_ROWS}",
            hint="split it, or push a file: modelport features push VIEW --file rows.parquet",
        )
    if to not in TARGETS:
        raise InvalidInput(f"'to' is {to!r}", hint=f"push to one of {TARGETS}")
    return rows, to


@router.get("")
async def list_views(request: Request) -> Response:
    """The registered feature views."""
    features = _features(request)
    views = await asyncio.to_thread(features.list_views)
    return json_response({"views": [v.to_dict() for v in views]})


@router.post("/{view}/push", openapi_extra=_PUSH_BODY)
async def push(request: Request, view: str) -> Response:
    """Check rows against the view and write them online, offline or both."""
    state = app_state(request)
    rows, to = parse_push(parse_json(await read_body(request, state.settings.max_body_bytes)))
    result = await asyncio.to_thread(_features(request).push, view, rows, to)  # type: ignore[arg-type]
    return json_response(result)


@router.get("/{view}/stream/status")
async def stream_status(
    request: Request,
    view: str,
    group: Annotated[
        str | None, Query(description="Consumer group (default: modelport.VIEW).")
    ] = None,
) -> Response:
    """How far a stream view's processor is behind its stream, and whether it reads
    (what ``modelport stream status VIEW`` prints, and a state for the dashboard)."""
    from modelport.features.processor import stream_view
    from modelport.features.streams import stream_status as status_of
    from modelport.features.streams import stream_url

    features = _features(request)
    settings = features.client.settings
    url = stream_url(settings.online_store, settings.stream_url)
    source = stream_view(features.get_view(view))
    return json_response(await asyncio.to_thread(status_of, url, view, source.stream, group))


@router.get("/{view}/{key}")
async def online(request: Request, view: str, key: str) -> Response:
    """The values the online store holds for ``key``, their event time and staleness."""
    found = (await asyncio.to_thread(_features(request).online, view, [key]))[key]
    if found is None:
        raise NotFound(
            f"feature view {view!r} holds nothing for key {key!r}",
            hint=f"materialize the view (modelport features materialize {view}) or push it",
        )
    body = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in found.items()}
    return json_response({"view": view, "key": key, **body})

"""Prediction log search: the rows logged for requests, read-only.

- ``GET /v1/predictions``: logged prediction rows, newest first, filtered by
  ``id`` (a prediction id, or a request id for every row of that request),
  ``endpoint``, ``environment``, ``since`` and ``until`` (ISO times or durations back
  from now), at most ``limit`` rows (50 by default, 500 at most). Each row has its
  base columns (``prediction_id``, ``ts``, ``endpoint``, ``variant``, ``status``,
  ``latency_s`` ...), ``inputs`` (the ``in_`` columns, feature values the server
  joined included), ``outputs`` (the ``out_`` columns), ``stale_features`` and the
  newest ``label`` given for it, if any.

It runs SQL over `modelport.monitoring.logstore.LogStore`'s views, as
``modelport logs query`` does; a bad parameter answers 400 saying which and how to fix
it.

Example::

    curl 'localhost:8000/v1/predictions?endpoint=fraud&since=1h&limit=20'
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.errors import InvalidInput
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    import pyarrow as pa

    from modelport.settings import Settings

router = APIRouter(prefix="/v1", tags=["monitoring"])

#: Rows one search returns by default, and at most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Names and ids are letters, digits, '_', '.' and '-'.
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
#: Columns a row keeps as they are; ``in_`` and ``out_`` ones are grouped.
_BASE = (
    *("prediction_id", "request_id", "ts", "environment", "endpoint", "model", "version"),
    *("variant", "status", "error", "latency_s", "shadow", "stale_features"),
)


def _token(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _TOKEN.match(value):
        raise InvalidInput(
            f"{name} {value!r} is not a valid {name}",
            hint="letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return value


def _time(name: str, value: str | None) -> datetime | None:
    from modelport.monitoring.labels import parse_time

    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc.message}", hint=exc.hint) from None


def search_sql(
    *,
    prediction_id: str | None = None,
    endpoint: str | None = None,
    environment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> str:
    """SQL over the views ``predictions`` and ``labels`` for one search, newest first.

    Every value is validated before it is quoted into the text."""
    from modelport.monitoring.logstore import _literal, _timestamp

    where = []
    if prediction_id is not None:
        literal = _literal(prediction_id)
        where.append(f"(p.prediction_id = {literal} OR p.request_id = {literal})")
    if endpoint is not None:
        where.append(f"p.endpoint = {_literal(endpoint)}")
    if environment is not None:
        where.append(f"p.environment = {_literal(environment)}")
    if since is not None:
        where.append(f"p.ts >= {_timestamp(since)}")
    if until is not None:
        where.append(f"p.ts < {_timestamp(until)}")
    condition = " WHERE " + " AND ".join(where) if where else ""
    return (
        "SELECT p.*, l.label AS __label, l.label_value AS __label_value, "
        "l.ts AS __label_ts FROM predictions p LEFT JOIN ("
        "SELECT prediction_id, arg_max(label, ts) AS label, "
        "arg_max(label_value, ts) AS label_value, max(ts) AS ts "
        "FROM labels GROUP BY prediction_id) l USING (prediction_id)"
        f"{condition} ORDER BY p.ts DESC, p.prediction_id LIMIT {int(limit)}"
    )


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, grouped into base columns, inputs, outputs and label."""
    from modelport.monitoring.records import INPUT_PREFIX, OUTPUT_PREFIX

    found: list[dict[str, Any]] = []
    for raw in table.to_pylist():
        row: dict[str, Any] = {k: _plain(raw.get(k)) for k in _BASE if k in raw}
        row["inputs"] = {
            k[len(INPUT_PREFIX) :]: _plain(v) for k, v in raw.items() if k.startswith(INPUT_PREFIX)
        }
        row["outputs"] = {
            k[len(OUTPUT_PREFIX) :]: _plain(v)
            for k, v in raw.items()
            if k.startswith(OUTPUT_PREFIX)
        }
        label = raw.get("__label")
        row["label"] = (
            None
            if label is None
            else {
                "label": label,
                "value": _plain(raw.get("__label_value")),
                "ts": _plain(raw.get("__label_ts")),
            }
        )
        found.append(row)
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def search(settings: Settings, **filters: Any) -> list[dict[str, Any]]:
    """The rows of one search (see `search_sql`)."""
    from modelport.monitoring.logstore import LogStore

    return _rows(LogStore(settings).query(search_sql(**filters)))


@router.get("/predictions")
async def predictions(
    request: Request,
    id: Annotated[
        str | None, Query(description="A prediction id, or a request id for all its rows.")
    ] = None,
    endpoint: Annotated[str | None, Query(description="Only this endpoint.")] = None,
    environment: Annotated[str | None, Query(description="Only this environment.")] = None,
    since: Annotated[
        str | None, Query(description="From: an ISO time or a duration back from now (1h).")
    ] = None,
    until: Annotated[
        str | None, Query(description="Before: an ISO time or a duration back from now.")
    ] = None,
    limit: Annotated[
        str | None, Query(description=f"Most rows (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).")
    ] = None,
) -> Response:
    """Logged prediction rows, newest first, with inputs, outputs and label."""
    count = _limit(limit)
    start, end = _time("since", since), _time("until", until)
    if start is not None and end is not None and start >= end:
        raise InvalidInput("since must be before until", hint="e.g. since=2h&until=1h")
    filters = {
        "prediction_id": _token("id", id),
        "endpoint": _token("endpoint", endpoint),
        "environment": _token("environment", environment),
        "since": start,
        "until": end,
        "limit": count,
    }
    rows = await asyncio.to_thread(search, app_state(request).settings, **filters)
    body = {"rows": rows, "limit": count, "truncated": len(rows) == count}
    return json_response(body)


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidInput(
            f"limit {text!r} must be a whole number from 1 to {MAX_LIMIT}",
            hint="narrow the search with endpoint, since and until instead",
        )
    return value

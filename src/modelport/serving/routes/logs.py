"""Prediction log search: the rows logged for requests, read-only.

- ``GET /v1/predictions``: logged prediction rows, newest first, filtered by
  ``id`` (a prediction id, or a request id for every row of that request),
  ``endpoint``, ``environment``, ``since`` and ``until`` (ISO times or durations back
  from now), at most ``limit`` rows (50 by default, 500 at most). Each row has its
  base columns (``prediction_id``, ``ts``, ``endpoint``, ``variant``, ``status``,
  ``latency_s`` ...), ``inputs`` (the ``in_`` columns, feature values the server
  joined included), ``outputs`` (the ``out_`` columns), ``stale_features``, the
  newest ``label`` given for it, if any, and ``features``: which inputs a feature
  view supplied (``{column: view}``; the others came with the request).

The log keeps the values the model saw, not where each came from; ``features`` is
derived from the endpoint's deployment as it is now: the columns its feature views
add (`modelport.features.enrich.output_columns`), which a request may not send.

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

    from modelport.client import Client

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
        label = raw.get("label")
        row["label"] = (
            None
            if label is None
            else {
                "label": label,
                "value": _plain(raw.get("label_value")),
                "ts": _plain(raw.get("label_ts")),
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


def search(client: Client, **filters: Any) -> list[dict[str, Any]]:
    """The rows of one search (`modelport.monitoring.logstore.LogStore.search`), each
    with the inputs its endpoint's feature views supply."""
    from modelport.monitoring.logstore import LogStore

    rows = _rows(LogStore(client.settings).search(**filters))
    supplied = {
        key: feature_columns(client, *key)
        for key in {(r["environment"], r["endpoint"]) for r in rows}
    }
    for row in rows:
        views = supplied[(row["environment"], row["endpoint"])]
        row["features"] = {c: views[c] for c in row["inputs"] if c in views}
    return rows


def feature_columns(client: Client, environment: str | None, endpoint: str) -> dict[str, str]:
    """``{column: view}`` for the columns the feature views of ``endpoint``'s deployment
    add to its requests (none when it is not deployed there or names no view)."""
    from modelport.errors import NotFound
    from modelport.features.enrich import output_columns
    from modelport.registry.features import FeatureViewStore

    if environment is None:
        return {}
    try:
        names = client.registry.get_deployment(environment, endpoint).spec.features
    except NotFound:
        return {}
    store = FeatureViewStore(client.registry.engine)
    out: dict[str, str] = {}
    for name in names:
        try:
            view = store.get(name)
        except NotFound:
            continue
        out |= dict.fromkeys(output_columns(view), name)
    return out


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
    rows = await asyncio.to_thread(search, app_state(request).client, **filters)
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

"""Feedback routes: ``POST /v1/feedback`` attaches delayed labels to predictions, and
``GET /v1/endpoints/{endpoint}/performance`` reports what they say about each version.

A label is one JSON value (a class as text, number or boolean; a number for
regressors) for a ``prediction_id`` from a predict response. Bodies take one of::

    {"prediction_id": "9f3c...-0", "label": 1}
    {"feedback": [{"prediction_id": "9f3c...-0", "label": 1}, ...]}
    {"prediction_ids": ["9f3c...-0", ...], "labels": [1, ...]}

and get ``{"accepted": n}`` once the labels are on disk. Each call calls
`modelport.monitoring.labels.LabelStore`, as the CLI and the Python API do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.errors import InvalidInput, PayloadTooLarge, Unavailable
from modelport.serving.codecs import parse_json
from modelport.serving.http import json_response, read_body
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.monitoring.labels import LabelStore

router = APIRouter(prefix="/v1", tags=["feedback"])

#: Most labels one request may carry; bulk loads go through an import.
MAX_FEEDBACK_ITEMS = 10_000
_SHAPES = "{prediction_id, label}, {feedback: [...]} or {prediction_ids: [...], labels: [...]}"

_FEEDBACK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": f"One of {_SHAPES}.",
                },
                "example": {
                    "feedback": [{"prediction_id": "3f2a9c0b1d4e5f60718293a4-0", "label": 1}]
                },
            }
        },
    }
}


def parse_feedback(body: Any) -> tuple[list[str], list[Any]]:
    """Prediction ids and labels from a decoded body, or an error naming the bad part."""
    if not isinstance(body, Mapping):
        raise InvalidInput(
            f"the feedback body must be a JSON object, not {type(body).__name__}",
            hint=f"send {_SHAPES}",
        )
    keys = set(body)
    if keys == {"prediction_id", "label"}:
        return [_id(body["prediction_id"], "prediction_id")], [_label(body["label"], "label")]
    if keys == {"feedback"}:
        return _items(body["feedback"])
    if keys == {"prediction_ids", "labels"}:
        return _columns(body["prediction_ids"], body["labels"])
    raise InvalidInput(
        f"unexpected feedback fields {sorted(keys)}",
        hint=f"send {_SHAPES}",
    )


def _items(items: Any) -> tuple[list[str], list[Any]]:
    _check_list(items, "feedback")
    ids: list[str] = []
    labels: list[Any] = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(
                f"{where} must be an object, not {type(item).__name__}",
                hint='write each item as {"prediction_id": "...", "label": ...}',
            )
        for field in ("prediction_id", "label"):
            if field not in item:
                raise InvalidInput(
                    f"{where} has no '{field}'",
                    hint='write each item as {"prediction_id": "...", "label": ...}',
                )
        extra = sorted(set(item) - {"prediction_id", "label"})
        if extra:
            raise InvalidInput(
                f"{where} has unexpected field(s) {extra}",
                hint="an item holds only prediction_id and label",
            )
        ids.append(_id(item["prediction_id"], f"{where}.prediction_id"))
        labels.append(_label(item["label"], f"{where}.label"))
    return ids, labels


def _columns(ids: Any, labels: Any) -> tuple[list[str], list[Any]]:
    _check_list(ids, "prediction_ids")
    _check_list(labels, "labels")
    if len(ids) != len(labels):
        raise InvalidInput(
            f"{len(ids)} prediction_ids but {len(labels)} labels",
            hint="give exactly one label per prediction id, in the same order",
        )
    return (
        [_id(v, f"prediction_ids[{i}]") for i, v in enumerate(ids)],
        [_label(v, f"labels[{i}]") for i, v in enumerate(labels)],
    )


def _check_list(value: Any, field: str) -> None:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"'{field}' must be a non-empty list", hint=f"send {_SHAPES}")
    if len(value) > MAX_FEEDBACK_ITEMS:
        raise PayloadTooLarge(
            f"'{field}' holds {len(value)} items, over the limit of {MAX_FEEDBACK_ITEMS}",
            hint="split it into several requests, or import a file: modelport feedback-import FILE",
        )


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"{where} must be a non-empty string, not {value!r}",
            hint="use a prediction_id from a predict response",
        )
    return value


def _label(value: Any, where: str) -> Any:
    if value is None:
        raise InvalidInput(f"{where} is null", hint="give the true class or value")
    if isinstance(value, list | dict):
        raise InvalidInput(
            f"{where} must be one value, not a {'list' if isinstance(value, list) else 'object'}",
            hint="a label is a class (text, number or boolean) or a number",
        )
    return value


def _store(request: Request) -> LabelStore:
    store = app_state(request).label_store()
    if store is None:
        raise Unavailable(
            "this server does not take labels",
            hint="send them to a server started by `modelport serve`, or record them where "
            "the prediction log lives: modelport feedback PREDICTION_ID LABEL",
        )
    return store


@router.post("/feedback", openapi_extra=_FEEDBACK_BODY)
async def feedback(request: Request) -> Response:
    """Attach ground truth to predictions; answers once the labels are on disk."""
    state = app_state(request)
    store = _store(request)
    ids, labels = parse_feedback(
        parse_json(await read_body(request, state.settings.max_body_bytes))
    )
    accepted = await asyncio.to_thread(store.add, ids, labels, source="api")
    return json_response({"accepted": accepted})


@router.get("/endpoints/{endpoint}/performance")
async def performance(
    request: Request,
    endpoint: str,
    since: Annotated[
        str | None, Query(description="A duration back from now (7d) or an ISO time.")
    ] = None,
    until: Annotated[str | None, Query(description="A duration back or an ISO time.")] = None,
    bucket: Annotated[str | None, Query(description="Group by time, e.g. 1h or 1d.")] = None,
) -> Response:
    """Accuracy (classifiers) or error (regressors) per model version, from labels."""
    store = _store(request)
    now = datetime.now(UTC)
    from modelport.monitoring.labels import parse_time

    start = parse_time(since, now=now) if since else None
    end = parse_time(until, now=now) if until else None
    rows = await asyncio.to_thread(
        store.performance, endpoint, since=start, until=end, bucket=bucket
    )
    return json_response(
        {
            "endpoint": endpoint,
            "since": start.isoformat() if start else None,
            "until": end.isoformat() if end else None,
            "bucket": bucket,
            "performance": rows,
        }
    )

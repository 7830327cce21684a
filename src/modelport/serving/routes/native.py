"""Native data-plane routes: ``POST /v1/endpoints/{endpoint}/predict`` and endpoint status.

``predict`` is answered by the fast path (`modelport.serving.fastpath`); the route here
documents it and serves it when the app runs without that layer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelport.serving import handlers
from modelport.serving.http import json_response, read_body, reply_response
from modelport.serving.state import app_state

router = APIRouter(tags=["predict"])

_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "One of MLflow's scoring shapes: dataframe_split, "
                    "dataframe_records, instances or inputs.",
                },
                "example": {"dataframe_records": [{"amount": 12.5, "age": 31}]},
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/v1/endpoints/{endpoint}/predict", openapi_extra=_PREDICT_BODY)
async def predict(endpoint: str, request: Request) -> Response:
    """Predict with what ``endpoint`` serves; body in MLflow scoring JSON or CSV."""
    state = app_state(request)
    body = await read_body(request, state.settings.max_body_bytes)
    content_type = request.headers.get("content-type", "application/json")
    reply = await handlers.native_predict(
        state.plane, endpoint, body, content_type, request.headers.get
    )
    return reply_response(reply)


@router.get("/v1/endpoints")
async def list_endpoints(request: Request) -> Response:
    """Every endpoint this server serves, with its version and load state."""
    state = app_state(request)
    return json_response({"environment": state.plane.env, "endpoints": state.plane.describe()})


@router.get("/v1/endpoints/{endpoint}")
async def get_endpoint(endpoint: str, request: Request) -> Response:
    """One endpoint: what it serves, its signature and state."""
    plane = app_state(request).plane
    endpoint_state = plane.endpoint(endpoint)
    info = next(e for e in plane.describe() if e["endpoint"] == endpoint)
    info["signature"] = endpoint_state.version.signature.to_dict()
    return json_response(info)

"""Open Inference Protocol (KServe V2) routes, as KServe and Triton define them.

``{name}`` is an endpoint of the served environment; ``{version}`` a version of the
model it serves. The bodies are handled in `modelport.serving.inference_protocol`;
``infer`` itself is answered by the fast path (`modelport.serving.fastpath`), and the
route here documents it and serves it when the app runs without that layer.

The health probes answer at ``/v2/health/*`` (the protocol's) and at ``/health/*``
(`health`, for Kubernetes): liveness is 200 while the process runs its event loop;
readiness is 503 until the deployments are read and loaded and again from SIGTERM on
(``"draining": true``), and lists the dependencies' circuit breakers
(`modelport.breaker`), none of which makes it false: a server with a dependency away
still serves what does not need it, and taking every replica out of the load balancer
for a shared outage would turn a partial outage into a full one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelport import __version__
from modelport.serving import handlers
from modelport.serving.handlers import version_number
from modelport.serving.http import json_response, read_body, reply_response
from modelport.serving.inference_protocol import HEADER_LENGTH, model_metadata
from modelport.serving.state import app_state

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
#: The same probes without the protocol's prefix (``/health/live``, ``/health/ready``).
health = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def server_metadata() -> Response:
    return json_response({"name": "modelport", "version": __version__, "extensions": []})


@router.get("/health/live")
@health.get("/live")
async def live() -> Response:
    """200 while the process serves; a liveness probe restarts it otherwise."""
    return json_response({"live": True})


@router.get("/health/ready")
@health.get("/ready")
async def ready(request: Request) -> Response:
    """200 when this server should get traffic; 503 while starting or draining."""
    plane = app_state(request).plane
    is_ready = plane.is_ready()
    body: dict[str, Any] = {
        "ready": is_ready,
        "draining": plane.draining,
        "dependencies": {b.name: b.describe() for b in plane.breakers()},
    }
    if plane.draining:
        body["reason"] = "shutting down: draining, then finishing the requests in flight"
    return json_response(body, 200 if is_ready else 503)


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def metadata(name: str, request: Request, version: str | None = None) -> Response:
    plane = app_state(request).plane
    mv = await plane.version_for(name, version_number(version))
    state = plane.endpoint(name)
    model = state.version.name
    served = [str(v) for v in sorted(m.version for m in state.versions.values() if m.name == model)]
    return json_response(model_metadata(name, mv, served))


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(name: str, request: Request, version: str | None = None) -> Response:
    is_ready = app_state(request).plane.endpoint_ready(name, version_number(version))
    return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 503)


_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "required": ["inputs"]}}},
    }
}


@router.post("/models/{name}/infer", openapi_extra=_INFER_BODY)
@router.post("/models/{name}/versions/{version}/infer", openapi_extra=_INFER_BODY)
async def infer(name: str, request: Request, version: str | None = None) -> Response:
    """Inference with V2 tensors (JSON, or the binary tensor data extension)."""
    state = app_state(request)
    body = await read_body(request, state.settings.max_body_bytes)
    reply = await handlers.v2_infer(
        state.plane, name, version, body, request.headers.get(HEADER_LENGTH), request.headers.get
    )
    return reply_response(reply)

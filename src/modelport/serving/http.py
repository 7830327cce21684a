"""The HTTP edge: error bodies and status codes, body limits, JSON responses.

Domain errors (`modelport.errors`) know nothing of HTTP; `STATUS` is the one table
that maps them to status codes. Every error body is JSON with an ``error`` message
(the Open Inference Protocol's shape) plus a ``code`` and, where known, a ``hint``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelport import errors

STATUS: dict[type[errors.ModelportError], int] = {
    errors.InvalidInput: 400,
    errors.UntrustedArtifact: 400,
    errors.UnknownFlavor: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.ArtifactError: 422,
    errors.PredictionFailed: 500,
    errors.Unavailable: 503,
}


def status_for(exc: errors.ModelportError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, headers=headers, media_type="application/json")


def reply_response(reply: Any) -> Response:
    """A `handlers.Reply` as a Starlette response."""
    return Response(
        reply.body, reply.status, headers=dict(reply.headers), media_type=reply.media_type
    )


def error_response(exc: errors.ModelportError) -> Response:
    headers = None
    if isinstance(exc, errors.Unavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    return json_response(exc.to_dict(), status_for(exc), headers)


async def modelport_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ModelportError)
    return error_response(exc)


async def http_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return json_response({"error": str(exc.detail), "code": "http_error"}, exc.status_code)


async def validation_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return json_response(
        {"error": "invalid request: " + "; ".join(problems), "code": "invalid_input"}, 400
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(
            f"request body of {declared} bytes is over the limit of {limit} bytes",
            hint="send fewer rows per request, or raise MODELPORT_MAX_BODY_BYTES",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(
                f"request body is over the limit of {limit} bytes",
                hint="send fewer rows per request, or raise MODELPORT_MAX_BODY_BYTES",
            )
        chunks.append(chunk)
    return b"".join(chunks)

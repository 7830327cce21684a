"""The HTTP edge: error bodies and status codes, body limits, JSON responses.

Domain errors (`modelport.errors`) know nothing of HTTP; `STATUS` is the one table
that maps them to status codes. Every error body is JSON with an ``error`` message
(the Open Inference Protocol's shape) plus a ``code`` and, where known, a ``hint``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelport import errors

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

STATUS: dict[type[errors.ModelportError], int] = {
    errors.InvalidInput: 400,
    errors.UntrustedArtifact: 400,
    errors.UnknownFlavor: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.RateLimited: 429,
    errors.DeadlineExceeded: 504,
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


@dataclass(frozen=True)
class Reply:
    """A response before any framework sees it: what the fast path sends as is, and
    what `reply_response` hands to Starlette."""

    body: bytes
    status: int = 200
    media_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    #: what answered, for metrics: model name, version, rows predicted
    model: str = ""
    version: str = ""
    rows: int = 0
    #: the error's ``code`` (``ModelportError.code``) when this is an error reply
    error_code: str = ""


def reply_response(reply: Reply) -> Response:
    """A `Reply` as a Starlette response."""
    return Response(
        reply.body, reply.status, headers=dict(reply.headers), media_type=reply.media_type
    )


def error_reply(exc: errors.ModelportError) -> Reply:
    """The JSON body and status for a domain error (``Retry-After`` when unavailable)."""
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, errors.Unavailable | errors.RateLimited):
        headers = (("retry-after", str(exc.retry_after)),)
    return Reply(dumps(exc.to_dict()), status_for(exc), headers=headers, error_code=exc.code)


def error_response(exc: errors.ModelportError) -> Response:
    return reply_response(error_reply(exc))


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


#: The health probes' routes: open to every caller, never rate limited.
PROBE_PREFIXES = ("/health/", "/v2/health/")

INTERNAL = {"error": "internal error; the server log has the details", "code": "internal"}


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """A bug in a route: logged with its traceback, answered as the usual JSON error."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response(INTERNAL, 500)


def too_large(limit: int, declared: int | None = None) -> errors.PayloadTooLarge:
    size = f" of {declared} bytes" if declared is not None else ""
    return errors.PayloadTooLarge(
        f"request body{size} is over the limit of {limit} bytes",
        hint="send fewer rows per request, or raise MODELPORT_MAX_BODY_BYTES",
    )


async def read_limited(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body, refused as soon as it (or its Content-Length) passes ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.InvalidInput("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """`read_limited` for a Starlette request (the documented FastAPI routes)."""
    declared = request.headers.get("content-length")
    return await read_limited(request.receive, declared.encode() if declared else None, limit)

"""The fast path: a bare ASGI layer that answers the predict routes itself.

Predictions skip FastAPI's routing, dependency injection and response classes; every
other route (health, metadata, control, docs) falls through to the FastAPI app. The
handlers are the same ones the documented FastAPI routes call. Each predict request is
counted here (requests, errors by kind, latency, rows, in flight), with the label children
cached per label set so that a request only increments.

The limits of the serving path are enforced here, cheapest first, before the body is
read where they can be: the rate limit of the request's key or client (429, every route
but health and metrics), the deadline (504 once ``timeout`` / ``Request-Timeout`` or
``request_timeout_seconds`` has passed; the request's queued work is cancelled), a full
queue (503 ``overloaded``), then the body size (413) as the body is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelport import errors
from modelport.serving import handlers
from modelport.serving.dataplane import DataPlane
from modelport.serving.http import (
    INTERNAL,
    PROBE_PREFIXES,
    Message,
    Receive,
    Reply,
    dumps,
    error_reply,
    read_limited,
)
from modelport.serving.limits import KEY_SCOPE, RateLimiter, limit_key, request_deadline
from modelport.serving.metrics import LiveCount, LiveCounter, LiveHistogram, ServingMetrics
from modelport.settings import worker_count

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"
_INTERNAL = Reply(dumps(INTERNAL), 500, error_code="internal")
#: An endpoint this server does not serve, in labels: request paths must not mint values.
UNKNOWN = "-"
#: Paths never rate limited: probes and scrapes must get through whatever the load.
UNLIMITED_PREFIXES = (*PROBE_PREFIXES, "/metrics")

#: (endpoint, model, version, status, error code) of an answer
_AnswerKey = tuple[str, str, str, int, str]
#: its requests, duration, rows and (for an error) errors children
_Children = tuple[LiveCounter, LiveHistogram, LiveCounter, LiveCounter | None]


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (
            b"content-type",
            reply.media_type.encode() if reply.media_type != "application/json" else _JSON,
        ),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers.extend((k.encode(), v.encode()) for k, v in reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def route(path: str) -> tuple[str, str, str | None] | None:
    """("native"|"v2", endpoint, version) for a predict path, else None."""
    parts = path.split("/")
    if len(parts) == 5 and parts[4] == "predict" and parts[1] == "v1" and parts[2] == "endpoints":
        return "native", parts[3], None
    if parts[1:3] != ["v2", "models"] or parts[-1] != "infer":
        return None
    if len(parts) == 5:
        return "v2", parts[3], None
    if len(parts) == 7 and parts[4] == "versions":
        return "v2", parts[3], parts[5]
    return None


class FastPath:
    """Answer ``POST`` predict routes directly; hand everything else to ``app``."""

    def __init__(
        self, app: ASGIApp, plane: DataPlane, max_body_bytes: int, metrics: ServingMetrics
    ) -> None:
        self.app = app
        self.plane = plane
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        settings = plane.settings
        #: the most seconds a predict request may take (and its deadline by default)
        self.deadline_cap = settings.request_timeout_seconds
        self.limiter = RateLimiter(
            settings.rate_limit_per_second,
            workers=worker_count(settings),
            burst=settings.rate_limit_burst,
        )
        self._children: dict[_AnswerKey, _Children] = {}
        self._in_flight: dict[str, LiveCount] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = route(scope["path"]) if scope["method"] == "POST" else None
        limited = None
        if self.limiter.default_rate is not None or KEY_SCOPE in scope:
            limited = self._rate_limited(scope)
        if target is None:
            if limited is not None:
                self.metrics.rate_limited.inc()
                await send_reply(send, error_reply(limited))
                return
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        in_flight = self._in_flight.get(target[1])
        if in_flight is None:
            in_flight = self._in_flight_gauge(target[1])
        in_flight.value += 1
        try:
            if limited is not None:
                reply = error_reply(limited)
            else:
                reply = await self._answer(target, scope, receive)
            await send_reply(send, reply)
        finally:
            in_flight.value -= 1
        endpoint = target[1]
        if reply.status == 404 or endpoint not in self.plane.endpoints:
            endpoint = UNKNOWN  # refused before the endpoint was looked up (429, 413, 400)
        self._observe(endpoint, reply, time.perf_counter() - started)

    def _rate_limited(self, scope: Scope) -> errors.RateLimited | None:
        """The 429 to answer when the request's key or client is over its rate."""
        if scope["path"].startswith(UNLIMITED_PREFIXES):
            return None
        key, rate, who = limit_key(scope)
        return self.limiter.check(key, rate, who)

    async def _answer(
        self, target: tuple[str, str, str | None], scope: Scope, receive: Receive
    ) -> Reply:
        try:
            headers = dict(scope["headers"])
            seconds = request_deadline(scope.get("query_string", b""), headers, self.deadline_cap)
            # asyncio.timeout's work without its context object: this runs on every request.
            deadline = _Deadline(asyncio.current_task())
            timer = asyncio.get_running_loop().call_later(seconds, deadline.expire)
            try:
                return await self._handle(target, scope, receive, headers)
            except asyncio.CancelledError:
                if deadline.expired and deadline.task.uncancel() == 0:
                    raise self._deadline_exceeded(target[1], seconds) from None
                raise  # cancelled from outside too (the server stops): let it through
            finally:
                timer.cancel()
        except errors.ModelportError as exc:
            return error_reply(exc)
        except Exception:
            log.exception("unexpected error on %s", scope["path"])
            return _INTERNAL

    def _deadline_exceeded(self, endpoint: str, seconds: float) -> errors.DeadlineExceeded:
        """The 504 of a request whose deadline passed (recorded in the prediction log)."""
        exc = errors.DeadlineExceeded(
            f"the request to endpoint {endpoint} did not finish within its deadline of "
            f"{seconds:g} s; its queued work was cancelled",
            hint=f"send a longer ?timeout= or Request-Timeout header (at most {self.deadline_cap:g}"
            " s, MODELPORT_REQUEST_TIMEOUT_SECONDS), or fewer rows per request",
        )
        self.plane.log_failure(endpoint, exc)
        return exc

    def _in_flight_gauge(self, endpoint: str) -> LiveCount:
        """The in-flight child of a served endpoint, or of ``-`` (not cached by name)."""
        if endpoint not in self.plane.endpoints:
            endpoint = UNKNOWN
        gauge = self._in_flight.get(endpoint)
        if gauge is None:
            gauge = self._in_flight[endpoint] = self.metrics.live(
                self.metrics.in_flight.labels(endpoint)
            )
        return gauge

    def _observe(self, endpoint: str, reply: Reply, seconds: float) -> None:
        key = (endpoint, reply.model, reply.version, reply.status, reply.error_code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._children_of(endpoint, reply)
        requests, duration, rows, failures = children
        requests.inc()
        duration.observe(seconds)
        if reply.rows:
            rows.inc(reply.rows)
        if failures is not None:
            failures.inc()

    def _children_of(self, endpoint: str, reply: Reply) -> _Children:
        m = self.metrics
        served = (endpoint, reply.model, reply.version)
        return (
            m.live_counter(m.requests.labels(*served, str(reply.status))),
            m.live_histogram(m.duration.labels(*served)),
            m.live_counter(m.rows.labels(*served)),
            m.live_counter(m.errors.labels(*served, reply.error_code))
            if reply.error_code
            else None,
        )

    async def _handle(
        self,
        target: tuple[str, str, str | None],
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
    ) -> Reply:
        kind, endpoint, version = target
        if version is None:  # a pinned version may be another than the live ones
            self.plane.admit(endpoint)  # every live queue full: shed before the body is read
        body = await read_limited(receive, headers.get(b"content-length"), self.max_body_bytes)
        header = _header_reader(headers)
        if kind == "native":
            content_type = headers.get(b"content-type", _JSON).decode("latin-1")
            return await handlers.native_predict(self.plane, endpoint, body, content_type, header)
        length = headers.get(b"inference-header-content-length")
        return await handlers.v2_infer(
            self.plane,
            endpoint,
            version,
            body,
            length.decode("latin-1") if length else None,
            header,
        )


class _Deadline:
    """Cancels a request's task when its deadline passes, and remembers that it did."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        assert task is not None, "a request is answered in a task"
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


def _header_reader(headers: dict[bytes, bytes]) -> Callable[[str], str | None]:
    """A request header by lower-case name (ASGI headers are lower-case bytes)."""

    def read(name: str) -> str | None:
        value = headers.get(name.encode("latin-1"))
        return value.decode("latin-1") if value is not None else None

    return read

"""Limits on the serving path: per-key rate limits and per-request deadlines.

`RateLimiter` keeps one token bucket per API key (or, with auth off, per client
address): a bucket holds at most ``burst`` tokens, refills at ``rate`` tokens a second,
and each request takes one; a request that finds the bucket empty is refused with
`RateLimited` (429) and told in ``Retry-After`` when the next token comes.

Buckets live in each worker process. With N workers behind one port, each worker
allows ``rate / N`` (and ``burst / N``, at least 1), so the total holds when a key's
requests spread over the workers, as they do over many connections; a client on one
keep-alive connection talks to one worker and gets about ``rate / N``.

`request_deadline` reads a predict request's deadline from its ``timeout`` query
parameter or its ``Request-Timeout`` (or ``X-Request-Timeout``) header, in seconds,
capped by the server's ``request_timeout_seconds``.

Example::

    limiter = RateLimiter(default_rate=50.0, workers=2)
    limiter.check("key:ab12", rate=None)   # None: admitted; else the RateLimited to answer
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from modelport.errors import InvalidInput, RateLimited

#: The ASGI scope key under which authentication leaves the request's API key: an
#: object with ``id`` and ``rate_limit`` (requests per second, or None).
KEY_SCOPE = "modelport.key"
#: Headers a client may name its deadline in (seconds), after the ``timeout`` parameter.
TIMEOUT_HEADERS = (b"request-timeout", b"x-request-timeout")
#: Buckets kept before idle (full) ones are forgotten; a forgotten bucket was full, so
#: forgetting it changes nothing for its key. The next pass waits until the count has
#: doubled again, so many busy clients cost one pass per doubling, not one per request.
PRUNE_ABOVE = 10_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    rate: float
    burst: float


class RateLimiter:
    """Token buckets by key, in this process, for ``workers`` processes in all.

    ``default_rate`` (requests per second over all workers, None: unlimited) applies
    to keys and clients without a rate of their own; ``burst`` is how many requests
    may come at once after a quiet spell (default: one second's worth, at least 1).
    """

    def __init__(
        self,
        default_rate: float | None,
        *,
        workers: int = 1,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.default_rate = default_rate
        self.workers = workers
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._prune_at = PRUNE_ABOVE

    def check(
        self, key: str, rate: float | None = None, who: str | None = None
    ) -> RateLimited | None:
        """Take a token from ``key``'s bucket: None when there was one, else the error to
        answer with. ``rate`` is the key's own rate (over all workers), if it has one;
        ``who`` names the caller in the error (default: from ``key``)."""
        total = rate if rate is not None else self.default_rate
        if total is None:
            return None
        share = total / self.workers
        burst = max(1.0, (self.burst if self.burst is not None else total) / self.workers)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != share or bucket.burst != burst:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(burst, now, share, burst)
        else:
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * share)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        wait = (1.0 - bucket.tokens) / share
        return RateLimited(
            f"{who or _who(key)} is over its rate of {total:g} requests per second",
            hint=f"retry after {wait:.2f} s, spread requests out, or ask for a higher limit",
            retry_after=max(1, math.ceil(wait)),
        )

    def _prune(self, now: float) -> None:
        """Forget the buckets that have refilled (equal to new ones)."""
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * b.rate >= b.burst
        ]
        for key in full:
            del self._buckets[key]
        self._prune_at = max(PRUNE_ABOVE, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)


def limit_key(scope: Mapping[str, Any]) -> tuple[str, float | None, str]:
    """The bucket a request counts against, the key's own rate, and who it is (for the
    error): the API key when authentication put one in the scope, else the client's
    address."""
    key = scope.get(KEY_SCOPE)
    if key is not None:
        rate = getattr(key, "rate_limit", None)
        ident = getattr(key, "id", "-")
        return (
            f"key:{ident}",
            float(rate) if rate is not None else None,
            f"API key {getattr(key, 'name', ident)!r} ({ident})",
        )
    address = scope["client"][0] if scope.get("client") else "-"
    return f"client:{address}", None, f"client {address}"


def _who(key: str) -> str:
    kind, _, name = key.partition(":")
    return f"API key {name}" if kind == "key" else f"client {name}"


def request_deadline(query_string: bytes, headers: Mapping[bytes, bytes], cap: float) -> float:
    """The seconds a predict request may take: its ``timeout`` parameter, else its
    ``Request-Timeout`` / ``X-Request-Timeout`` header, else ``cap``; never above ``cap``.

    Raises `InvalidInput` naming the parameter or header when its value is not a
    positive number of seconds."""
    if b"timeout" in query_string:
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if name == "timeout":
                return min(cap, _seconds(value, "query parameter timeout", cap))
    for header in TIMEOUT_HEADERS:
        raw = headers.get(header)
        if raw is not None:
            return min(cap, _seconds(raw.decode("latin-1"), f"header {header.decode()}", cap))
    return cap


def _seconds(value: str, where: str, cap: float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(
            f"{where} is {value!r}, not a positive number of seconds",
            hint=f"send e.g. timeout=2.5; the server caps it at {cap:g} s",
        )
    return seconds

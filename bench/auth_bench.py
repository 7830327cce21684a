"""What the API key check adds to a request, in the same run, as ASGI calls in this
process (no sockets, so the difference is the check itself: find the key in the
headers, SHA-256 it, look its id up in the key cache, compare digests, classify the
route, put the key in the scope).

1. `modelport.serving.auth.AuthMiddleware` in front of an ASGI app that answers at
   once, against that app alone: a predict key on ``POST /v1/endpoints/clf/predict``
   (the hot path), a read key on ``GET /v1/models``, no key (the 401).
2. The real server (`modelport.serving.app.create_app`, the demo fraud model of
   ``serve_bench.py``, compiled form, one row per request) with auth off and on.

Times are this process's CPU time (`time.process_time`, all its threads), which other
processes on a shared machine disturb far less than wall time. Rounds alternate the
cases; microseconds per request are reported as the median and the fastest round.

Run: ``python bench/auth_bench.py [--requests N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from serve_bench import prepare, write_bodies

from modelport.client import Client
from modelport.registry.database import migrate
from modelport.registry.keys import KeyStore
from modelport.serving.app import create_app
from modelport.serving.auth import AuthMiddleware, KeyCache
from modelport.settings import Settings

PREDICT = "/v1/endpoints/clf/predict"


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def request(
    method: str, path: str, token: str | None, body: bytes = b""
) -> tuple[dict[str, Any], Any]:
    """An ASGI scope and its ``receive``."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    scope = {"type": "http", "method": method, "path": path, "query_string": b""}
    return scope | {"headers": headers}, receive


class Sink:
    """``send`` that keeps the last status."""

    status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def per_request_us(app: Any, call: tuple[dict[str, Any], Any], n: int, status: int) -> float:
    scope, receive = call
    sink = Sink()
    started = time.process_time()
    for _ in range(n):
        await app(dict(scope), receive, sink)
    took = (time.process_time() - started) / n * 1e6
    assert sink.status == status, f"answered {sink.status}, not {status}"
    return took


def keys(store: KeyStore) -> tuple[str, str]:
    """50 other keys (a cache of a realistic size), then a predict and a read key."""
    for i in range(50):
        store.create(f"other-{i}", scopes=["predict"])
    predict = store.create("app", scopes=["predict"], endpoints=["clf"]).token
    return predict, store.create("grafana", scopes=["read"]).token


async def middleware_alone(n: int, rounds: int) -> dict[str, list[float]]:
    engine = sa.create_engine("sqlite://")
    migrate(engine)
    store = KeyStore(engine)
    predict, read = keys(store)
    cache = KeyCache(store, interval=0)
    cache.refresh()
    guarded = AuthMiddleware(answer, cache)
    cases = {
        "bare app": (answer, request("POST", PREDICT, predict), 200),
        "+ check, predict key on predict": (guarded, request("POST", PREDICT, predict), 200),
        "+ check, read key on GET /v1/models": (guarded, request("GET", "/v1/models", read), 200),
        "+ check, no key (401)": (guarded, request("POST", PREDICT, None), 401),
    }
    found: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (app, call, status) in cases.items():
            found[name].append(await per_request_us(app, call, n, status))
    return found


class Running:
    """An app with its lifespan started (models loaded), until `stop`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        reply = await self.outbox.get()
        assert reply["type"] == "lifespan.startup.complete", reply

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        assert self.task is not None
        await self.task


async def real_server(workdir: Path, n: int, rounds: int) -> dict[str, list[float]]:
    _model, home = prepare(workdir)
    body = write_bodies(workdir)[1].read_bytes()
    settings = Settings(
        home=home,
        log_sample_rate=0,
        watch_in_server=False,
        monitor_interval_seconds=0,
        poll_interval_seconds=60,
    )
    client = Client(settings)
    client.keys.create("app", scopes=["predict"], endpoints=["fraud"])
    predict = client.keys.create("app2", scopes=["predict"]).token
    path = "/v1/endpoints/fraud/predict"
    servers = {
        "auth off": Running(create_app(settings.model_copy(update={"auth": "off"}), client=client)),
        "auth on": Running(create_app(settings.model_copy(update={"auth": "on"}), client=client)),
    }
    for server in servers.values():
        await server.start()
    found: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for _ in range(rounds):
            for name, server in servers.items():
                call = request("POST", path, predict, body)
                found[name].append(await per_request_us(server.app, call, n, 200))
    finally:
        for server in servers.values():
            await server.stop()
        client.close()
    return found


def table(found: dict[str, list[float]], base: str) -> None:
    """Medians, and the fastest round (the least disturbed by other work on the machine)."""
    baseline = statistics.median(found[base])
    fastest = min(found[base])
    print("| case | us/request median | added us (%) | fastest round us | added us (%) |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in found.items():
        median, best = statistics.median(samples), min(samples)
        print(
            f"| {name} | {median:.2f} | {median - baseline:+.2f} ({median / baseline - 1:+.1%}) "
            f"| {best:.2f} | {best - fastest:+.2f} ({best / fastest - 1:+.1%}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="calls per round (1)")
    parser.add_argument("--predictions", type=int, default=5_000, help="calls per round (2)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    alone = asyncio.run(middleware_alone(args.requests, args.rounds))
    with tempfile.TemporaryDirectory() as workdir:
        real = asyncio.run(real_server(Path(workdir), args.predictions, args.rounds))
    print(f"\n1. the check alone: {args.rounds} rounds of {args.requests} calls, medians\n")
    table(alone, "bare app")
    print(f"\n2. the server's predict path, 1 row: {args.rounds} rounds of {args.predictions}\n")
    table(real, "auth off")


if __name__ == "__main__":
    main()

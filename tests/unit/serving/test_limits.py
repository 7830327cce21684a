"""Limits of the serving path in process: token buckets, deadlines, bounded batch queues,
and per-key rate limits through the app (a key put in the scope as authentication does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from modelport.client import Client
from modelport.config.schema import ServingSpec
from modelport.errors import InvalidConfig, InvalidInput, Overloaded
from modelport.runtimes.base import Prediction
from modelport.serving.app import create_app
from modelport.serving.batcher import Batcher, BatchingConfig
from modelport.serving.fastpath import ASGIApp, Receive, Scope, Send
from modelport.serving.http import Message
from modelport.serving.limits import KEY_SCOPE, RateLimiter, limit_key, request_deadline
from modelport.settings import Settings
from modelport.signature import Columns
from tests.unit.serving.conftest import ROW
from tests.unit.serving.test_batcher import EchoRuntime, cols, run


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Key:
    """What authentication puts in the scope (only ``id`` and ``rate_limit`` are read)."""

    id: str
    name: str = "test"
    scopes: frozenset[str] = field(default_factory=frozenset)
    endpoints: frozenset[str] = field(default_factory=frozenset)
    rate_limit: float | None = None


# -- token buckets ---------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, burst=3, clock=clock)
    assert [limiter.check("client:a") for _ in range(3)] == [None, None, None]
    refused = limiter.check("client:a")
    assert refused is not None and refused.retry_after == 1
    assert "client a is over its rate of 2 requests per second" in str(refused)
    assert limiter.check("client:b") is None  # buckets are per key
    clock.now += 0.5  # one token back at 2/s
    assert limiter.check("client:a") is None
    assert limiter.check("client:a") is not None


def test_retry_after_is_the_wait_for_the_next_token_rounded_up() -> None:
    clock = Clock()
    limiter = RateLimiter(0.25, clock=clock)  # one token every 4 s
    assert limiter.check("k") is None
    refused = limiter.check("k")
    assert refused is not None and refused.retry_after == 4
    clock.now += 3.5
    refused = limiter.check("k")
    assert refused is not None and refused.retry_after == 1


def test_each_worker_allows_its_share_of_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, workers=4, clock=clock)  # 2.5/s and a burst of 2.5 here
    assert [limiter.check("k") is None for _ in range(3)] == [True, True, False]
    clock.now += 0.4  # 1 token at 2.5/s
    assert limiter.check("k") is None


def test_no_rate_means_no_limit_and_a_keys_own_rate_wins() -> None:
    clock = Clock()
    limiter = RateLimiter(None, clock=clock)
    assert all(limiter.check("k") is None for _ in range(1000))
    assert len(limiter) == 0
    assert limiter.check("key:1", rate=1.0) is None
    assert limiter.check("key:1", rate=1.0) is not None
    strict = RateLimiter(1000.0, clock=clock)
    assert strict.check("key:2", rate=1.0) is None
    assert strict.check("key:2", rate=1.0) is not None


def test_refilled_buckets_are_forgotten_when_many_keys_come_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("modelport.serving.limits.PRUNE_ABOVE", 10)
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    for i in range(10):
        limiter.check(f"client:{i}")
    clock.now += 1.0  # every bucket is full again
    limiter.check("client:new")
    assert len(limiter) == 1
    for i in range(30):  # clients that are busy are kept
        limiter.check(f"busy:{i}")
    assert len(limiter) == 31


def test_the_bucket_is_the_keys_id_else_the_clients_address() -> None:
    named = "API key 'test' (ab12)"
    assert limit_key({KEY_SCOPE: Key("ab12", rate_limit=5)}) == ("key:ab12", 5.0, named)
    with_client = {KEY_SCOPE: Key("ab12"), "client": ("10.0.0.1", 5)}
    assert limit_key(with_client) == ("key:ab12", None, named)
    client = ("client:10.0.0.1", None, "client 10.0.0.1")
    assert limit_key({"client": ("10.0.0.1", 5000)}) == client
    assert limit_key({"client": None}) == ("client:-", None, "client -")


# -- deadlines -------------------------------------------------------------------


def test_the_deadline_is_the_parameter_else_a_header_else_the_cap() -> None:
    assert request_deadline(b"", {}, 30.0) == 30.0
    assert request_deadline(b"timeout=2.5", {}, 30.0) == 2.5
    assert request_deadline(b"a=1&timeout=90", {}, 30.0) == 30.0
    assert request_deadline(b"", {b"request-timeout": b"4"}, 30.0) == 4.0
    assert request_deadline(b"", {b"x-request-timeout": b"0.5"}, 30.0) == 0.5
    assert request_deadline(b"timeout=1", {b"request-timeout": b"4"}, 30.0) == 1.0
    assert request_deadline(b"timeouts=1", {}, 30.0) == 30.0


@pytest.mark.parametrize("value", [b"x", b"0", b"-2", b"nan", b"inf"])
def test_a_bad_deadline_names_where_it_came_from(value: bytes) -> None:
    with pytest.raises(InvalidInput, match="header x-request-timeout is"):
        request_deadline(b"", {b"x-request-timeout": value}, 30.0)


def test_a_deadline_cancels_the_request_but_a_cancel_from_outside_stays_a_cancel(
    settings: Settings,
) -> None:
    """A request whose body never comes: its deadline answers 504; a server shutting
    down (cancelling the request's task) gets the cancellation through, not a 504."""
    client = Client(settings)
    fast = create_app(settings, client=client)
    sent: list[Message] = []

    async def never() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    def scope(query: bytes) -> Scope:
        return {
            "type": "http",
            "method": "POST",
            "path": "/v1/endpoints/clf/predict",
            "query_string": query,
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 5000),
        }

    async def main() -> bool:
        await asyncio.wait_for(fast(scope(b"timeout=0.05"), never, send), 10)
        outside = asyncio.ensure_future(fast(scope(b""), never, send))
        await asyncio.sleep(0.05)
        outside.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await outside
        return outside.cancelled()

    try:
        assert run(main)
    finally:
        client.close()
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [504]
    body = json.loads(sent[1]["body"])
    assert body["code"] == "deadline_exceeded" and "deadline of 0.05 s" in body["error"]


# -- bounded batch queues ----------------------------------------------------------


class Observer:
    def __init__(self) -> None:
        self.queue = 0

    def batch(self, rows: int, queue_waits: object, model_seconds: float) -> None: ...

    def queued(self, change: int) -> None:
        self.queue += change


def test_a_full_queue_sheds_at_once_and_admitted_requests_are_answered(
    executor: ThreadPoolExecutor,
) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    config = BatchingConfig(max_batch_size=1, max_queue=2)
    batcher = Batcher(runtime, config, executor, name="m:1")

    async def main() -> list[object]:
        first = asyncio.ensure_future(batcher.predict(cols([1.0])))
        await asyncio.to_thread(runtime.started.wait, 10)  # the model is taken
        # one request is held for the next batch, two wait in the queue
        admitted = []
        for value in (2.0, 3.0, 4.0):
            admitted.append(asyncio.ensure_future(batcher.predict(cols([value]))))
            await asyncio.sleep(0.01)
        assert batcher.full
        with pytest.raises(Overloaded, match="m:1 has 2 requests waiting already"):
            await batcher.predict(cols([5.0]))
        gate.set()
        results = await asyncio.gather(first, *admitted)
        await batcher.close()
        return [r.outputs["prediction"].tolist() for r in results]

    assert run(main) == [[2.0], [4.0], [6.0], [8.0]]
    assert batcher.stats.shed == 1


def test_a_cancelled_request_leaves_the_queue_at_once_and_is_never_run(
    executor: ThreadPoolExecutor,
) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    observer = Observer()
    batcher = Batcher(
        runtime, BatchingConfig(max_batch_size=1, max_queue=2), executor, on_batch=observer
    )

    async def main() -> None:
        first = asyncio.ensure_future(batcher.predict(cols([1.0])))
        await asyncio.to_thread(runtime.started.wait, 10)
        held = asyncio.ensure_future(batcher.predict(cols([2.0])))  # taken for the next batch
        await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher.predict(cols([v]))) for v in (3.0, 4.0)]
        await asyncio.sleep(0.01)
        assert batcher.full and observer.queue == 3
        for task in (held, *queued):
            task.cancel()
        await asyncio.gather(held, *queued, return_exceptions=True)
        assert not batcher.full
        assert observer.queue == 1  # the held one counts until its batch is dropped
        gate.set()
        await first
        await batcher.close()

    run(main)
    assert runtime.calls == [1]  # none of the cancelled requests reached the model
    assert observer.queue == 0


def test_without_batching_the_bound_counts_calls_in_flight(
    executor: ThreadPoolExecutor,
) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    batcher = Batcher(runtime, BatchingConfig(enabled=False, max_queue=1), executor)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.predict(cols([1.0])))
        await asyncio.to_thread(runtime.started.wait, 10)
        with pytest.raises(Overloaded):
            await batcher.predict(cols([2.0]))
        gate.set()
        await first
        assert (await batcher.predict(cols([3.0]))).outputs["prediction"].tolist() == [6.0]

    run(main)


class SleepingRuntime(EchoRuntime):
    """Waits 20 ms per call (as on a remote service) and records the thread it ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def predict(self, columns: Columns) -> Prediction:
        self.threads.append(threading.get_ident())
        time.sleep(0.02)
        return super().predict(columns)


def test_a_model_that_waits_never_runs_on_the_event_loop(executor: ThreadPoolExecutor) -> None:
    """Its calls cost no CPU, but run inline they would stall every other request."""
    runtime = SleepingRuntime()
    batcher = Batcher(runtime, BatchingConfig(max_batch_size=1), executor)

    async def main() -> int:
        for value in range(6):
            await batcher.predict(cols([float(value)]))
        await batcher.close()
        return threading.get_ident()

    loop_thread = run(main)
    assert len(runtime.threads) == 6 and loop_thread not in runtime.threads


def test_the_default_queue_is_sixteen_batches_and_must_be_positive() -> None:
    assert BatchingConfig(max_batch_size=8).queue_limit == 128
    assert BatchingConfig(max_batch_size=8, max_queue=3).queue_limit == 3
    with pytest.raises(InvalidConfig, match="max_queue must be at least 1"):
        BatchingConfig(max_queue=0)


def test_modelport_yaml_sets_the_queue_and_rows_limits_per_endpoint() -> None:
    options = ServingSpec(max_batch_size=8, max_queue=32, max_rows_per_request=100).options()
    assert (options.max_queue, options.max_rows_per_request) == (32, 100)
    assert options.to_dict()["max_queue"] == 32
    with pytest.raises(ValidationError, match="max_rows_per_request"):
        ServingSpec(max_rows_per_request=0)


# -- per-key rate limits through the app -------------------------------------------


def with_key(app: ASGIApp, keys: dict[str, Key]) -> ASGIApp:
    """Stand-in for authentication: the key named by the x-key header goes in the scope."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"x-key", b"").decode()
            if name in keys:
                scope[KEY_SCOPE] = keys[name]
        await app(scope, receive, send)

    return wrapped


def test_each_key_gets_its_own_rate_and_429_says_when_to_retry(deployed: Client) -> None:
    keys = {"slow": Key("k-slow", rate_limit=0.5), "free": Key("k-free")}
    settings = deployed.settings.model_copy(update={"workers": 1})
    app = with_key(create_app(settings, client=Client(settings)), keys)
    body = {"dataframe_records": [ROW]}
    with TestClient(app) as http:
        slow = [http.post("/v1/endpoints/clf/predict", json=body, headers={"x-key": "slow"})]
        slow.append(http.post("/v1/endpoints/clf/predict", json=body, headers={"x-key": "slow"}))
        free = [
            http.post("/v1/endpoints/clf/predict", json=body, headers={"x-key": "free"})
            for _ in range(5)
        ]
        listing = http.get("/v2/models/clf", headers={"x-key": "slow"})
        made_up = http.post("/v1/endpoints/made-up/predict", json=body, headers={"x-key": "slow"})
        probe = http.get("/v2/health/ready", headers={"x-key": "slow"})
        metrics = http.get("/metrics", headers={"x-key": "slow"}).text
    assert slow[0].status_code == 200
    assert slow[1].status_code == 429 and slow[1].headers["retry-after"] == "2"
    assert slow[1].json() == {
        "error": slow[1].json()["error"],
        "code": "rate_limited",
        "hint": slow[1].json()["hint"],
    }
    error = slow[1].json()["error"]
    assert "API key 'test' (k-slow) is over its rate of 0.5 requests per second" in error
    assert [r.status_code for r in free] == [200] * 5  # no rate of its own, none by default
    assert listing.status_code == 429 and made_up.status_code == 429
    assert probe.status_code == 200
    assert "made-up" not in metrics  # request paths mint no label values
    assert 'endpoint="clf",kind="rate_limited",model="",version=""} 1.0' in metrics
    assert 'endpoint="-",kind="rate_limited",model="",version=""} 1.0' in metrics
    assert "modelport_rate_limited_requests_total 1.0" in metrics

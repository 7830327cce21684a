"""Adaptive batching: concurrent requests to one model version share one model call.

A `Batcher` wraps a runtime and keeps its ``predict`` interface (async). Requests wait
in a queue; a collector task takes as many as fit ``max_batch_size`` rows, concatenates
their columns, runs one ``runtime.predict`` in the executor and hands each caller back
exactly its own rows.

Batching is greedy, like Triton's dynamic batcher with no queue delay: while one batch
runs, the next collects, so batches grow with load by themselves. The model is never
kept idle waiting for company except when the previous batch held several requests
(evidence of concurrent callers); then a batch waits at most ``max_wait_ms`` after its
first request arrived. A lone caller (concurrency 1) is run at once, without waiting.

If a batched call fails, each of its requests is retried alone, so a bad row fails only
its own request, with the same error it would get unbatched.

The queue is bounded: with ``max_queue`` requests already waiting, a new one is refused
at once with `Overloaded` (shed) rather than queued behind work it would wait seconds
for; the time an admitted request waits stays bounded by the queue's length. A caller
that is cancelled while queued (its deadline passed, its client left) leaves the queue
then and there and never reaches the model; one whose batch already runs cannot be
stopped (the model call runs in a thread), its answer is dropped.

    batcher = Batcher(runtime, BatchingConfig(max_batch_size=1024), executor, name="m:1")
    prediction = await batcher.predict(columns)
    await batcher.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from modelport.errors import (
    InvalidConfig,
    ModelportError,
    Overloaded,
    PredictionFailed,
    Unavailable,
)
from modelport.registry.entities import MAX_BATCH_SIZE
from modelport.runtimes.base import Prediction, Runtime
from modelport.signature import Columns, Table

log = logging.getLogger(__name__)

#: Model calls that recently took less than this run inline on the event loop: a thread
#: hop costs more than it frees while each core already runs a worker (the default).
#: 2 ms keeps a full batch of 64-row requests to the 100-tree demo model (about 0.9 ms)
#: on the loop: 6-10% more 64-row throughput than 0.5 ms at c=8 and c=64, p99 no higher.
INLINE_BELOW_SECONDS = 0.002
#: ... and less than this in wall time: a model that waits (on I/O, a remote service,
#: a sleep) costs little CPU but would stall the loop, health probes and shedding with it.
INLINE_WALL_BELOW_SECONDS = 0.005

#: The queue wait of a request that was never queued.
_NO_WAIT = (0.0,)

#: Requests that may wait per row of ``max_batch_size`` when ``max_queue`` is not set:
#: sixteen full batches of single rows. A burst that many clients send at once is
#: queued, not shed, while under sustained overload an admitted request waits for at
#: most about sixteen model calls (bench/overload_bench.py measures the trade).
QUEUE_BATCHES = 16


class BatchObserver(Protocol):
    """What a batcher reports, for metrics (`ServingMetrics.batch_observer` makes one)."""

    def batch(self, rows: int, queue_waits: Sequence[float], model_seconds: float) -> None:
        """A model call ended (returned or raised): its rows, the queue wait of each request
        it served for the first time, and its seconds (concat, ``runtime.predict``, split).
        Called from the thread that ran the model."""

    def queued(self, change: int) -> None:
        """``change`` requests joined (positive) or left (negative) the queue; on the loop."""


@dataclass(frozen=True)
class BatchingConfig:
    """How requests are coalesced.

    ``max_batch_size`` caps the rows of one model call (a single larger request runs
    alone, never split); ``max_wait_ms`` caps how long a batch's first request may wait
    for company; ``max_queue`` caps the requests waiting (or, unbatched, waiting and
    running), default ``QUEUE_BATCHES`` (16) x ``max_batch_size``.
    """

    max_batch_size: int = MAX_BATCH_SIZE
    max_wait_ms: float = 0.0
    enabled: bool = True
    max_queue: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InvalidConfig(
                f"max_batch_size must be at least 1, got {self.max_batch_size}",
                hint="use 1 to run every request alone, or set enabled to false",
            )
        if self.max_wait_ms < 0:
            raise InvalidConfig(f"max_wait_ms must not be negative, got {self.max_wait_ms}")
        if self.max_queue is not None and self.max_queue < 1:
            raise InvalidConfig(
                f"max_queue must be at least 1, got {self.max_queue}",
                hint="leave it out for the default of 16 x max_batch_size",
            )

    @property
    def queue_limit(self) -> int:
        """Most requests that may wait: ``max_queue``, else its default."""
        return self.max_queue or QUEUE_BATCHES * self.max_batch_size


@dataclass
class BatchStats:
    """Running totals of one batcher, for metrics.

    ``size_histogram`` maps a power of two ``b`` to the number of model calls with
    ``b/2 < rows <= b`` (``1`` counts calls of one row or none), so it stays small.
    """

    batches: int = 0
    rows: int = 0
    requests: int = 0
    last_batch_size: int = 0
    queue_wait_seconds_total: float = 0.0
    fallbacks: int = 0
    #: requests refused because the queue was full
    shed: int = 0
    size_histogram: dict[int, int] = field(default_factory=dict)

    def record(self, rows: int, requests: int, queue_wait: float) -> None:
        self.batches += 1
        self.rows += rows
        self.requests += requests
        self.last_batch_size = rows
        self.queue_wait_seconds_total += queue_wait
        bucket = 1 << max(rows - 1, 0).bit_length()
        self.size_histogram[bucket] = self.size_histogram.get(bucket, 0) + 1


@dataclass
class _Request:
    columns: Columns
    rows: int
    future: asyncio.Future[Prediction]
    enqueued_at: float


class _SizeMismatch(Exception):
    """The model's outputs do not have one row per input row of the batch."""


class Batcher:
    """Wraps a runtime; same predict interface, async. One model call at a time."""

    def __init__(
        self,
        runtime: Runtime,
        config: BatchingConfig,
        executor: Executor,
        *,
        name: str = "",
        on_batch: BatchObserver | None = None,
        single_threaded: bool = True,
    ) -> None:
        #: told of each model call and of requests joining and leaving the queue (metrics)
        self.observer = on_batch
        self.runtime = runtime
        self.config = config
        self.name = name
        self._executor = executor
        self._stats = BatchStats()
        self._pending: deque[_Request] = deque()
        self._queue_limit = config.queue_limit
        self._alone = 0  # unbatched calls waiting or running
        self._wakeup = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._last_requests = 0
        self._closed = False
        # Recent model-call CPU time (moving average); calls this short run on the event
        # loop itself, since handing them to a thread costs more than the call.
        self._model_seconds = float("inf")
        self._wall_seconds = float("inf")
        self._calls = 0
        # A runtime on one thread is judged by that thread's CPU time, one with a pool
        # of its own by the wall time (its calling thread mostly waits).
        self._single_threaded = single_threaded

    @property
    def stats(self) -> BatchStats:
        """A snapshot of the running totals."""
        return replace(self._stats, size_histogram=dict(self._stats.size_histogram))

    @property
    def full(self) -> bool:
        """Whether a request arriving now would be shed."""
        return len(self._pending) >= self._queue_limit or self._alone >= self._queue_limit

    def overloaded(self) -> Overloaded:
        """The error a shed request gets."""
        return Overloaded(
            f"{self.name or 'the model'} has {self._queue_limit} requests waiting already "
            "(its queue is full on this worker)",
            hint="retry after a moment; for more capacity add workers or replicas, or raise "
            "serving.max_queue (longer waits) or serving.max_batch_size",
        )

    async def predict(self, columns: Columns) -> Prediction:
        """Predict ``columns``, batched with other callers'; returns only these rows.

        Raises `Overloaded` at once when the queue is full."""
        if self._closed:
            raise Unavailable(f"the batcher for {self.name or 'this model'} is closed")
        if self.full:
            self._stats.shed += 1
            raise self.overloaded()
        if not self.config.enabled or not columns:
            self._stats.record(_rows(columns), 1, 0.0)
            self._alone += 1
            try:
                return await self._call_alone(columns, _NO_WAIT)
            finally:
                self._alone -= 1
        rows = _rows(columns)
        if rows >= self.config.max_batch_size and self._idle_and_cheap():
            return self._call_now(columns, rows)
        loop = asyncio.get_running_loop()
        if self._collector is None or self._collector.done():
            self._collector = loop.create_task(self._collect())
        request = _Request(columns, _rows(columns), loop.create_future(), loop.time())
        self._pending.append(request)
        if self.observer is not None:
            self.observer.queued(1)
        self._wakeup.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._forget(request)
            raise

    def _forget(self, request: _Request) -> None:
        """Take a cancelled caller's request out of the queue, if it is still there (a
        deque's remove is linear, and the queue is at most ``max_queue`` long)."""
        request.future.cancel()
        try:
            self._pending.remove(request)
        except ValueError:
            return  # taken into a batch already: the batch skips or drops it
        self._left_queue(1)

    def _idle_and_cheap(self) -> bool:
        """Nothing queued or running, and model calls short enough for the event loop."""
        running = self._running is not None and not self._running.done()
        return not self._pending and not running and self._inline

    def _call_now(self, columns: Columns, rows: int) -> Prediction:
        """A request that fills a batch by itself: no company to wait for, no queue."""
        self._stats.record(rows, 1, 0.0)
        try:
            return self._call_batch([columns], rows, _NO_WAIT)[0]
        except Exception as exc:
            raise self._failure(exc) from exc

    async def close(self) -> None:
        """Answer every queued request, then stop the collector."""
        self._closed = True
        self._wakeup.set()
        if self._collector is not None:
            await asyncio.shield(self._collector)

    # -- collecting ----------------------------------------------------------

    async def _collect(self) -> None:
        try:
            while batch := await self._next_batch():
                self._last_requests = len(batch)
                self._running = asyncio.get_running_loop().create_task(self._run(batch))
            if self._running is not None:
                await self._running
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("the batcher for %s stopped", self.name or "a model")
        finally:
            self._fail_pending()

    async def _next_batch(self) -> list[_Request]:
        """Requests for the next model call; empty once closed and drained."""
        batch: list[_Request] = []
        rows = 0
        yielded = False
        while True:
            taken = len(batch)
            rows = self._take(batch, rows)
            yielded = yielded and len(batch) == taken
            busy = self._running is not None and not self._running.done()
            if not batch and self._closed:
                return batch
            if not batch or busy:
                await self._wait(None)  # nothing to run yet, or the model is taken anyway
            elif self._closed or self._pending or rows >= self.config.max_batch_size:
                return batch  # full (the next request does not fit), or draining
            elif not yielded:
                yielded = True
                await asyncio.sleep(0)  # callers made ready in this same tick join now
            else:
                deadline = batch[0].enqueued_at + self.config.max_wait_ms / 1000
                if self._last_requests <= 1 or asyncio.get_running_loop().time() >= deadline:
                    return batch
                await self._wait(deadline)

    def _take(self, batch: list[_Request], rows: int) -> int:
        """Move queued requests that fit into ``batch``; skip the cancelled ones."""
        while self._pending:
            head = self._pending[0]
            if head.future.done():
                self._pending.popleft()
                self._left_queue(1)
                continue
            if batch and rows + head.rows > self.config.max_batch_size:
                break
            batch.append(self._pending.popleft())
            rows += head.rows
        return rows

    async def _wait(self, deadline: float | None) -> None:
        """Sleep until a request arrives, a batch finishes, close() or ``deadline``."""
        self._wakeup.clear()
        if deadline is None:
            await self._wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._wakeup.wait()

    def _fail_pending(self) -> None:
        error = Unavailable(f"the batcher for {self.name or 'this model'} stopped")
        self._left_queue(len(self._pending))
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(error)

    def _left_queue(self, requests: int) -> None:
        if self.observer is not None and requests:
            self.observer.queued(-requests)

    # -- running -------------------------------------------------------------

    async def _run(self, batch: list[_Request]) -> None:
        self._left_queue(len(batch))
        live = [r for r in batch if not r.future.done()]
        try:
            if live:
                await self._run_live(live)
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("a batch for %s failed unexpectedly", self.name or "a model")
        finally:
            for request in live:  # reached only on a bug or when the loop shuts down
                _settle(request.future, error=Unavailable("the batch was abandoned"))
            self._wakeup.set()

    async def _run_live(self, live: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        waits = [now - r.enqueued_at for r in live]
        rows = sum(r.rows for r in live)
        self._stats.record(rows, len(live), sum(waits))
        parts = [r.columns for r in live]
        try:
            if self._inline:
                predictions = self._call_batch(parts, rows, waits)  # cheaper than a thread hop
            else:
                predictions = await loop.run_in_executor(
                    self._executor, self._call_batch, parts, rows, waits
                )
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0].future, error=self._failure(exc))
                return
            self._stats.fallbacks += 1
            log.debug("batch of %d for %s failed; retrying one by one", len(live), self.name)
            await self._run_one_by_one(live)
            return
        for request, prediction in zip(live, predictions, strict=True):
            _settle(request.future, prediction)

    async def _run_one_by_one(self, live: list[_Request]) -> None:
        for request in live:
            if request.future.done():
                continue
            try:
                prediction = await self._call_alone(request.columns, ())  # wait already told
            except ModelportError as exc:
                _settle(request.future, error=exc)
            else:
                _settle(request.future, prediction)

    def _call_batch(
        self, parts: list[Columns], rows: int, waits: Sequence[float]
    ) -> list[Prediction]:
        """One model call for several requests: concat, predict, split; timed and told."""
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            if len(parts) == 1:
                return [self.runtime.predict(parts[0])]
            return split(self.runtime.predict(concat(parts)), [_rows(p) for p in parts])
        finally:
            self._called(rows, waits, time.perf_counter() - started, time.thread_time() - cpu)

    def _called(self, rows: int, waits: Sequence[float], seconds: float, cpu: float) -> None:
        # Where the next call runs is judged on this thread's CPU time: the wall time of
        # a call in the executor includes its waits for the GIL while the event loop
        # runs, which would keep cheap models off the loop once they were sent there.
        cost = cpu if self._single_threaded else seconds
        if self._calls:
            self._model_seconds += (cost - self._model_seconds) * 0.2
            self._wall_seconds += (seconds - self._wall_seconds) * 0.2
        else:
            self._model_seconds, self._wall_seconds = cost, seconds
        self._calls += 1
        if self.observer is not None:
            self.observer.batch(rows, waits, seconds)

    async def _call_alone(self, columns: Columns, waits: Sequence[float]) -> Prediction:
        """One request's own model call, in the executor (``waits``: its queue wait, if
        not told already)."""
        loop = asyncio.get_running_loop()
        try:
            parts = await loop.run_in_executor(
                self._executor, self._call_batch, [columns], _rows(columns), waits
            )
        except ModelportError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        return parts[0]

    @property
    def _inline(self) -> bool:
        """Whether model calls are short enough, in CPU and wall time, for the loop."""
        return (
            self._model_seconds < INLINE_BELOW_SECONDS
            and self._wall_seconds < INLINE_WALL_BELOW_SECONDS
        )

    def _failure(self, exc: Exception) -> ModelportError:
        """A ModelportError as it is; anything else as PredictionFailed with its message."""
        if isinstance(exc, ModelportError):
            return exc
        error = PredictionFailed(f"{self.name or 'model'} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def concat(parts: list[Columns]) -> Columns:
    """Several requests' columns as one batch (numeric blocks stay one block)."""
    if all(isinstance(p, Table) for p in parts):
        return Table(list(parts[0]), np.concatenate([p.matrix for p in parts]))  # type: ignore[attr-defined]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split(prediction: Prediction, sizes: list[int]) -> list[Prediction]:
    """Cut a batch's prediction back into one per request, along the first axis."""
    total = sum(sizes)
    for name, values in prediction.outputs.items():
        if np.ndim(values) == 0 or len(values) != total:
            raise _SizeMismatch(f"output {name!r} has {np.shape(values)} for {total} rows")
    bounds = np.cumsum([0, *sizes]).tolist()
    return [
        Prediction(
            outputs={name: values[start:stop] for name, values in prediction.outputs.items()},
            classes=list(prediction.classes) if prediction.classes is not None else None,
            task=prediction.task,
        )
        for start, stop in itertools.pairwise(bounds)
    ]


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _settle(
    future: asyncio.Future[Prediction],
    prediction: Prediction | None = None,
    *,
    error: BaseException | None = None,
) -> None:
    """Resolve a caller's future unless the caller has gone (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif prediction is not None:
        future.set_result(prediction)

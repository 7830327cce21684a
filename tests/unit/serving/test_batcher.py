"""Adaptive batching: callers share model calls and each gets exactly its own rows back."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, TypeVar

import numpy as np
import pytest

from modelport.errors import InvalidConfig, PredictionFailed, SignatureMismatch, Unavailable
from modelport.runtimes.base import LoadContext, Prediction, classification
from modelport.serving.batcher import Batcher, BatchingConfig
from modelport.signature import Columns

T = TypeVar("T")
POISON = -1.0


class EchoRuntime:
    """Returns each row's ``x`` doubled and ``y`` as is; records every call's batch size.

    ``gate``, when given, holds the first call until the test sets it, so a test can
    queue requests while a batch runs. Rows with ``x == POISON`` make the call raise.
    """

    flavor: ClassVar[str] = "echo"

    def __init__(
        self, gate: threading.Event | None = None, error: type[Exception] = ValueError
    ) -> None:
        self.calls: list[int] = []
        self.gate = gate
        self.error = error
        self.started = threading.Event()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def load(self, ctx: LoadContext) -> None: ...

    def unload(self) -> None: ...

    def predict(self, columns: Columns) -> Prediction:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append(len(columns["x"]))
        try:
            self.started.set()
            if self.gate is not None and len(self.calls) == 1:
                assert self.gate.wait(30), "the test never opened the gate"
            if (columns["x"] == POISON).any():
                raise self.error("poison row")
            return Prediction(
                outputs={"prediction": columns["x"] * 2.0, "y": columns["y"].copy()},
                task="regression",
            )
        finally:
            with self._lock:
                self.active -= 1


class ClassifierRuntime(EchoRuntime):
    """Three classes; each row's probabilities are derived from its ``x``."""

    def predict(self, columns: Columns) -> Prediction:
        self.calls.append(len(columns["x"]))
        x = columns["x"]
        probs = np.stack([x, x + 1, x + 2], axis=1)
        return classification(probs / probs.sum(axis=1, keepdims=True), ["a", "b", "c"])


def cols(values: list[float]) -> Columns:
    x = np.asarray(values, dtype=np.float64)
    return {"x": x, "y": np.asarray([f"r{v:g}" for v in values], dtype=object)}


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 60)  # a hang fails instead of blocking CI

    return asyncio.run(bounded())


def assert_own_rows(prediction: Prediction, values: list[float]) -> None:
    assert prediction.outputs["prediction"].tolist() == [v * 2 for v in values]
    assert prediction.outputs["y"].tolist() == [f"r{v:g}" for v in values]
    assert prediction.task == "regression"


async def wait_started(runtime: EchoRuntime) -> None:
    assert await asyncio.to_thread(runtime.started.wait, 30)


def test_many_concurrent_callers_get_their_own_rows(executor: ThreadPoolExecutor) -> None:
    rng = random.Random(7)
    inputs = [[float(i * 10 + j) for j in range(rng.randint(1, 5))] for i in range(200)]
    runtime = EchoRuntime()
    batcher = Batcher(runtime, BatchingConfig(max_batch_size=16), executor, name="m:1")

    async def main() -> list[Prediction]:
        results = await asyncio.gather(*(batcher.predict(cols(v)) for v in inputs))
        await batcher.close()
        return results

    results = run(main)
    for prediction, values in zip(results, inputs, strict=True):
        assert_own_rows(prediction, values)
    assert len(runtime.calls) < len(inputs)
    assert max(runtime.calls) <= 16
    assert sum(runtime.calls) == sum(len(v) for v in inputs)
    assert runtime.max_active == 1
    stats = batcher.stats
    assert (stats.batches, stats.requests) == (len(runtime.calls), 200)
    assert stats.rows == sum(runtime.calls)
    assert sum(stats.size_histogram.values()) == stats.batches
    assert max(stats.size_histogram) <= 16


def test_requests_queue_while_a_batch_runs(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    batcher = Batcher(runtime, BatchingConfig(max_batch_size=64), executor)

    async def main() -> list[Prediction]:
        first = asyncio.create_task(batcher.predict(cols([0.0])))
        await wait_started(runtime)
        rest = [asyncio.create_task(batcher.predict(cols([float(i)]))) for i in range(1, 6)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(first, *rest)

    results = run(main)
    assert runtime.calls == [1, 5]
    for i, prediction in enumerate(results):
        assert_own_rows(prediction, [float(i)])


def test_a_request_larger_than_the_batch_runs_alone(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    batcher = Batcher(runtime, BatchingConfig(max_batch_size=4), executor)
    big = [float(v) for v in range(100, 110)]

    async def main() -> list[Prediction]:
        first = asyncio.create_task(batcher.predict(cols([0.0])))
        await wait_started(runtime)
        tasks = [asyncio.create_task(batcher.predict(cols(v))) for v in ([1.0], big, [2.0, 3.0])]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(first, *tasks)

    results = run(main)
    assert runtime.calls == [1, 1, 10, 2]
    assert_own_rows(results[2], big)
    assert_own_rows(results[3], [2.0, 3.0])


def test_a_lone_caller_does_not_wait_for_company(executor: ThreadPoolExecutor) -> None:
    runtime = EchoRuntime()
    # With a one-minute window, any waiting for company would trip run()'s timeout.
    batcher = Batcher(runtime, BatchingConfig(max_wait_ms=60_000), executor)

    async def main() -> None:
        for i in range(10):
            assert_own_rows(await batcher.predict(cols([float(i)])), [float(i)])

    run(main)
    assert runtime.calls == [1] * 10
    stats = batcher.stats
    assert (stats.batches, stats.requests, stats.last_batch_size) == (10, 10, 1)
    assert stats.size_histogram == {1: 10}
    assert stats.queue_wait_seconds_total < 30


def test_a_lone_caller_after_a_burst_waits_at_most_the_window(
    executor: ThreadPoolExecutor,
) -> None:
    runtime = EchoRuntime()
    batcher = Batcher(runtime, BatchingConfig(max_wait_ms=1), executor)

    async def main() -> Prediction:
        await asyncio.gather(*(batcher.predict(cols([float(i)])) for i in range(5)))
        return await batcher.predict(cols([9.0]))

    assert_own_rows(run(main), [9.0])
    assert runtime.calls == [5, 1]


def test_a_poison_row_fails_only_its_own_request(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    batcher = Batcher(runtime, BatchingConfig(), executor, name="models:m/1")
    inputs = [[float(i), POISON] if i % 4 == 0 else [float(i)] for i in range(1, 13)]

    async def main() -> list[Prediction | BaseException]:
        first = asyncio.create_task(batcher.predict(cols([0.0])))
        await wait_started(runtime)
        tasks = [asyncio.create_task(batcher.predict(cols(v))) for v in inputs]
        await asyncio.sleep(0)
        gate.set()
        await first
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main)
    assert runtime.calls[:2] == [1, sum(len(v) for v in inputs)]
    assert len(runtime.calls) == 2 + len(inputs)  # the failed batch, retried one by one
    for result, values in zip(results, inputs, strict=True):
        if POISON in values:
            assert isinstance(result, PredictionFailed)
            assert str(result) == "models:m/1 raised ValueError: poison row"
        else:
            assert isinstance(result, Prediction)
            assert_own_rows(result, values)
    assert batcher.stats.fallbacks == 1


def test_a_modelport_error_passes_through_unchanged(executor: ThreadPoolExecutor) -> None:
    runtime = EchoRuntime(error=SignatureMismatch)
    batcher = Batcher(runtime, BatchingConfig(), executor)

    async def main() -> list[Prediction | BaseException]:
        calls = [batcher.predict(cols(v)) for v in ([1.0], [POISON], [2.0])]
        return await asyncio.gather(*calls, return_exceptions=True)

    ok, bad, ok2 = run(main)
    assert type(bad) is SignatureMismatch
    assert str(bad) == "poison row"
    assert isinstance(ok, Prediction) and isinstance(ok2, Prediction)
    assert_own_rows(ok2, [2.0])


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (ValueError, PredictionFailed, "m:1 raised ValueError: poison row"),
        (SignatureMismatch, SignatureMismatch, "poison row"),
    ],
)
def test_a_lone_failing_request_is_not_retried(
    executor: ThreadPoolExecutor, error: type[Exception], expected: type[Exception], message: str
) -> None:
    runtime = EchoRuntime(error=error)
    batcher = Batcher(runtime, BatchingConfig(), executor, name="m:1")

    async def main() -> None:
        with pytest.raises(expected) as caught:
            await batcher.predict(cols([POISON]))
        assert type(caught.value) is expected
        assert str(caught.value) == message
        assert_own_rows(await batcher.predict(cols([1.0])), [1.0])

    run(main)
    assert runtime.calls == [1, 1]
    assert batcher.stats.fallbacks == 0


def test_a_wrong_output_length_is_retried_one_by_one(executor: ThreadPoolExecutor) -> None:
    class Truncating(EchoRuntime):
        def predict(self, columns: Columns) -> Prediction:
            prediction = super().predict(columns)
            if len(self.calls) == 1:
                prediction.outputs["y"] = prediction.outputs["y"][:-1]
            return prediction

    runtime = Truncating()
    batcher = Batcher(runtime, BatchingConfig(), executor)

    async def main() -> list[Prediction]:
        return await asyncio.gather(*(batcher.predict(cols([float(i)])) for i in range(3)))

    for i, prediction in enumerate(run(main)):
        assert_own_rows(prediction, [float(i)])
    assert runtime.calls == [3, 1, 1, 1]


def test_cancelled_callers_do_not_break_the_batch(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    batcher = Batcher(runtime, BatchingConfig(), executor)

    async def main() -> list[asyncio.Task[Prediction]]:
        first = asyncio.create_task(batcher.predict(cols([0.0])))
        await wait_started(runtime)
        tasks = [asyncio.create_task(batcher.predict(cols([float(i)]))) for i in range(1, 9)]
        await asyncio.sleep(0)
        for i in (1, 4, 7):  # queued behind the running batch: their rows are never sent
            tasks[i].cancel()
        first.cancel()  # its batch is already running: the result is dropped
        gate.set()
        await asyncio.gather(first, *tasks, return_exceptions=True)
        return tasks

    tasks = run(main)
    assert runtime.calls == [1, 5]
    for i, task in enumerate(tasks, start=1):
        if i in (2, 5, 8):
            assert task.cancelled()
        else:
            assert_own_rows(task.result(), [float(i)])


def test_close_drains_queued_requests(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    runtime = EchoRuntime(gate)
    batcher = Batcher(runtime, BatchingConfig(max_batch_size=2), executor)

    async def main() -> list[asyncio.Task[Prediction]]:
        tasks = [asyncio.create_task(batcher.predict(cols([0.0])))]
        await wait_started(runtime)
        tasks += [asyncio.create_task(batcher.predict(cols([float(i)]))) for i in range(1, 6)]
        await asyncio.sleep(0)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)
        gate.set()
        await closing
        assert all(task.done() for task in tasks)
        with pytest.raises(Unavailable):
            await batcher.predict(cols([9.0]))
        return tasks

    for i, task in enumerate(run(main)):
        assert_own_rows(task.result(), [float(i)])
    assert runtime.calls == [1, 2, 2, 1]


def test_disabled_runs_each_request_alone(executor: ThreadPoolExecutor) -> None:
    runtime = EchoRuntime()
    batcher = Batcher(runtime, BatchingConfig(enabled=False), executor, name="m:2")
    inputs = [[1.0, 2.0], [POISON], [3.0]]

    async def main() -> list[Prediction | BaseException]:
        results = await asyncio.gather(
            *(batcher.predict(cols(v)) for v in inputs), return_exceptions=True
        )
        await batcher.close()
        return results

    first, bad, last = run(main)
    assert sorted(runtime.calls) == [1, 1, 2]
    assert isinstance(first, Prediction) and isinstance(last, Prediction)
    assert_own_rows(first, [1.0, 2.0])
    assert_own_rows(last, [3.0])
    assert isinstance(bad, PredictionFailed)
    assert str(bad) == "m:2 raised ValueError: poison row"
    assert batcher.stats.batches == 3


def test_classifier_probabilities_split_by_row(executor: ThreadPoolExecutor) -> None:
    runtime = ClassifierRuntime()
    batcher = Batcher(runtime, BatchingConfig(), executor)
    inputs = [[1.0], [2.0, 3.0], [4.0, 5.0, 6.0]]

    async def main() -> list[Prediction]:
        return await asyncio.gather(*(batcher.predict(cols(v)) for v in inputs))

    results = run(main)
    assert runtime.calls == [6]
    for prediction, values in zip(results, inputs, strict=True):
        alone = runtime.predict(cols(values))
        assert prediction.task == "classification"
        assert prediction.classes == ["a", "b", "c"]
        assert prediction.outputs["probabilities"].shape == (len(values), 3)
        np.testing.assert_allclose(
            prediction.outputs["probabilities"], alone.outputs["probabilities"]
        )
        assert prediction.outputs["label"].tolist() == alone.outputs["label"].tolist()
    assert results[0].classes is not results[1].classes


@pytest.mark.parametrize("config", [{"max_batch_size": 0}, {"max_wait_ms": -1.0}])
def test_config_rejects_nonsense(config: dict[str, float]) -> None:
    with pytest.raises(InvalidConfig):
        BatchingConfig(**config)  # type: ignore[arg-type]


def test_a_full_request_on_an_idle_cheap_model_skips_the_queue(
    executor: ThreadPoolExecutor,
) -> None:
    runtime = EchoRuntime()
    batcher = Batcher(runtime, BatchingConfig(max_batch_size=4), executor)
    full = [float(v) for v in range(10, 14)]

    async def main() -> tuple[Prediction, Prediction, Prediction]:
        first = await batcher.predict(cols([1.0]))  # measured: the echo model is cheap
        direct = await batcher.predict(cols(full))
        bad = cols([POISON] * 4)
        try:
            await batcher.predict(bad)
        except PredictionFailed as exc:
            assert "poison row" in str(exc)
        else:
            raise AssertionError("a poison request must fail")
        return first, direct, await batcher.predict(cols([2.0]))

    first, direct, after = run(main)
    assert runtime.calls == [1, 4, 4, 1]
    assert_own_rows(direct, full)
    assert_own_rows(after, [2.0])
    assert batcher._collector is not None  # the queue still serves small requests
    assert batcher.stats.requests == 4

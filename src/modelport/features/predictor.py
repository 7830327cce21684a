"""The stream predictor: an endpoint fed by an input stream, answering on an output one.

`StreamPredictor` reads a batch of input messages (a consumer group of an
`EventSource`) and, per batch:

1. applies it to every stream view of the endpoint's deployment that reads the input
   stream (parsed by `modelport.features.processor.parse_event`, one ``store.apply``
   per view), so each event's own activity counts in its features. The aggregates end
   exactly as ``modelport stream run`` would leave them (the store applies an event id
   once), so both may run on one stream;
2. predicts the whole batch as one multi-row request through the data plane
   (`DataPlane.predict`: enrichment joins batch and streaming features, the prediction
   log records it). When that request fails, each event is predicted alone, so one bad
   event fails alone; an event a view cannot parse (no entity key, a bad timestamp)
   fails without reaching the model;
3. publishes one output message per input message, in order, in one pipeline (XADD):
   the input ``event_id`` (its message id), ``endpoint``, ``model``, ``version``,
   ``variant``, ``prediction_id``, ``prediction`` and ``outputs``, or, for a failed
   event, ``error`` and ``code``;
4. acknowledges the input batch only then.

Delivery is at least once: a crash between 3 and 4 re-reads the batch and publishes its
outputs again, so a consumer of the output dedupes by ``event_id``. When the model or
the store is unavailable (every event of a batch fails with `Unavailable`) nothing is
published or acknowledged: the batch is retried with a growing pause while the input
backs up, which the ``lag`` (entries not yet delivered to the group) shows.

Features are read after the batch is applied: an event sees every event of its batch,
including later ones of its entity (``batch_size=1`` gives strict per-event order).

Example::

    source = RedisStreamSource(url, "tx", "modelport.predict.fraud", "host-1")
    predictor = StreamPredictor(plane, "fraud", source, output_url=url,
                                output_stream="fraud-scores", store=store)
    await predictor.run()               # until stop(); run(once=True): until drained
    predictor.stats()                   # {"processed": 5000, "predicted": 4998, ...}
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, ModelportError, Unavailable
from modelport.features.online import Event, OnlineStore
from modelport.features.processor import Malformed, parse_event
from modelport.features.streams import EventSource, Message, connect, encode
from modelport.features.views import FeatureView, StreamSource
from modelport.runtimes.base import Prediction

if TYPE_CHECKING:
    from modelport.serving.dataplane import DataPlane, PredictResult

log = logging.getLogger(__name__)

#: Pauses between retries of a batch while the model or the store is unavailable.
FIRST_RETRY_S, LAST_RETRY_S = 0.5, 10.0


@dataclass
class PredictorStats:
    """What a predictor has done since it started."""

    processed: int = 0  # input messages answered and acknowledged
    predicted: int = 0  # events answered with a prediction
    failed: int = 0  # events answered with an error
    batches: int = 0
    retries: int = 0  # batch attempts put off while the model or store was unavailable
    lag: int | None = None  # input entries not yet delivered to the group (last measured)
    pending: int | None = None  # delivered, not yet acknowledged (last measured)
    last_batch_s: float = 0.0  # read to ack, the last batch
    mean_batch_s: float = 0.0
    max_batch_s: float = 0.0
    seconds: float = 0.0  # time spent running


class _Outage(Exception):
    """Every event of a batch failed with `Unavailable`: retry the batch, answer none."""


class StreamPredictor:
    """Predicts with ``endpoint`` of ``plane`` for each event of ``source``; answers on
    ``output_stream`` at ``output_url``.

    ``views_to_update`` are the stream views fed from the input (None: every stream view
    of the endpoint's deployment whose source is the input stream, looked up per batch
    so a redeploy is followed); ``store`` is where they are applied (None: the plane's
    feature store).
    """

    def __init__(
        self,
        plane: DataPlane,
        endpoint: str,
        source: EventSource,
        *,
        output_url: str,
        output_stream: str,
        store: OnlineStore | None = None,
        views_to_update: Sequence[FeatureView] | None = None,
        batch_size: int = 200,
        block_ms: int = 1000,
        lag_every_s: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise InvalidInput(f"the batch size must be at least 1, not {batch_size}")
        if output_stream == source.stream:
            raise InvalidInput(
                f"the output stream {output_stream!r} is the input stream",
                hint="answer on another stream: predictions would be read back as events",
            )
        plane.endpoint(endpoint)  # NotFound now rather than on the first event
        self.plane, self.endpoint, self.source = plane, endpoint, source
        self.output_stream, self.store = output_stream, store
        self.views_to_update = tuple(views_to_update) if views_to_update is not None else None
        self.batch_size, self.block_ms, self.lag_every_s = batch_size, block_ms, lag_every_s
        self._output = connect(output_url)
        self._stats = PredictorStats()
        self._stopping = threading.Event()
        self._measured = 0.0

    # -- the loop --------------------------------------------------------------

    async def run(self, *, once: bool = False) -> PredictorStats:
        """Answer batches until `stop` (or, with ``once``, until the input is drained).
        On `stop` the current batch is finished and acknowledged first."""
        started = time.monotonic()
        try:
            while not self._stopping.is_set():
                handled = await self.step(None if once else self.block_ms)
                if time.monotonic() - self._measured >= self.lag_every_s:
                    await self.measure()
                if once and handled == 0:
                    break
        finally:
            self._stats.seconds += time.monotonic() - started
        await self.measure()
        return self.stats()

    async def step(self, block_ms: int | None = None) -> int:
        """Read, answer and acknowledge one batch; the messages it held (0: none came
        within ``block_ms``, or a stop interrupted a retry and left the batch pending)."""
        messages = await asyncio.to_thread(self.source.read, self.batch_size, block_ms)
        if not messages:
            return 0
        started = time.perf_counter()
        pause = FIRST_RETRY_S
        while True:
            try:
                outputs = await self._answer(messages)
                break
            except _Outage as exc:
                self._stats.retries += 1
                log.warning(
                    "endpoint %s: %s; retrying the batch in %.1fs", self.endpoint, exc, pause
                )
                if await asyncio.to_thread(self._stopping.wait, pause):
                    return 0  # stopped: unacknowledged, the batch is re-read on restart
                pause = min(pause * 2, LAST_RETRY_S)
        await asyncio.to_thread(self._publish, outputs)
        await asyncio.to_thread(self.source.ack, [m.id for m in messages])
        self._count(messages, outputs, time.perf_counter() - started)
        return len(messages)

    def stop(self) -> None:
        """Stop after the current batch."""
        self._stopping.set()

    async def measure(self) -> None:
        """Refresh the lag and pending counts from the source."""
        backlog = await asyncio.to_thread(self.source.backlog)
        self._stats.lag, self._stats.pending = backlog.lag, backlog.pending
        self._measured = time.monotonic()

    def stats(self) -> PredictorStats:
        return PredictorStats(**asdict(self._stats))

    def close(self) -> None:
        """Close the output stream's connection (the source is the caller's)."""
        self._output.close()

    # -- one batch -------------------------------------------------------------

    async def _answer(self, messages: list[Message]) -> list[dict[str, Any]]:
        """One output per message, in order; the batch applied to the stream views."""
        views = self._views()
        failures: dict[int, ModelportError] = {}
        per_view: list[tuple[FeatureView, list[Event]]] = []
        for view in views:
            events = []
            for i, message in enumerate(messages):
                try:
                    events.append(parse_event(view, message))
                except Malformed as exc:
                    if i not in failures:
                        failures[i] = InvalidInput(f"view {view.name}: {exc}")
                        log.warning("event %s of %s: %s", message.id, self.source.stream, exc)
            per_view.append((view, events))
        if any(events for _, events in per_view):
            try:
                await asyncio.to_thread(self._apply, per_view)
            except Unavailable as exc:  # the store is away: the batch waits for it
                raise _Outage(str(exc)) from exc
        good = [i for i in range(len(messages)) if i not in failures]
        answers: dict[int, PredictResult | ModelportError] = dict(failures)
        answers |= await self._predict(messages, good)
        for failure in failures.values():  # once the batch is answered: not on every retry
            self.plane.log_failure(self.endpoint, failure)
        return [self._output_of(messages[i], answers[i]) for i in range(len(messages))]

    async def _predict(
        self, messages: list[Message], rows: list[int]
    ) -> dict[int, PredictResult | ModelportError]:
        """Each of ``rows``' answer: one request for them all, else one request each."""
        if not rows:
            return {}
        try:
            result = await self.plane.predict(self.endpoint, _columns([messages[i] for i in rows]))
            return {i: _row(result, n) for n, i in enumerate(rows)}
        except ModelportError as exc:
            log.info(
                "endpoint %s: the batch failed (%s); one request per event", self.endpoint, exc
            )
        alone = await asyncio.gather(*(self._predict_one(messages[i]) for i in rows))
        if all(isinstance(a, Unavailable) for a in alone):
            raise _Outage(str(alone[0]))
        return dict(zip(rows, alone, strict=True))

    async def _predict_one(self, message: Message) -> PredictResult | ModelportError:
        try:
            return await self.plane.predict(self.endpoint, _columns([message]))
        except ModelportError as exc:
            return exc

    def _views(self) -> tuple[FeatureView, ...]:
        if self.views_to_update is not None:
            return self.views_to_update
        return tuple(
            view
            for view in self.plane.endpoint(self.endpoint).views
            if isinstance(view.source, StreamSource) and view.source.stream == self.source.stream
        )

    def _apply(self, per_view: list[tuple[FeatureView, list[Event]]]) -> None:
        store = self.store if self.store is not None else self.plane.enricher.store
        for view, events in per_view:
            if events:
                store.apply(view.name, events)

    def _output_of(
        self, message: Message, answer: PredictResult | ModelportError
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"event_id": message.id, "endpoint": self.endpoint}
        if isinstance(answer, ModelportError):
            return out | {"error": str(answer), "code": answer.code}
        prediction = answer.prediction
        outputs = {name: _plain(values[0]) for name, values in prediction.outputs.items()}
        return out | {
            "model": answer.version.name,
            "version": answer.version.version,
            "variant": answer.variant,
            "prediction_id": answer.prediction_ids[0],
            "prediction": outputs[prediction.primary],
            "outputs": outputs,
        }

    def _publish(self, outputs: list[dict[str, Any]]) -> None:
        pipe = self._output.pipeline(transaction=False)
        for output in outputs:
            pipe.xadd(self.output_stream, encode(output))  # type: ignore[arg-type]
        pipe.execute()

    def _count(self, messages: list[Message], outputs: list[dict[str, Any]], took: float) -> None:
        s = self._stats
        failed = sum("error" in o for o in outputs)
        s.processed += len(messages)
        s.failed += failed
        s.predicted += len(outputs) - failed
        s.batches += 1
        s.last_batch_s = took
        s.max_batch_s = max(s.max_batch_s, took)
        s.mean_batch_s += (took - s.mean_batch_s) / s.batches


def _columns(messages: Sequence[Message]) -> dict[str, list[Any]]:
    """The events as one request's named columns: every field any event has, a missing
    value None."""
    names = dict.fromkeys(name for m in messages for name in m.fields)
    return {name: [m.fields.get(name) for m in messages] for name in names}


def _row(result: PredictResult, n: int) -> PredictResult:
    """Row ``n`` of a multi-row result, as a one-row result."""
    prediction = result.prediction
    outputs = {name: np.asarray(values)[n : n + 1] for name, values in prediction.outputs.items()}
    return replace(
        result,
        prediction=Prediction(outputs, prediction.classes, prediction.task),
        prediction_ids=[result.prediction_ids[n]],
        rows=1,
    )


def _plain(value: Any) -> Any:
    """A numpy value as plain Python, for JSON."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value

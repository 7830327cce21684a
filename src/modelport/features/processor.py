"""The stream processor: a stream view's events into the online store, each counted once.

`StreamProcessor` pulls a batch from an `EventSource`, parses each message into an
`Event` of the view (entity key from ``view.entity``, event time from the source's
``timestamp_field``, id from its ``id_field`` or the message id), turns it into ops
with `modelport.features.aggregates.ops` (the definition the batch path `replay` also
uses), applies the whole batch with one ``store.apply`` and only then acknowledges it.
While a batch is applied the next is read and parsed, so the store's time (a Lua script
running in Redis) overlaps the processor's own.

- A crash before the ack redelivers the batch; the store skips the ids it applied.
- A malformed message (no entity key, a bad timestamp, a non-number where a sum needs
  one) is counted, logged with its reason and acknowledged: it never blocks the stream.
- `stop` (or SIGTERM/SIGINT under `stop_on_signals`) lets the current batch finish.

Example::

    processor = StreamProcessor(view, RedisStreamSource(url, "tx", "stats", "host-1"), store)
    with stop_on_signals([processor]):
        processor.run()                 # until stopped; run(once=True): until drained
    processor.stats()                   # {"processed": 5000, "applied": 4950, ...}
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from modelport.errors import InvalidInput
from modelport.features.aggregates import canonical, ops
from modelport.features.online import Event, OnlineStore
from modelport.features.streams import EventSource, Message
from modelport.features.views import FeatureView, StreamSource

#: Batches read ahead of the one being applied: enough that the store always has the
#: next apply queued while the next batch is read and parsed.
QUEUED_APPLIES = 2

log = logging.getLogger(__name__)


class Malformed(ValueError):
    """A message that cannot become an event; its text is the reason."""


@dataclass
class Stats:
    """What a processor has done since it started."""

    processed: int = 0  # messages read and acknowledged
    applied: int = 0  # events the store applied
    duplicates: int = 0  # events the store had applied before (a redelivery, a retry)
    malformed: int = 0  # messages skipped (logged with the reason)
    batches: int = 0
    lag: int | None = None  # entries not yet delivered to the group (last measured)
    pending: int | None = None  # delivered, not yet acknowledged (last measured)
    seconds: float = 0.0  # time spent running


def event_time(value: Any) -> float:
    """Seconds since the epoch from a number, numeric text, or ISO 8601 text (UTC when
    it names no zone)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Malformed(f"timestamp {value!r} is neither epoch seconds nor ISO 8601")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise Malformed(
                    f"timestamp {value!r} is neither epoch seconds nor ISO 8601"
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            value = moment.timestamp()
    ts = float(value)
    if not math.isfinite(ts):
        raise Malformed(f"timestamp {value!r} is not a finite number")
    return ts


def stream_view(view: FeatureView) -> StreamSource:
    """The view's stream source; a clear error for a batch or push view."""
    if not isinstance(view.source, StreamSource):
        raise InvalidInput(
            f"feature view {view.name!r} is a {view.kind} view: only a stream view "
            "(aggregations over a StreamSource) is fed by a stream processor",
            hint="define the view with source=StreamSource(stream=...) and aggregations",
        )
    return view.source


def parse_event(view: FeatureView, message: Message) -> Event:
    """``view``'s event for ``message`` (a stream view's); `Malformed` says why there is
    none. The stream processor and the stream predictor (`modelport.features.predictor`)
    both parse with this."""
    spec = stream_view(view)
    fields = message.fields
    key = fields.get(view.entity)
    if key is None or key == "" or isinstance(key, dict | list):
        raise Malformed(f"no entity key {view.entity!r}")
    if spec.timestamp_field not in fields:
        raise Malformed(f"no timestamp {spec.timestamp_field!r}")
    ts = event_time(fields[spec.timestamp_field])
    event_id = message.id
    if spec.id_field is not None and fields.get(spec.id_field) not in (None, ""):
        event_id = str(fields[spec.id_field])
    try:
        return Event(event_id, canonical(key), ops(view, fields, ts))
    except (TypeError, ValueError) as exc:
        raise Malformed(f"a field does not fit its aggregation: {exc}") from None


class Stoppable(Protocol):
    """A loop that `stop_on_signals` can stop after its current batch."""

    def stop(self) -> None: ...


class StreamProcessor:
    """Feeds ``view``'s aggregations in ``store`` from ``source``, ``batch_size``
    messages per store call."""

    def __init__(
        self,
        view: FeatureView,
        source: EventSource,
        store: OnlineStore,
        *,
        batch_size: int = 500,
        block_ms: int = 1000,
        lag_every_s: float = 1.0,
    ) -> None:
        stream_view(view)
        if batch_size < 1:
            raise InvalidInput(f"the batch size must be at least 1, not {batch_size}")
        self.view, self.source, self.store = view, source, store
        self.batch_size, self.block_ms, self.lag_every_s = batch_size, block_ms, lag_every_s
        self._stats = Stats()
        self._stopping = threading.Event()
        self._measured = 0.0

    def parse(self, message: Message) -> Event:
        """The view's event for ``message``; `Malformed` says why there is none."""
        return parse_event(self.view, message)

    def step(self, block_ms: int | None = None) -> int:
        """Read, apply and acknowledge one batch; the messages it held (0: none came
        within ``block_ms``)."""
        batch = self._read(block_ms)
        if batch is None:
            return 0
        messages, events = batch
        self._done(messages, events, self._apply(events))
        return len(messages)

    def run(self, *, once: bool = False) -> Stats:
        """Process until `stop` (or, with ``once``, until the stream is drained).

        Applies run one at a time, in stream order, on a worker thread (mostly waiting
        on the store), while the main thread reads and parses the next batches. Up to
        `QUEUED_APPLIES` batches are queued, so a Redis store always has the next apply
        waiting while this process parses: Redis runs one command at a time, and a read
        queued behind an apply would otherwise leave it idle during every parse. A batch
        is acknowledged only once its apply returned. On `stop` what was read is applied
        and acknowledged before returning.
        """
        started = time.monotonic()
        inflight: deque[tuple[list[Message], list[Event], Future[int]]] = deque()
        try:
            with ThreadPoolExecutor(1, thread_name_prefix=f"apply-{self.view.name}") as pool:
                while not self._stopping.is_set():
                    # while batches are being applied, only take what is already there
                    batch = self._read(None if once or inflight else self.block_ms)
                    if batch is not None:
                        inflight.append((*batch, pool.submit(self._apply, batch[1])))
                    while inflight and (
                        batch is None or len(inflight) > QUEUED_APPLIES or inflight[0][2].done()
                    ):
                        messages, events, applied = inflight.popleft()
                        self._done(messages, events, applied.result())
                    if time.monotonic() - self._measured >= self.lag_every_s:
                        self.measure()
                    if once and batch is None:
                        break
                while inflight:
                    messages, events, applied = inflight.popleft()
                    self._done(messages, events, applied.result())
        finally:
            self._stats.seconds += time.monotonic() - started
        self.measure()
        return self.stats()

    def _read(self, block_ms: int | None) -> tuple[list[Message], list[Event]] | None:
        messages = self.source.read(self.batch_size, block_ms)
        return (messages, self._events(messages)) if messages else None

    def _apply(self, events: list[Event]) -> int:
        return self.store.apply(self.view.name, events) if events else 0

    def _done(self, messages: list[Message], events: list[Event], applied: int) -> None:
        self.source.ack([m.id for m in messages])
        s = self._stats
        s.processed += len(messages)
        s.applied += applied
        s.duplicates += len(events) - applied
        s.batches += 1

    def _events(self, messages: Sequence[Message]) -> list[Event]:
        events = []
        for message in messages:
            try:
                events.append(self.parse(message))
            except Malformed as exc:
                self._stats.malformed += 1
                log.warning(
                    "view %s: skipped message %s of stream %s: %s",
                    self.view.name,
                    message.id,
                    self.source.stream,
                    exc,
                )
        return events

    def measure(self) -> None:
        """Refresh the lag and pending counts from the source."""
        backlog = self.source.backlog()
        self._stats.lag, self._stats.pending = backlog.lag, backlog.pending
        self._measured = time.monotonic()

    def stop(self) -> None:
        """Stop after the current batch."""
        self._stopping.set()

    def stats(self) -> Stats:
        return Stats(**asdict(self._stats))


def run_all(processors: Sequence[StreamProcessor], *, once: bool = False) -> list[Stats]:
    """Run several processors, one thread each; their stats, in order. The first error
    stops the others and is raised."""
    if len(processors) == 1:
        return [processors[0].run(once=once)]
    errors: list[BaseException] = []

    def work(p: StreamProcessor) -> None:
        try:
            p.run(once=once)
        except BaseException as exc:
            errors.append(exc)
            for other in processors:
                other.stop()

    threads = [threading.Thread(target=work, args=(p,), name=p.view.name) for p in processors]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # a short join: signals reach the main thread meanwhile
    finally:
        for p in processors:
            p.stop()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return [p.stats() for p in processors]


@contextmanager
def stop_on_signals(processors: Sequence[Stoppable]) -> Iterator[None]:
    """SIGTERM or SIGINT stops ``processors`` (stream processors or predictors) after
    their current batch; a second one acts as it did before (Ctrl-C twice interrupts).
    Main thread only."""
    previous: Mapping[signal.Signals, Any] = {
        sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)
    }

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the current batch", signum)
        for p in processors:
            p.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

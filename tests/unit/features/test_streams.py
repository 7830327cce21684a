"""Event sources (one contract, in process and Redis Streams) and the stream processor."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest

from modelport.errors import InvalidInput
from modelport.features.aggregates import State, read, replay
from modelport.features.online import Event, Lookup, MemoryStore
from modelport.features.processor import (
    Malformed,
    StreamProcessor,
    event_time,
    run_all,
    stop_on_signals,
)
from modelport.features.streams import (
    EventSource,
    Message,
    QueueBroker,
    RedisStreamSource,
    connect,
    decode,
    encode,
    publish,
)
from modelport.features.views import Aggregation, Feature, FeatureView, StreamSource

REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000.0


def stats_view(name: str, stream: str, id_field: str | None = "event_id") -> FeatureView:
    return FeatureView(
        name=name,
        entity="user_id",
        aggregations=(
            Aggregation("tx_count_1h", "count", None, 3600.0),
            Aggregation("amount_sum_10m", "sum", "amount", 600.0),
            Aggregation("merchants_1h", "distinct_count", "merchant", 3600.0),
        ),
        source=StreamSource(stream=stream, timestamp_field="ts", id_field=id_field),
    )


class Publisher:
    """A source under test and how to put events on its stream."""

    def __init__(self, kind: str, stream: str) -> None:
        self.kind, self.stream = kind, stream
        self.broker = QueueBroker()

    def source(self, group: str = "g", consumer: str = "c") -> EventSource:
        if self.kind == "queue":
            return self.broker.source(self.stream, group)
        return RedisStreamSource(REDIS_URL, self.stream, group, consumer)

    def publish(self, fields: dict[str, Any]) -> str:
        if self.kind == "queue":
            return self.broker.publish(self.stream, fields)
        return publish(REDIS_URL, self.stream, fields)


@pytest.fixture(params=["queue", "redis"])
def publisher(request: pytest.FixtureRequest) -> Iterator[Publisher]:
    stream = f"test-stream-{uuid.uuid4().hex[:10]}"
    yield Publisher(request.param, stream)
    if request.param == "redis":
        client = connect(REDIS_URL)
        client.delete(stream)
        client.close()


# -- sources -------------------------------------------------------------------------


def test_a_source_delivers_in_order_and_forgets_acked(publisher: Publisher) -> None:
    source = publisher.source()
    ids = [publisher.publish({"n": i, "who": f"u{i}"}) for i in range(5)]
    first = source.read(3, None)
    assert [m.id for m in first] == ids[:3]
    assert first[0].fields == {"n": 0, "who": "u0"}
    source.ack([m.id for m in first])
    rest = source.read(10, None)
    assert [m.id for m in rest] == ids[3:]
    assert source.backlog().pending == 2
    assert source.read(10, None) == []
    source.ack([m.id for m in rest])
    backlog = source.backlog()
    assert (backlog.lag, backlog.pending, backlog.length) == (0, 0, 5)
    source.close()


def test_two_groups_each_see_every_event(publisher: Publisher) -> None:
    a, b = publisher.source("a"), publisher.source("b")
    for i in range(3):
        publisher.publish({"n": i})
    assert len(a.read(10, None)) == len(b.read(10, None)) == 3


def test_a_read_waits_up_to_block_ms(publisher: Publisher) -> None:
    source = publisher.source()
    assert source.read(10, 50) == []


def test_redis_redelivers_unacked_entries_to_the_same_consumer_first() -> None:
    stream = f"test-stream-{uuid.uuid4().hex[:10]}"
    try:
        ids = [publish(REDIS_URL, stream, {"n": i}) for i in range(6)]
        crashed = RedisStreamSource(REDIS_URL, stream, "g", "worker-1")
        crashed.ack([m.id for m in crashed.read(2, None)])
        crashed.read(2, None)  # delivered, never acked: then the process dies
        crashed.close()

        restarted = RedisStreamSource(REDIS_URL, stream, "g", "worker-1")
        assert [m.id for m in restarted.read(10, None)] == ids[2:4]
        assert [m.id for m in restarted.read(10, None)] == ids[4:]
        other = RedisStreamSource(REDIS_URL, stream, "g", "worker-2")
        assert other.read(10, None) == []  # the group delivered everything once
        restarted.close()
        other.close()
    finally:
        client = connect(REDIS_URL)
        client.delete(stream)
        client.close()


def test_values_travel_as_json_and_plain_text_stays_text() -> None:
    fields = {"user_id": "007", "amount": 12.5, "n": 3, "flag": True, "tags": ["a"]}
    assert decode(encode(fields)) == fields
    assert decode({"user_id": "u1", "amount": "12.5", "code": "007"}) == {
        "user_id": "u1",
        "amount": 12.5,
        "code": "007",
    }


# -- parsing -------------------------------------------------------------------------


def test_event_time_takes_epoch_seconds_and_iso_8601() -> None:
    assert event_time(T0) == T0
    assert event_time("1700000000.5") == T0 + 0.5
    assert event_time("2023-11-14T22:13:20Z") == T0
    assert event_time("2023-11-14T23:13:20+01:00") == T0
    assert event_time("2023-11-14T22:13:20") == T0  # no zone: UTC
    for bad in ("yesterday", "", None, True, float("nan"), [1]):
        with pytest.raises(Malformed):
            event_time(bad)


def test_parse_takes_key_time_and_id_and_names_what_is_missing() -> None:
    view = stats_view("v", "s")
    p = StreamProcessor(view, QueueBroker().source("s"), MemoryStore())
    event = p.parse(Message("1-0", {"user_id": "u1", "ts": T0, "amount": 2, "event_id": "e9"}))
    assert (event.id, event.key) == ("e9", "u1")
    assert [op.aggregation for op in event.ops] == ["tx_count_1h", "amount_sum_10m"]
    assert p.parse(Message("1-1", {"user_id": 7, "ts": T0})).id == "1-1"  # no id: message id
    assert p.parse(Message("1-1", {"user_id": 7.0, "ts": T0})).key == "7"
    reasons: dict[str, dict[str, Any]] = {
        "no entity key 'user_id'": {"ts": T0},
        "no timestamp 'ts'": {"user_id": "u1"},
        "neither epoch seconds nor ISO 8601": {"user_id": "u1", "ts": "soon"},
        "does not fit its aggregation": {"user_id": "u1", "ts": T0, "amount": "lots"},
    }
    for reason, fields in reasons.items():
        with pytest.raises(Malformed, match=reason):
            p.parse(Message("2-0", fields))


def test_a_view_that_is_not_a_stream_view_is_a_clear_error() -> None:
    push = FeatureView(name="profile", entity="user_id", features=(Feature("age"),))
    with pytest.raises(InvalidInput, match="'profile' is a push view: only a stream view"):
        StreamProcessor(push, QueueBroker().source("s"), MemoryStore())


# -- processing ----------------------------------------------------------------------


class CountingStore(MemoryStore):
    """A memory store that records the size of each ``apply``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def apply(self, view: str, events: Sequence[Event]) -> int:
        self.calls.append(len(events))
        return super().apply(view, events)


def events(n: int, users: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % users}",
            "ts": T0 + i - (7 if i % 4 == 0 else 0),  # some out of order, within lateness
            "amount": float(i % 13),
            "merchant": f"m{i % 3}",
        }
        for i in range(n)
    ]


def states(store: MemoryStore, view: FeatureView, keys: list[str]) -> dict[str, Any]:
    (found,) = store.read([Lookup(view.name, "state", keys)])
    return {k: read(view, cast(State, s), now=T0 + 300) for k, s in zip(keys, found, strict=True)}


def test_the_processor_gives_the_batch_paths_values_once_per_event_id() -> None:
    view = stats_view("v", "s")
    broker, store = QueueBroker(), CountingStore()
    sent = events(230)
    for fields in [*sent, *sent[:20]]:  # 20 redelivered by the producer
        broker.publish("s", fields)

    stats = StreamProcessor(view, broker.source("s"), store, batch_size=100).run(once=True)

    assert store.calls == [100, 100, 50]  # one store call per batch
    assert (stats.processed, stats.applied, stats.duplicates, stats.malformed) == (250, 230, 20, 0)
    assert (stats.lag, stats.pending) == (0, 0)
    keys = [f"u{i}" for i in range(5)]
    expected = replay(view, ((e["user_id"], e, e["ts"]) for e in sent))
    assert states(store, view, keys) == {k: read(view, expected[k], now=T0 + 300) for k in keys}


def test_malformed_events_are_counted_logged_and_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = stats_view("v", "s")
    broker, store = QueueBroker(), MemoryStore()
    source = broker.source("s")
    for fields in events(3):
        broker.publish("s", fields)
    bad = broker.publish("s", {"user_id": "u1", "ts": "not a time"})
    broker.publish("s", {"amount": 1.0, "ts": T0})

    stats = StreamProcessor(view, source, store).run(once=True)

    assert (stats.processed, stats.applied, stats.malformed) == (5, 3, 2)
    assert source.backlog().pending == 0  # skipped, never stuck
    assert f"skipped message {bad} of stream s: timestamp 'not a time'" in caplog.text
    assert "no entity key 'user_id'" in caplog.text


def test_sigterm_stops_after_what_was_read_is_applied_and_acked() -> None:
    view = stats_view("v", "s")
    broker = QueueBroker()
    source = broker.source("s")
    for fields in events(100):
        broker.publish("s", fields)

    class SignallingStore(MemoryStore):
        def apply(self, view: str, events: Sequence[Event]) -> int:
            if not self.states:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-batch
            return super().apply(view, events)

    processor = StreamProcessor(view, source, SignallingStore(), batch_size=20, block_ms=50)
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals([processor]):
        stats = processor.run()  # would run forever without the signal
    assert signal.getsignal(signal.SIGTERM) == previous
    # the batch being applied, and at most the next one already read
    assert stats.processed in (20, 40)
    assert stats.applied == stats.processed
    backlog = source.backlog()
    assert (backlog.pending, backlog.lag) == (0, 100 - stats.processed)


def test_an_apply_runs_while_the_next_batch_is_read_in_stream_order() -> None:
    view = stats_view("v", "s")
    broker, store = QueueBroker(), CountingStore()
    source = broker.source("s")
    sent = events(1000)
    for fields in sent:
        broker.publish("s", fields)

    stats = StreamProcessor(view, source, store, batch_size=64).run(once=True)

    assert (stats.processed, stats.applied, stats.batches) == (1000, 1000, 16)
    assert store.calls == [64] * 15 + [40]
    assert list(store.seen) == [("v", e["event_id"]) for e in sent]  # applied in order
    assert (stats.lag, stats.pending) == (0, 0)


def test_run_all_feeds_two_views_of_one_stream_each_with_every_event() -> None:
    broker, store = QueueBroker(), MemoryStore()
    for fields in events(300):
        broker.publish("s", fields)
    views = [stats_view("a", "s"), stats_view("b", "s", id_field=None)]
    processors = [StreamProcessor(v, broker.source("s", v.name), store) for v in views]

    stats = run_all(processors, once=True)

    assert [(s.processed, s.applied) for s in stats] == [(300, 300), (300, 300)]
    assert states(store, views[0], ["u1"]) == states(store, views[1], ["u1"])


def test_run_all_raises_the_first_error_and_stops_the_others() -> None:
    broker = QueueBroker()
    for fields in events(10):
        broker.publish("s", fields)

    class DownStore(MemoryStore):
        def apply(self, view: str, events: Sequence[Event]) -> int:
            raise RuntimeError("store down")

    failing = StreamProcessor(stats_view("a", "s"), broker.source("s", "a"), DownStore())
    idle = StreamProcessor(stats_view("b", "t"), broker.source("t", "b"), MemoryStore())
    idle.block_ms = 20
    with pytest.raises(RuntimeError, match="store down"):
        run_all([failing, idle])  # idle alone would wait for events forever
    assert broker.source("s", "a").backlog().pending == 10  # never acked: redelivered

"""One contract for every online store: memory, SQLite and Redis answer alike."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.features import aggregates
from modelport.features.aggregates import ops
from modelport.features.online import Event, Lookup, MemoryStore, OnlineStore, Row
from modelport.features.redis import RedisStore
from modelport.features.sqlite import SQLiteStore
from modelport.features.views import Aggregation, FeatureView, StreamSource

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = 66 * 25_757_576.0  # 1_700_000_016: slot 0 of a 66-slot ring

AGGREGATIONS = (
    Aggregation("n_1m", "count", None, 60.0),
    Aggregation("amount_sum_1m", "sum", "amount", 60.0),
    Aggregation("amount_mean_1m", "mean", "amount", 60.0),
    Aggregation("amount_min_1m", "min", "amount", 60.0),
    Aggregation("amount_max_1m", "max", "amount", 60.0),
    Aggregation("merchants_1m", "distinct_count", "merchant", 60.0),
    Aggregation("last_merchant_1m", "last", "merchant", 60.0),
)


def stream_view(name: str) -> FeatureView:
    """Buckets of 1 s, 5 s of lateness: a ring of 66 slots per aggregation."""
    return FeatureView(
        name=name,
        entity="user_id",
        aggregations=AGGREGATIONS,
        source=StreamSource(stream="tx", allowed_lateness_s=5.0),
    )


def event(view: FeatureView, event_id: str, key: str, ts: float, **fields: Any) -> Event:
    return Event(event_id, key, ops(view, fields, ts))


@pytest.fixture
def store(online_store: OnlineStore) -> OnlineStore:
    return online_store


@pytest.fixture
def names(store: OnlineStore) -> Iterator[Callable[[], str]]:
    """Unique view names (tests share one Redis), deleted from the store afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"t_{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    for name in made:
        store.delete_view(name)


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """Values as JSON gives them back: arrays as lists."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in values.items()}


def rows_of(store: OnlineStore, view: str, keys: list[str]) -> list[Row | None]:
    [found] = store.read([Lookup(view, "rows", keys)])
    return found  # type: ignore[return-value]


def state_of(store: OnlineStore, view: str, key: str) -> dict[str, Any] | None:
    [[state]] = store.read([Lookup(view, "state", [key])])
    return state  # type: ignore[return-value]


# rows


def test_write_then_read_rows(store: OnlineStore, names: Callable[[], str]) -> None:
    view = names()
    before = time.time()
    written = store.write(view, {"u1": ({"age": 31.0}, T0), "u2": ({"age": 40.0}, T0 + 1)})
    after = time.time()
    assert written == 2
    u1, missing, u2 = rows_of(store, view, ["u1", "nobody", "u2"])
    assert missing is None
    assert u1 is not None and u2 is not None
    assert (u1.values, u1.event_ts) == ({"age": 31.0}, T0)
    assert (u2.values, u2.event_ts) == ({"age": 40.0}, T0 + 1)
    assert before <= u1.written_ts <= after


def test_latest_event_time_wins(store: OnlineStore, names: Callable[[], str]) -> None:
    view = names()
    assert store.write(view, {"u1": ({"x": 1.0}, T0)}) == 1
    assert store.write(view, {"u1": ({"x": 2.0}, T0 - 10)}) == 0  # older: ignored
    [row] = rows_of(store, view, ["u1"])
    assert row is not None and row.values == {"x": 1.0}
    assert store.write(view, {"u1": ({"x": 3.0}, T0)}) == 1  # same time: the later write
    assert store.write(view, {"u1": ({"x": 4.0}, T0 + 0.5), "u2": ({"x": 5.0}, 1.0)}) == 2
    row, other = rows_of(store, view, ["u1", "u2"])
    assert row is not None and (row.values, row.event_ts) == ({"x": 4.0}, T0 + 0.5)
    assert other is not None and other.values == {"x": 5.0}


def test_vectors_and_strings_round_trip(store: OnlineStore, names: Callable[[], str]) -> None:
    view = names()
    values = {
        "emb": np.arange(8, dtype=np.float64) / 3,
        "emb32": np.linspace(0, 1, 5, dtype=np.float32),
        "strided": np.arange(10, dtype=np.float64)[::2],
        "listed": [0.1, 0.2, 1e-300],
        "name": 'Zoë "q" \\ / ✓ 😀',
        "flag": True,
        "count": np.int64(7),
        "nothing": None,
    }
    store.write(view, {"u1": (values, T0)})
    [row] = rows_of(store, view, ["u1"])
    assert row is not None
    got = plain(row.values)
    assert got["emb"] == (np.arange(8, dtype=np.float64) / 3).tolist()
    assert np.array_equal(np.asarray(got["emb32"], dtype=np.float32), values["emb32"])
    assert got["strided"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert got["listed"] == [0.1, 0.2, 1e-300]
    assert got["name"] == 'Zoë "q" \\ / ✓ 😀'
    assert (got["flag"], got["count"], got["nothing"]) == (True, 7, None)


def test_several_views_in_one_read(store: OnlineStore, names: Callable[[], str]) -> None:
    profile, prices, stats = names(), names(), stream_view(names())
    store.write(profile, {"u1": ({"age": 31.0}, T0)})
    store.write(prices, {"p1": ({"price": 9.5}, T0), "p2": ({"price": 1.5}, T0)})
    store.apply(stats.name, [event(stats, "e1", "u1", T0, amount=5.0, merchant="a")])
    found = store.read(
        [
            Lookup(profile, "rows", ["u1", "u2"]),
            Lookup(stats.name, "state", ["u1", "u2"]),
            Lookup(prices, "rows", ["p2", "p1"]),
            Lookup(prices, "rows", []),
        ]
    )
    assert [[r.values if r else None for r in found[0]]] == [[{"age": 31.0}, None]]
    state, missing = found[1]
    assert missing is None and state is not None
    assert aggregates.read(stats, state, T0)["amount_sum_1m"] == 5.0
    assert [r.values if r else None for r in found[2]] == [{"price": 1.5}, {"price": 9.5}]
    assert found[3] == []
    assert store.read([]) == []
    aread = getattr(store, "aread", None)
    if aread is not None:  # a store with an asyncio read answers the same

        async def both() -> list[Any]:
            found = await aread(lookups)
            await store.aclose()  # type: ignore[attr-defined]
            return found

        lookups = [Lookup(profile, "rows", ["u1", "u2"]), Lookup(stats.name, "state", ["u1"])]
        assert asyncio.run(both()) == store.read(lookups)


# aggregation states


def test_each_op_type(store: OnlineStore, names: Callable[[], str]) -> None:
    view = stream_view(names())
    reference = MemoryStore()
    events = [
        event(view, "e1", "u1", T0 + 0.5, amount=5, merchant="a"),
        event(view, "e2", "u1", T0 + 2.5, amount=1.5, merchant=1),
        event(view, "e3", "u1", T0 + 1.5, amount=9, merchant=1.0),  # out of order
        event(view, "e4", "u1", T0 + 3.0),  # counted only: no amount, no merchant
    ]
    assert store.apply(view.name, events) == 4
    reference.apply(view.name, events)
    state = state_of(store, view.name, "u1")
    assert state == state_of(reference, view.name, "u1")
    assert state is not None
    assert aggregates.read(view, state, T0 + 4) == {
        "n_1m": 4,
        "amount_sum_1m": 15.5,
        "amount_mean_1m": 15.5 / 3,
        "amount_min_1m": 1.5,
        "amount_max_1m": 9.0,
        "merchants_1m": 2,  # "a" and 1 (1.0 is 1)
        "last_merchant_1m": 1,  # e2's: the latest by event time
    }
    assert state["merchants_1m:0:d"] == '["a"]'
    assert state["last_merchant_1m:2:l"] == "1"


def test_events_apply_once_by_id(store: OnlineStore, names: Callable[[], str]) -> None:
    view = stream_view(names())
    one = event(view, "e1", "u1", T0, amount=1.0)
    two = event(view, "e2", "u1", T0, amount=2.0)
    three = event(view, "e3", "u2", T0, amount=3.0)
    assert store.apply(view.name, [one, two]) == 2
    assert store.apply(view.name, [two, three, three]) == 1  # redelivered, and twice in one
    assert store.apply(view.name, []) == 0
    u1, u2 = (state_of(store, view.name, k) for k in ("u1", "u2"))
    assert u1 is not None and u2 is not None
    assert aggregates.read(view, u1, T0)["amount_sum_1m"] == 3.0
    assert aggregates.read(view, u2, T0)["n_1m"] == 1


def test_event_without_ops_is_remembered_but_makes_no_state(
    store: OnlineStore, names: Callable[[], str]
) -> None:
    view = stream_view(names())
    assert store.apply(view.name, [Event("e1", "u1", [])]) == 1
    assert store.apply(view.name, [Event("e1", "u1", [])]) == 0
    assert state_of(store, view.name, "u1") is None


def test_slot_reset_and_too_late_drop(store: OnlineStore, names: Callable[[], str]) -> None:
    view = stream_view(names())
    ring = aggregates.slots(AGGREGATIONS[0], 5.0)
    assert ring == 66
    store.apply(view.name, [event(view, "e1", "u1", 10.0, amount=5.0, merchant="a")])
    # Same slot, a newer bucket: the slot starts over.
    store.apply(view.name, [event(view, "e2", "u1", 10.0 + ring, amount=7.0)])
    state = state_of(store, view.name, "u1")
    assert state is not None
    assert (state["n_1m:10:b"], state["n_1m:10:n"]) == (10 + ring, 1.0)
    assert (state["amount_min_1m:10:lo"], state["amount_sum_1m:10:s"]) == (7.0, 7.0)
    assert state["merchants_1m:10:b"] == 10  # e2 had no merchant: left alone
    # Too late for its slot: dropped, but the event counts as applied (and is remembered).
    assert store.apply(view.name, [event(view, "e3", "u1", 10.5, amount=100.0)]) == 1
    assert state_of(store, view.name, "u1") == state
    assert aggregates.read(view, state, 10.0 + ring)["amount_max_1m"] == 7.0


def test_random_events_match_memory_store(store: OnlineStore, names: Callable[[], str]) -> None:
    view = stream_view(names())
    reference = MemoryStore()
    rng = random.Random(20240611)
    merchants: list[Any] = ["a", "b", "1", "1.0", 1, 1.0, 2.5, "Zoë", 'q"uote', "back\\", "/", "😀"]
    merchants += [[1, "x"], True]
    events: list[Event] = []
    for i in range(500):
        ts = T0 + i * 0.4 + rng.uniform(-8.0, 2.0)
        if rng.random() < 0.05:
            ts -= rng.uniform(60.0, 120.0)  # beyond the ring: too late, or a slot reset
        fields: dict[str, Any] = {}
        if rng.random() < 0.9:
            fields["amount"] = rng.choice([rng.randint(-5, 50), round(rng.uniform(-1, 1), 3)])
            fields["amount"] = rng.choice([fields["amount"], rng.random() * 1e6, 0.1])
        if rng.random() < 0.85:
            fields["merchant"] = rng.choice(merchants)
        event_id = f"e{i}" if rng.random() > 0.05 or not events else rng.choice(events).id
        events.append(event(view, event_id, rng.choice(["u1", "u2", "u3"]), ts, **fields))
    # The sequence reaches every path: slot resets, and ops too late for their slot.
    scratch: dict[str, aggregates.State] = {}
    firsts = sorted({e.id: e for e in reversed(events)}.values(), key=events.index)
    late = [
        op
        for e in firsts
        for op in e.ops
        if not aggregates.apply(scratch.setdefault(e.key, {}), op)
    ]
    assert late and len(firsts) < len(events)
    done = 0
    while done < len(events):
        size = rng.randint(1, 60)
        batch = events[done : done + size]
        assert store.apply(view.name, batch) == reference.apply(view.name, batch)
        done += size
    keys = ["u1", "u2", "u3"]
    [got] = store.read([Lookup(view.name, "state", keys)])
    [want] = reference.read([Lookup(view.name, "state", keys)])
    assert got == want
    for now in (T0 + 100.0, T0 + 150.0, T0 + 199.0, T0 + 230.0):
        for state, expected in zip(got, want, strict=True):
            assert state is not None and expected is not None
            assert aggregates.read(view, state, now) == aggregates.read(view, expected, now)


def test_threads_apply_each_event_once(store: OnlineStore, names: Callable[[], str]) -> None:
    view = stream_view(names())
    events = [event(view, f"e{i}", "u1", T0 + i % 30, amount=1.0) for i in range(200)]
    applied: list[int] = []

    def work(part: list[Event]) -> None:
        for start in range(0, len(part), 10):
            applied.append(store.apply(view.name, part[start : start + 10]))

    threads = [threading.Thread(target=work, args=(events[i::2] + events,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(applied) == 200
    state = state_of(store, view.name, "u1")
    assert state is not None
    assert aggregates.read(view, state, T0 + 30)["amount_sum_1m"] == 200.0


# views


def test_delete_view(store: OnlineStore, names: Callable[[], str]) -> None:
    gone, kept = stream_view(names()), names()
    store.write(gone.name, {"u1": ({"x": 1.0}, T0)})
    store.apply(gone.name, [event(gone, "e1", "u1", T0, amount=1.0)])
    store.write(kept, {"u1": ({"x": 2.0}, T0)})
    store.delete_view(gone.name)
    found = store.read([Lookup(gone.name, "rows", ["u1"]), Lookup(gone.name, "state", ["u1"])])
    assert found == [[None], [None]]
    [row] = rows_of(store, kept, ["u1"])
    assert row is not None and row.values == {"x": 2.0}
    # The ids are forgotten too: the same event applies again.
    assert store.apply(gone.name, [event(gone, "e1", "u1", T0, amount=1.0)]) == 1


def test_ping(store: OnlineStore) -> None:
    store.ping()


def test_sqlite_stores_on_one_file_share_it(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "online.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    view = stream_view("stats")
    try:
        first.write("profile", {"u1": ({"age": 31.0}, T0)})
        [[row]] = second.read([Lookup("profile", "rows", ["u1"])])
        assert row is not None and row.values == {"age": 31.0}
        assert second.apply(view.name, [event(view, "e1", "u1", T0, amount=2.0)]) == 1
        assert first.apply(view.name, [event(view, "e1", "u1", T0, amount=2.0)]) == 0
        state = state_of(first, view.name, "u1")
        assert state is not None and aggregates.read(view, state, T0)["amount_sum_1m"] == 2.0
    finally:
        first.close()
        second.close()


def test_redis_reads_after_its_scripts_are_gone() -> None:
    """Redis forgets scripts when it restarts: the store loads its own again."""
    store = RedisStore(REDIS_URL, timeout_s=2.0)
    view = stream_view(f"t_{uuid.uuid4().hex[:12]}")
    try:
        store.apply(view.name, [event(view, "e1", "u1", T0, amount=1.0)])
        store._states.sha = "0" * 40  # as if the server no longer knew it
        state = state_of(store, view.name, "u1")
        assert state is not None and aggregates.read(view, state, T0)["n_1m"] == 1
    finally:
        store.delete_view(view.name)
        store.close()

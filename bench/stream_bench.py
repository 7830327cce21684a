"""Stream ingestion: events/s from a Redis Stream into a stream view's aggregations.

Fills one Redis Stream with ``--events`` transactions (25,000 users, an amount, a
merchant, epoch-second times, an event id), then, each on a consumer group of its own
(every group sees every event) and ``--rounds`` times (median reported), drains it with
one consumer in this process, pinned to one core:

1. **bare XREADGROUP+XACK** (baseline): redis-py reads ``--batch`` entries and acks
   them; no decoding, no parsing, no store. The ceiling of a Python consumer.
2. **processor -> MemoryStore**: `StreamProcessor.run` (decode, parse,
   `aggregates.ops`, one apply per batch, ack) into the in-process store: the
   processor's own cost.
3. **processor -> RedisStore, step by step**: `StreamProcessor.step` in a loop (read,
   parse, apply, ack, one after the other) into the Redis online store, with the time
   split by wrapping the source and the store: read (XREADGROUP and JSON decoding),
   apply (the store call: one Lua script per batch), ack (XACK), parse (the rest:
   entity key, time, id, ops).
4. **processor -> RedisStore**: `StreamProcessor.run`, which reads and parses the next
   batch while Redis applies one: the figure the target (20,000 events/s) is about.
5. **processor -> SQLiteStore**: `run` into the embedded file store.

Events are published as `modelport stream publish` writes them (one ``json`` field per
entry). The view has 3 aggregations (count over 1 h, sum over 10 min, max over 1 h).
This process is pinned to one core; Redis runs where the OS puts it. Prints a Markdown
table and writes bench/results/stream_bench.json.

Run: ``python bench/stream_bench.py [--events N] [--rounds R] [--batch B]``
(defaults: 50,000 events, 3 rounds, 500 per batch: about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis.utils import HIREDIS_AVAILABLE
from serve_bench import machine

from modelport.features.online import Event, Found, Lookup, MemoryStore, OnlineStore
from modelport.features.processor import StreamProcessor
from modelport.features.redis import RedisStore
from modelport.features.sqlite import SQLiteStore
from modelport.features.streams import Backlog, Message, RedisStreamSource, connect, publish_many
from modelport.features.views import Aggregation, FeatureView, StreamSource

BENCH = Path(__file__).resolve().parent
TARGET = 20_000.0


def view(name: str, stream: str) -> FeatureView:
    return FeatureView(
        name=name,
        entity="user_id",
        aggregations=(
            Aggregation("tx_count_1h", "count", None, 3600.0),
            Aggregation("amount_sum_10m", "sum", "amount", 600.0),
            Aggregation("amount_max_1h", "max", "amount", 3600.0),
        ),
        source=StreamSource(stream=stream, timestamp_field="ts", id_field="event_id"),
    )


def events(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    t0 = time.time() - 3600
    return [
        {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(25_000)}",
            "amount": round(rng.uniform(1, 500), 2),
            "merchant": f"m{rng.randrange(500)}",
            "ts": round(t0 + i * 3600 / n, 3),
        }
        for i in range(n)
    ]


class TimedSource:
    """A source that adds up the seconds spent reading and acking."""

    def __init__(self, inner: RedisStreamSource) -> None:
        self.inner, self.stream = inner, inner.stream
        self.read_s = self.ack_s = 0.0

    def read(self, count: int, block_ms: int | None) -> list[Message]:
        start = time.perf_counter()
        try:
            return self.inner.read(count, block_ms)
        finally:
            self.read_s += time.perf_counter() - start

    def ack(self, ids: Sequence[str]) -> None:
        start = time.perf_counter()
        self.inner.ack(ids)
        self.ack_s += time.perf_counter() - start

    def backlog(self) -> Backlog:
        return self.inner.backlog()

    def close(self) -> None:
        self.inner.close()


class TimedStore:
    """A store that adds up the seconds spent in ``apply``."""

    def __init__(self, inner: OnlineStore) -> None:
        self.inner = inner
        self.apply_s = 0.0

    def apply(self, view: str, events: Sequence[Event]) -> int:
        start = time.perf_counter()
        try:
            return self.inner.apply(view, events)
        finally:
            self.apply_s += time.perf_counter() - start

    def write(self, view: str, rows: Any) -> int:
        return self.inner.write(view, rows)

    def read(self, lookups: Sequence[Lookup]) -> list[Found]:
        return self.inner.read(lookups)

    def delete_view(self, view: str) -> None:
        self.inner.delete_view(view)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def bare(url: str, stream: str, batch: int) -> dict[str, Any]:
    """XREADGROUP + XACK until drained: the baseline."""
    client = connect(url)
    group = f"bare-{uuid.uuid4().hex[:8]}"
    client.xgroup_create(stream, group, id="0")
    n = 0
    start = time.perf_counter()
    while True:
        reply: Any = client.xreadgroup(group, "c", {stream: ">"}, count=batch)
        if not reply:
            break
        ids = [mid for mid, _ in reply[0][1]]
        client.xack(stream, group, *ids)
        n += len(ids)
    seconds = time.perf_counter() - start
    client.close()
    return {"events": n, "seconds": seconds}


def processed(
    url: str, stream: str, batch: int, store: OnlineStore, *, overlap: bool
) -> dict[str, Any]:
    """`StreamProcessor` into ``store`` until drained: ``run`` (the next batch read
    and parsed while one is applied) or, ``overlap`` off, one ``step`` after another,
    with the time split by step."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    source = TimedSource(RedisStreamSource(url, stream, name, "c"))
    timed = TimedStore(store)
    processor = StreamProcessor(view(name, stream), source, timed, batch_size=batch)
    processor.lag_every_s = 1e9  # lag is measured once at the end, outside the timing
    start = time.perf_counter()
    if overlap:
        processor.run(once=True)
    else:
        while processor.step(None):
            pass
    seconds = time.perf_counter() - start
    stats = processor.stats()
    source.close()
    store.delete_view(name)
    assert stats.applied == stats.processed == len_events(url, stream), stats
    out = {"events": stats.processed, "seconds": seconds}
    if not overlap:
        out |= {
            "read_s": source.read_s,
            "apply_s": timed.apply_s,
            "ack_s": source.ack_s,
            "parse_s": seconds - source.read_s - timed.apply_s - source.ack_s,
        }
    return out


def len_events(url: str, stream: str) -> int:
    client = connect(url)
    try:
        return int(client.xlen(stream))
    finally:
        client.close()


def lua_usec(client: Any) -> float:
    """Microseconds Redis has spent in EVALSHA (the store's scripts) since its start."""
    stats = client.info("commandstats").get("cmdstat_evalsha") or {}
    return float(stats.get("usec", 0))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = sorted(runs, key=lambda r: r["events"] / r["seconds"])[len(runs) // 2]
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()}
    out["events_per_s"] = round(best["events"] / best["seconds"])
    out["rounds_events_per_s"] = [round(r["events"] / r["seconds"]) for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--redis", default=os.environ.get("MODELPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # one core
    stream = f"bench-stream-{uuid.uuid4().hex[:8]}"
    client = connect(args.redis)
    redis_version = client.info("server")["redis_version"]
    home = tempfile.TemporaryDirectory()

    def redis_store() -> OnlineStore:
        return RedisStore(args.redis, timeout_s=30)

    consumers: dict[str, tuple[Callable[[], OnlineStore], bool]] = {
        "processor -> MemoryStore": (MemoryStore, True),
        "processor -> RedisStore, step by step": (redis_store, False),
        "processor -> RedisStore": (redis_store, True),
        "processor -> SQLiteStore": (lambda: SQLiteStore(Path(home.name) / "online.db"), True),
    }
    try:
        start = time.perf_counter()
        publish_many(args.redis, stream, events(args.events))
        fill_s = time.perf_counter() - start
        print(f"filled {stream} with {args.events} events in {fill_s:.1f} s", file=sys.stderr)
        runs: dict[str, list[dict[str, Any]]] = {"bare XREADGROUP+XACK": []}
        runs.update((label, []) for label in consumers)
        for r in range(args.rounds):
            runs["bare XREADGROUP+XACK"].append(bare(args.redis, stream, args.batch))
            for label, (make, overlap) in consumers.items():
                store = make()
                before = lua_usec(client)
                run = processed(args.redis, stream, args.batch, store, overlap=overlap)
                if isinstance(store, RedisStore):
                    run["lua_us_per_event"] = (lua_usec(client) - before) / run["events"]
                runs[label].append(run)
                store.close()
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        client.delete(stream)
        client.close()
        home.cleanup()

    results = [{"consumer": label, **median_run(rs)} for label, rs in runs.items()]
    baseline = results[0]["events_per_s"]
    header = ["consumer", "events/s", "vs bare", "read %", "parse %", "apply %", "ack %", "rounds"]
    print("\n| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in results:
        share = [
            f"{100 * row[k] / row['seconds']:.0f}" if k in row else "-"
            for k in ("read_s", "parse_s", "apply_s", "ack_s")
        ]
        rate = row["events_per_s"]
        print(
            f"| {row['consumer']} | {rate} | {rate / baseline:.2f} | "
            + " | ".join(share)
            + f" | {row['rounds_events_per_s']} |"
        )
    redis_rate = results[3]["events_per_s"]
    verdict = "meets" if redis_rate >= TARGET else "misses"
    print(f"\nRedisStore: {redis_rate} events/s, {verdict} the {TARGET:.0f} events/s target")
    lua = results[3].get("lua_us_per_event")
    if lua:
        print(f"Redis ran the store's apply script {lua:.1f} us per event ({1e6 / lua:.0f}/s max)")
    print(f"redis-py parser: {'hiredis' if HIREDIS_AVAILABLE else 'pure Python (no hiredis)'}")
    out = {
        **machine(),
        "redis": redis_version,
        "events": args.events,
        "rounds": args.rounds,
        "batch": args.batch,
        "aggregations": 3,
        "hiredis": HIREDIS_AVAILABLE,
        "target_events_per_s": TARGET,
        "results": results,
    }
    target = BENCH / "results" / "stream_bench.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {target.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()

"""Windowed aggregations over events: one definition for streaming, online and batch.

An aggregation over a window of W seconds keeps, per entity, a ring of slots: the
window is cut into `SLOTS_PER_WINDOW` buckets of W/60 seconds, and the ring holds those
plus enough for the allowed lateness. An event adds to the bucket of its own event
time (so late and out-of-order events land in the right window); a slot whose bucket
is older than the event's is reset first; an event whose slot already holds a newer
bucket is older than the window plus the lateness and is dropped. Reading at time
``now`` combines the 60 buckets up to ``now``'s: a sliding window accurate to one
bucket (1/60 of the window).

The state of one (view, entity) is a flat mapping, the same in every online store
(a Redis hash, a dict, a SQLite row), with fields ``{aggregation}:{slot}:{part}``:
``b`` the bucket the slot holds, ``n`` count, ``s`` sum, ``lo`` min, ``hi`` max, ``l``
last value and ``lt`` its time, ``d`` the distinct values (a JSON list). `apply` is
the reference update (the Redis store runs the same steps in a Lua script) and
`read` turns a state into feature values; the stream processor, the online stores and
the batch path (`replay`) all use them, so a feature has one definition.

Example::

    state: State = {}
    for op in ops(view, event_fields, event_ts):
        apply(state, op)
    read(view, state, now=time.time())  # {"tx_count_1h": 3, "amount_mean_1h": 12.5}
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelport.features.views import Aggregation, FeatureView, StreamSource

#: Buckets per window: the window slides in steps of 1/60 of its length.
SLOTS_PER_WINDOW = 60

#: One (view, entity)'s aggregation state: field -> number or text.
State = dict[str, Any]


@dataclass(frozen=True)
class Op:
    """What one event does to one aggregation of one entity."""

    aggregation: str
    function: str
    slot: int
    bucket: int
    value: Any  # the event field's value (None for count)
    ts: float

    def to_list(self) -> list[Any]:
        """The op as the Redis script takes it."""
        value = self.value
        if self.function == "distinct_count":
            value = canonical(value)
        return [self.aggregation, self.function, self.slot, self.bucket, value, self.ts]


def width(aggregation: Aggregation) -> float:
    """Seconds per bucket."""
    return aggregation.window_s / SLOTS_PER_WINDOW


def slots(aggregation: Aggregation, lateness_s: float) -> int:
    """Slots in the ring: the window's buckets, the lateness's, and one more."""
    return SLOTS_PER_WINDOW + math.ceil(lateness_s / width(aggregation)) + 1


def canonical(value: Any) -> str:
    """The text a distinct value is counted by (``1`` and ``1.0`` are one value)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def ops(view: FeatureView, fields: Mapping[str, Any], ts: float) -> list[Op]:
    """The ops of one event (its ``fields`` at event time ``ts``) on ``view``'s
    aggregations; an aggregation whose field the event lacks (or holds null) is left
    alone."""
    source = view.source
    lateness = source.allowed_lateness_s if isinstance(source, StreamSource) else 0.0
    out = []
    for agg in view.aggregations:
        value = None
        if agg.field is not None:
            value = fields.get(agg.field)
            if value is None:
                continue
            if agg.function not in ("distinct_count", "last"):
                value = float(value)
        bucket = math.floor(ts / width(agg))
        out.append(Op(agg.name, agg.function, bucket % slots(agg, lateness), bucket, value, ts))
    return out


def apply(state: State, op: Op) -> bool:
    """Add one op to ``state``; False when the event is too late for its slot."""
    prefix = f"{op.aggregation}:{op.slot}:"
    held = state.get(prefix + "b")
    if held is not None and int(held) > op.bucket:
        return False
    if held is None or int(held) < op.bucket:
        for part in ("n", "s", "lo", "hi", "l", "lt", "d"):
            state.pop(prefix + part, None)
        state[prefix + "b"] = op.bucket
    state[prefix + "n"] = float(state.get(prefix + "n", 0)) + 1
    f, v = op.function, op.value
    if f in ("sum", "mean"):
        state[prefix + "s"] = float(state.get(prefix + "s", 0.0)) + v
    elif f == "min":
        lo = state.get(prefix + "lo")
        state[prefix + "lo"] = v if lo is None else min(float(lo), v)
    elif f == "max":
        hi = state.get(prefix + "hi")
        state[prefix + "hi"] = v if hi is None else max(float(hi), v)
    elif f == "last":
        lt = state.get(prefix + "lt")
        if lt is None or op.ts >= float(lt):
            state[prefix + "l"], state[prefix + "lt"] = json.dumps(v), op.ts
    elif f == "distinct_count":
        seen = json.loads(state.get(prefix + "d", "[]"))
        text = canonical(v)
        if text not in seen:
            seen.append(text)
            state[prefix + "d"] = json.dumps(seen)
    return True


def read(view: FeatureView, state: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Each aggregation's value at ``now`` over its sliding window (None where the
    window holds no event: ``count`` and ``distinct_count`` are then 0)."""
    source = view.source
    lateness = source.allowed_lateness_s if isinstance(source, StreamSource) else 0.0
    values: dict[str, Any] = {}
    for agg in view.aggregations:
        current = math.floor(now / width(agg))
        oldest = current - SLOTS_PER_WINDOW
        live = []
        for prefix, bucket_field in _slot_fields(agg.name, slots(agg, lateness)):
            held = state.get(bucket_field)
            if held is not None and oldest < int(held) <= current:
                live.append(prefix)
        values[agg.name] = _combine(agg.function, state, live)
    return values


@functools.lru_cache(maxsize=4096)
def _slot_fields(name: str, count: int) -> tuple[tuple[str, str], ...]:
    """Each slot's field prefix and bucket field (made once: reads are on the hot path)."""
    return tuple((f"{name}:{slot}:", f"{name}:{slot}:b") for slot in range(count))


def _combine(function: str, state: Mapping[str, Any], prefixes: list[str]) -> Any:
    def numbers(part: str) -> list[float]:
        return [float(state[p + part]) for p in prefixes if state.get(p + part) is not None]

    count = sum(numbers("n"))
    if function == "count":
        return int(count)
    if function == "distinct_count":
        seen: set[str] = set()
        for p in prefixes:
            seen.update(json.loads(state.get(p + "d", "[]")))
        return len(seen)
    if not count:
        return None
    if function == "sum":
        return sum(numbers("s"))
    if function == "mean":
        return sum(numbers("s")) / count
    if function == "min":
        return min(numbers("lo"))
    if function == "max":
        return max(numbers("hi"))
    # last: the value of the latest event
    latest = max(
        (float(state[p + "lt"]), state[p + "l"])
        for p in prefixes
        if state.get(p + "lt") is not None
    )
    return json.loads(latest[1])


def replay(
    view: FeatureView, events: Iterable[tuple[str, Mapping[str, Any], float]]
) -> dict[str, State]:
    """The state of every entity after ``events`` ((entity key, fields, event time)),
    as a stream processor would leave it: the batch path to the same values."""
    states: dict[str, State] = {}
    for key, fields, ts in events:
        state = states.setdefault(key, {})
        for op in ops(view, fields, ts):
            apply(state, op)
    return states

"""The online store: the latest feature values per entity, read at prediction time.

One Protocol, three stores (`MemoryStore` here, embedded; `SQLiteStore` and
`RedisStore` in their modules), one contract test suite. A store holds two things per
(view, entity key):

- a **row** (batch and push views): the feature values, the event time they were true
  at and when they were written; a write older (by event time) than what is held is
  ignored, so materializing twice, or out of order, ends the same;
- an aggregation **state** (stream views, see `modelport.features.aggregates`): events
  are applied at most once each, by event id, so a stream consumer that redelivers
  after a crash does not count twice.

`read` takes several views' lookups and answers them together: one round trip to a
remote store per request.

Example::

    store = MemoryStore()
    store.write("user_profile", {"u1": ({"age": 31.0}, 1_700_000_000.0)})
    store.apply(stats_view, [Event("e-1", "u1", ops(stats_view, {"amount": 5}, ts))])
    rows, states = store.read([Lookup("user_profile", "rows", ["u1"]),
                               Lookup("user_stats", "state", ["u1"])])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from modelport.errors import InvalidInput
from modelport.features.aggregates import Op, State, apply

if TYPE_CHECKING:
    from modelport.settings import Settings

#: How long an applied event's id is remembered (seconds): a redelivery later than this
#: would count again. It covers a consumer's crash and restart (pending events are
#: re-read first thing); each remembered id costs about 100 bytes in the store, so at
#: 20,000 events/s an hour of ids is some 7 GB of Redis: keep it as short as restarts.
DEDUPE_TTL_S = 3600.0


@dataclass(frozen=True)
class Row:
    """A batch or push view's values for one entity."""

    values: dict[str, Any]
    event_ts: float  # when the values were true (the source's timestamp)
    written_ts: float  # when they reached the store


@dataclass(frozen=True)
class Event:
    """One stream event for one entity, as ops on a view's aggregations."""

    id: str
    key: str
    ops: list[Op]


@dataclass(frozen=True)
class Lookup:
    """Read ``keys`` of ``view``: its rows, or its aggregation states."""

    view: str
    kind: Literal["rows", "state"]
    keys: Sequence[str]


#: What `OnlineStore.read` returns for each lookup: one entry per key, None if absent.
Found = list[Row | None] | list[State | None]


class OnlineStore(Protocol):
    """Where the latest feature values live."""

    def write(self, view: str, rows: Mapping[str, tuple[Mapping[str, Any], float]]) -> int:
        """Set ``rows`` (key -> (values, event time)); a row older than the one held is
        ignored. Returns how many were written."""
        ...

    def apply(self, view: str, events: Sequence[Event]) -> int:
        """Apply each event's ops once (an id seen before is skipped, as is an op too
        late for its slot); durable when it returns. Returns the events applied."""
        ...

    def read(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Every lookup's entries, in order, in one round trip."""
        ...

    def delete_view(self, view: str) -> None:
        """Forget everything of ``view`` (rows, states, remembered event ids)."""
        ...

    def ping(self) -> None:
        """Raise `modelport.errors.Unavailable` if the store cannot be reached."""
        ...

    def close(self) -> None: ...


@dataclass
class MemoryStore:
    """The embedded store: dicts in this process, gone when it ends."""

    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    states: dict[tuple[str, str], State] = field(default_factory=dict)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, view: str, rows: Mapping[str, tuple[Mapping[str, Any], float]]) -> int:
        now = time.time()
        written = 0
        with self._lock:
            for key, (values, event_ts) in rows.items():
                held = self.rows.get((view, key))
                if held is not None and held.event_ts > event_ts:
                    continue
                self.rows[(view, key)] = Row(dict(values), float(event_ts), now)
                written += 1
        return written

    def apply(self, view: str, events: Sequence[Event]) -> int:
        now = time.time()
        applied = 0
        with self._lock:
            for event in events:
                if self.seen.get((view, event.id), 0.0) > now:
                    continue
                self.seen[(view, event.id)] = now + DEDUPE_TTL_S
                if event.ops:  # no op, no state: as in Redis, which keeps no empty hash
                    state = self.states.setdefault((view, event.key), {})
                    for op in event.ops:
                        apply(state, op)
                applied += 1
        return applied

    def read(self, lookups: Sequence[Lookup]) -> list[Found]:
        with self._lock:
            out: list[Found] = []
            for lookup in lookups:
                if lookup.kind == "rows":
                    out.append([self.rows.get((lookup.view, k)) for k in lookup.keys])
                else:
                    found = [self.states.get((lookup.view, k)) for k in lookup.keys]
                    out.append([dict(s) if s is not None else None for s in found])
            return out

    def delete_view(self, view: str) -> None:
        with self._lock:
            for table in (self.rows, self.states, self.seen):
                for key in [k for k in table if k[0] == view]:
                    del table[key]

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def json_default(value: Any) -> Any:
    """orjson's ``default`` for feature values: numpy arrays (not C-contiguous, which
    orjson does not take as is) become lists, numpy scalars numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def open_store(settings: Settings) -> OnlineStore:
    """The online store ``settings.online_store`` names: ``memory``, ``sqlite`` (a file
    in home) or a ``redis://`` URL."""
    kind = settings.online_store
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from modelport.features.sqlite import SQLiteStore

        return SQLiteStore(settings.online_path)
    if kind.startswith(("redis://", "rediss://", "unix://")):
        from modelport.features.redis import RedisStore

        return RedisStore(kind, timeout_s=settings.feature_timeout_seconds)
    raise InvalidInput(
        f"unknown online store {kind!r}",
        hint="set MODELPORT_ONLINE_STORE to sqlite, memory or a redis:// URL",
    )

"""Event streams: where a stream view's events come from, behind one small Protocol.

Two sources, one interface (`EventSource`): `RedisStreamSource` reads a Redis Stream
through a consumer group, and `QueueSource` reads an in-process queue of a
`QueueBroker`, the embedded default when no Redis is configured.

Delivery is at least once. A source hands out batches of `Message`; the consumer acks
them only once its online store's ``apply`` has returned, so a crash between the two
redelivers the batch and the store's per-id dedupe (see `modelport.features.online`)
keeps every event counted once. On start a Redis source first re-reads this consumer's
pending entries (delivered before a crash, never acked), then new ones.

An entry holds an event in one of two forms (`decode` reads both):

- ``json``: one field of that name holding the event as a JSON object. `publish`
  writes this form: a number stays a number, and a reader parses two strings per
  entry instead of two per field (twice the events/s in Python, see
  bench/stream_bench.py);
- field per value, as most producers write (``XADD s * user_id u1 amount 12.5``): each
  value is read as JSON text when it is (``12.5`` a number), else as a string.

Example::

    publish("redis://127.0.0.1:6379", "transactions", {"user_id": "u1", "amount": 5, "ts": t})
    source = RedisStreamSource("redis://127.0.0.1:6379", "transactions", "stats", "host-1")
    for message in source.read(count=500, block_ms=1000):
        ...
    source.ack([m.id for m in batch])
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from modelport.errors import InvalidInput, Unavailable

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class Message:
    """One stream entry: its id in the stream and its fields (decoded, see `decode`)."""

    id: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Backlog:
    """How far a consumer group is behind: ``lag`` entries not yet delivered to it
    (None when the stream cannot tell), ``pending`` delivered but not acknowledged."""

    lag: int | None
    pending: int
    length: int
    last_delivered: str | None = None
    consumers: int = 0


class EventSource(Protocol):
    """A stream read by one consumer of a group, acknowledged per message."""

    stream: str

    def read(self, count: int, block_ms: int | None) -> list[Message]:
        """Up to ``count`` messages: first those delivered before and never acked, then
        new ones, waiting up to ``block_ms`` for one (None: do not wait)."""
        ...

    def ack(self, ids: Sequence[str]) -> None:
        """Mark ``ids`` done: they will not be delivered to this group again."""
        ...

    def backlog(self) -> Backlog: ...

    def close(self) -> None: ...


#: The field of an entry that holds the whole event as a JSON object.
ENVELOPE = "json"


def default_group(view: str) -> str:
    """The consumer group of a view when none is named: one per view, so two views on
    one stream each see every event."""
    return f"modelport.{view}"


def encode(fields: Mapping[str, Any]) -> dict[str, bytes]:
    """An event as `publish` puts it in a stream entry: one ``json`` field."""
    return {ENVELOPE: orjson.dumps(fields, option=orjson.OPT_NON_STR_KEYS)}


def decode(raw: Mapping[str, str | bytes]) -> dict[str, Any]:
    """A stream entry's event: the object in its lone ``json`` field, or its fields,
    each value parsed as JSON when it is (text that is not JSON stays text)."""
    if len(raw) == 1 and ENVELOPE in raw:
        try:
            event = orjson.loads(raw[ENVELOPE])
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict):
            return event
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = orjson.loads(v)
        except orjson.JSONDecodeError:
            out[k] = v
    return out


# -- Redis Streams -------------------------------------------------------------------


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that returns text."""
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the extra is part of `all`
        raise Unavailable(
            "Redis streams need the redis package", hint="pip install 'modelport[redis]'"
        ) from exc
    return redis.Redis.from_url(url, decode_responses=True)


def publish(url: str, stream: str, fields: Mapping[str, Any]) -> str:
    """XADD one event to ``stream`` at ``url``; its message id."""
    client = connect(url)
    try:
        return str(client.xadd(stream, encode(fields)))  # type: ignore[arg-type]
    finally:
        client.close()


def publish_many(url: str, stream: str, events: Iterable[Mapping[str, Any]]) -> int:
    """XADD ``events`` in order, pipelined by 1,000; how many were added."""
    client = connect(url)
    added = 0
    try:
        pipe = client.pipeline(transaction=False)
        for fields in events:
            pipe.xadd(stream, encode(fields))  # type: ignore[arg-type]
            added += 1
            if added % 1000 == 0:
                pipe.execute()
        pipe.execute()
        return added
    finally:
        client.close()


def group_backlog(url: str, stream: str, group: str) -> Backlog | None:
    """How far ``group`` is behind on ``stream`` (None: no such group), creating
    nothing."""
    client = connect(url)
    try:
        return _backlog(client, stream, group)
    finally:
        client.close()


def group_activity(url: str, stream: str, group: str) -> tuple[str | None, float | None]:
    """The id of ``stream``'s newest entry (None: nothing was ever added) and the seconds
    since a consumer of ``group`` last read (None: no consumer; Redis before 7.2 counts
    only reads that were handed entries), creating nothing. A stream id starts with the
    milliseconds at which the entry was added."""
    import redis

    client = connect(url)
    try:
        try:
            newest = str(client.xinfo_stream(stream).get("last-generated-id") or "0-0")
        except redis.ResponseError:  # no such stream
            return None, None
        try:
            consumers: Any = client.xinfo_consumers(stream, group)
        except redis.ResponseError:  # no such group
            consumers = []
        idle = min((int(c["idle"]) for c in consumers), default=None)
        return (None if newest == "0-0" else newest), (None if idle is None else idle / 1000)
    finally:
        client.close()


def _backlog(client: redis.Redis, stream: str, group: str) -> Backlog | None:
    import redis

    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream
        return None
    length = int(client.xlen(stream))
    for g in groups:
        if g["name"] == group:
            lag = g.get("lag")
            return Backlog(
                lag=None if lag is None else int(lag),
                pending=int(g["pending"]),
                length=length,
                last_delivered=g.get("last-delivered-id"),
                consumers=int(g["consumers"]),
            )
    return None


class RedisStreamSource:
    """``stream`` at ``url`` read as ``consumer`` of ``group`` (created, with the stream,
    if missing, from the stream's first entry: a new group backfills)."""

    def __init__(
        self, url: str, stream: str, group: str, consumer: str, *, start: str = "0"
    ) -> None:
        import redis

        self.url, self.stream, self.group, self.consumer = url, stream, group, consumer
        self.client = connect(url)
        self._cursor: str | None = "0"  # re-reading our pending entries until None
        try:
            self.client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except redis.ConnectionError as exc:
            raise Unavailable(f"cannot reach the event stream at {url}: {exc}") from exc

    def read(self, count: int, block_ms: int | None) -> list[Message]:
        if self._cursor is not None:
            messages = self._read(self._cursor, count, None)
            if messages:
                self._cursor = messages[-1].id
                return messages
            self._cursor = None  # every pending entry re-read: on to new ones
        return self._read(">", count, block_ms)

    def _read(self, start: str, count: int, block_ms: int | None) -> list[Message]:
        reply: Any = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms or None
        )
        if not reply:
            return []
        # RESP2: [[stream, entries]]; RESP3: {stream: [entries]}
        entries = reply[self.stream][0] if isinstance(reply, dict) else reply[0][1]
        # a pending entry deleted from the stream comes back with no fields
        return [Message(mid, decode(raw or {})) for mid, raw in entries]

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)

    def backlog(self) -> Backlog:
        found = _backlog(self.client, self.stream, self.group)
        if found is None:  # the stream was deleted under us
            return Backlog(lag=0, pending=0, length=0)
        return found

    def delete(self) -> None:
        """Drop the group (the stream's entries stay)."""
        self.client.xgroup_destroy(self.stream, self.group)

    def close(self) -> None:
        self.client.close()


# -- in process ----------------------------------------------------------------------


class _Stream:
    def __init__(self) -> None:
        self.entries: list[Message] = []
        self.delivered: dict[str, int] = {}  # group -> entries delivered
        self.pending: dict[str, dict[str, Message]] = {}  # group -> unacked


class QueueBroker:
    """Named in-process streams, for the embedded default: the same process publishes
    and processes. Consumer groups work as in Redis (each group sees every entry once,
    acked per message); nothing survives the process."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count(1)
        self._changed = threading.Condition()

    def publish(self, stream: str, fields: Mapping[str, Any]) -> str:
        """Append an event to ``stream``; its message id."""
        with self._changed:
            mid = f"{int(time.time() * 1000)}-{next(self._ids)}"
            self._stream(stream).entries.append(Message(mid, dict(fields)))
            self._changed.notify_all()
            return mid

    def source(self, stream: str, group: str = "default") -> QueueSource:
        return QueueSource(self, stream, group)

    def _stream(self, name: str) -> _Stream:
        return self._streams.setdefault(name, _Stream())


class QueueSource:
    """``stream`` of a `QueueBroker` read as ``group``: `EventSource` in process."""

    def __init__(self, broker: QueueBroker, stream: str, group: str = "default") -> None:
        self.broker, self.stream, self.group = broker, stream, group
        with broker._changed:
            s = broker._stream(stream)
            s.delivered.setdefault(group, 0)
            s.pending.setdefault(group, {})

    def publish(self, fields: Mapping[str, Any]) -> str:
        """Append an event to this source's stream."""
        return self.broker.publish(self.stream, fields)

    def read(self, count: int, block_ms: int | None) -> list[Message]:
        deadline = time.monotonic() + (block_ms or 0) / 1000
        with self.broker._changed:
            s = self.broker._stream(self.stream)
            while s.delivered[self.group] >= len(s.entries):
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.broker._changed.wait(left)
            start = s.delivered[self.group]
            batch = s.entries[start : start + count]
            s.delivered[self.group] = start + len(batch)
            s.pending[self.group].update((m.id, m) for m in batch)
            return batch

    def ack(self, ids: Sequence[str]) -> None:
        with self.broker._changed:
            pending = self.broker._stream(self.stream).pending[self.group]
            for mid in ids:
                pending.pop(mid, None)

    def backlog(self) -> Backlog:
        with self.broker._changed:
            s = self.broker._stream(self.stream)
            length = len(s.entries)
            return Backlog(
                lag=length - s.delivered[self.group],
                pending=len(s.pending[self.group]),
                length=length,
                consumers=1,
            )

    def close(self) -> None:
        return None


def stream_url(online_store: str, stream_url: str | None) -> str | None:
    """Where the event streams are: ``stream_url``, else the online store's Redis, else
    None (the in-process queue)."""
    if stream_url:
        return stream_url
    if online_store.startswith(("redis://", "rediss://", "unix://")):
        return online_store
    return None


def require_url(online_store: str, url: str | None) -> str:
    """The Redis URL of the streams, for a command in its own process."""
    found = stream_url(online_store, url)
    if found is None:
        raise InvalidInput(
            "no event stream to read: the in-process queue is only reachable from the "
            "server's own process",
            hint="set MODELPORT_STREAM_URL (or MODELPORT_ONLINE_STORE) to a redis:// URL",
        )
    return found


#: A consumer group whose readers delivered nothing for this long while events wait
#: is taken as not running (a running processor reads again within its 1 s block).
STALE_READER_S = 10.0


def stream_status(
    url: str | None,
    view: str,
    stream: str,
    group: str | None = None,
    *,
    stale_after_s: float = STALE_READER_S,
) -> dict[str, Any]:
    """Stream view ``view``'s consumer group on ``stream`` at ``url`` (None: no Redis
    stream configured): backlog, the times its newest and its last delivered events were
    added, and the processor's ``state``: ``reading`` (events wait, a consumer read in
    the last ``stale_after_s``), ``caught_up``, ``stopped`` (events wait, nobody reads),
    ``not_started`` (no group) or ``no_stream``."""
    import redis

    chosen = group or default_group(view)  # `modelport stream run`'s group
    body: dict[str, Any] = {"view": view, "stream": stream, "group": chosen}
    if url is None:
        return body | {
            "state": "no_stream",
            "message": "no Redis stream is configured: events go to the server's in-process queue",
        }
    try:
        backlog = group_backlog(url, stream, chosen)
        newest, idle_s = group_activity(url, stream, chosen)
    except redis.ConnectionError as exc:
        raise Unavailable(
            f"cannot reach the event stream at {url}: {exc}",
            hint="check MODELPORT_STREAM_URL (or MODELPORT_ONLINE_STORE) and that Redis runs",
        ) from None
    body |= {"newest_event_at": _id_time(newest), "reader_idle_s": idle_s}
    if backlog is None:
        return body | {
            "state": "not_started",
            "message": f"stream processor not running: {stream} has no consumer group {chosen}",
            "hint": f"start it: modelport stream run {view}",
        }
    body |= {
        "lag": backlog.lag,
        "pending": backlog.pending,
        "length": backlog.length,
        "consumers": backlog.consumers,
        "last_delivered_at": _id_time(backlog.last_delivered),
    }
    behind = backlog.lag is None or backlog.lag > 0 or backlog.pending > 0
    stale = idle_s is None or idle_s > stale_after_s
    if behind and stale:
        return body | {
            "state": "stopped",
            "message": "stream processor not running: events wait and no consumer of "
            f"{chosen} has read" + ("" if idle_s is None else f" for {idle_s:.0f}s"),
            "hint": f"start it: modelport stream run {view}",
        }
    return body | {"state": "reading" if behind else "caught_up"}


def _id_time(stream_id: str | None) -> str | None:
    """When a Redis stream entry was added: its id's milliseconds, as ISO time."""
    if not stream_id or stream_id == "0-0":
        return None
    return datetime.fromtimestamp(int(stream_id.split("-")[0]) / 1000, UTC).isoformat()

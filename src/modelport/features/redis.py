"""The Redis online store: features shared by every server, read in one round trip.

Keys, per view::

    mp:f:{view}:r:{key}   a row: {"t": event time, "w": written time, "v": values} (JSON)
    mp:f:{view}:s:{key}   an aggregation state: a hash with the `aggregates` fields
    mp:f:{view}:e:{n}     the event ids applied in dedupe window n (DEDUPE_TTL_S long;
                          windows n and n-1 are checked, so an id is remembered for
                          one to two windows)

`write` and `apply` are Lua scripts, one EVALSHA per call: a row older than the one held
is left alone, and each event is checked against its id and applied to its state hash
with the steps of `modelport.features.aggregates.apply`, atomically. `read` pipelines
one MGET for every row and one script call that HGETALLs every state and answers in one
JSON text (a state has hundreds of fields: parsing them as separate replies in Python
cost 4x the time). Sockets time out after ``timeout_s`` and nothing is retried on the
way, so an unreachable Redis costs a call at most about that long and raises
`modelport.errors.Unavailable`; the next call connects again. A server gives its
store a circuit breaker (`use_breaker`, `modelport.breaker`): after three such failures
in a row calls fail at once, without a timeout each, and one call every two seconds
tries Redis again.
The scripts touch keys they are not passed (ids and states named in their
arguments): a single Redis, not a cluster.

Example::

    store = RedisStore("redis://127.0.0.1:6379/0", timeout_s=0.25)
    store.apply(stats_view, [Event("e-1", "u1", ops(stats_view, {"amount": 5}, ts))])
    [[state]] = store.read([Lookup("user_stats", "state", ["u1"])])
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from modelport.breaker import CircuitBreaker, Observer
from modelport.errors import Unavailable
from modelport.features.aggregates import State
from modelport.features.online import DEDUPE_TTL_S, Event, Found, Lookup, Row, json_default

#: Latest wins by event time. KEYS: row keys; ARGV: event time, row JSON, per key.
#: The held time is read from the JSON's head ({"t": ...}, as `write` puts it first)
#: rather than by decoding a row that may hold large vectors.
_WRITE = """
local written = 0
for i = 1, #KEYS do
  local t = tonumber(ARGV[2 * i - 1])
  local old = redis.call('GET', KEYS[i])
  local held = nil
  if old then
    held = tonumber(string.match(old, '^{"t":([^,}]+)'))
    if held == nil then held = tonumber(cjson.decode(old)['t']) end
  end
  if held == nil or held <= t then
    redis.call('SET', KEYS[i], ARGV[2 * i])
    written = written + 1
  end
end
return written
"""

#: Apply events once each. ARGV: the view's key prefix, the id TTL in ms, the events as
#: JSON, one flat list each: [id, key, a, slot, bucket, value, ts, a, slot, ...] with
#: ``a`` an index into the last ARGV, the batch's [[aggregation, function], ...] (flat
#: lists and short numbers: cjson's decoding is most of a batch's time).
#: ``value`` is a number (or its text for inf/nan) for sum/mean/min/max, the JSON text of
#: the value for last (stored as is, so it is Python's text), and the JSON text of the
#: canonical text for distinct_count; ``d`` is kept as Python's json.dumps writes a list
#: (``["a", "b"]``), so a state is the same field for field as `aggregates.apply` makes.
#: An element is found by its text between ``[`` or a space and ``,`` or ``]``: inside
#: an element a quote is always escaped, so those can only be its bounds.
#: The fields an event needs are read with one HMGET (once per batch and state) and the
#: changes written back at the end, one HDEL and HSET per state touched.
_APPLY = r"""
local prefix, window, ttl_s = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5])
local events, aggs = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])
local NEED = {sum = 's', mean = 's', min = 'lo', max = 'hi', last = 'lt', distinct_count = 'd'}
local PARTS = {'n', 's', 'lo', 'hi', 'l', 'lt', 'd'}
local cache, dirty, gone, order = {}, {}, {}, {}  -- per state key: field -> value/false
local names = {}  -- per aggregation and slot: its field names

local function fields(a, slot)
  local by = names[a]
  if not by then
    by = {}
    names[a] = by
  end
  local nm = by[slot]
  if not nm then
    local p, need = aggs[a][1] .. ':' .. slot .. ':', NEED[aggs[a][2]]
    nm = {p = p, b = p .. 'b', n = p .. 'n', l = p .. 'l', f = aggs[a][2]}
    if need then nm.x = p .. need end
    by[slot] = nm
  end
  return nm
end

local function contains(d, e)
  for _, left in ipairs({'[', ' '}) do
    for _, right in ipairs({',', ']'}) do
      if string.find(d, left .. e .. right, 1, true) then return true end
    end
  end
  return false
end

local function put(c, changed, f, value)
  c[f] = value
  changed[f] = true
end

local function add(c, changed, deleted, nm, bucket, v, ts)
  local held = tonumber(c[nm.b])
  if held and held > bucket then return end
  if held == nil or held < bucket then
    if held ~= nil then
      for _, part in ipairs(PARTS) do
        local field = nm.p .. part
        c[field], changed[field], deleted[field] = false, nil, true
      end
    end
    put(c, changed, nm.b, bucket)
  end
  put(c, changed, nm.n, (tonumber(c[nm.n]) or 0) + 1)
  local f, x = nm.f, nm.x
  if f == 'sum' or f == 'mean' then
    put(c, changed, x, (tonumber(c[x]) or 0) + tonumber(v))
  elseif f == 'min' then
    v = tonumber(v)
    local lo = tonumber(c[x])
    if lo == nil or v < lo then put(c, changed, x, v) end
  elseif f == 'max' then
    v = tonumber(v)
    local hi = tonumber(c[x])
    if hi == nil or v > hi then put(c, changed, x, v) end
  elseif f == 'last' then
    local lt = tonumber(c[x])
    if lt == nil or ts >= lt then
      put(c, changed, nm.l, v)
      put(c, changed, x, ts)
    end
  elseif f == 'distinct_count' then
    local d = c[x]
    if not d then
      put(c, changed, x, '[' .. v .. ']')
    elseif not contains(d, v) then
      put(c, changed, x, string.sub(d, 1, -2) .. ', ' .. v .. ']')
    end
  end
end

local function apply(skey, e)
  local c = cache[skey]
  if not c then
    c = {}
    cache[skey], dirty[skey], gone[skey] = c, {}, {}
    order[#order + 1] = skey
  end
  local want = {}
  for k = 3, #e, 5 do
    local nm = fields(e[k], e[k + 1])
    for _, f in ipairs({nm.b, nm.n, nm.x}) do
      if c[f] == nil then
        c[f] = false
        want[#want + 1] = f
      end
    end
  end
  if #want > 0 then
    local values = redis.call('HMGET', skey, unpack(want))
    for k = 1, #want do c[want[k]] = values[k] end
  end
  local changed, deleted = dirty[skey], gone[skey]
  for k = 3, #e, 5 do
    add(c, changed, deleted, fields(e[k], e[k + 1]), e[k + 2], e[k + 3], e[k + 4])
  end
end

local function chunked(command, skey, args)
  for i = 1, #args, 1000 do
    redis.call(command, skey, unpack(args, i, math.min(i + 999, #args)))
  end
end

-- Applied ids live in one set per dedupe window (this one and the last are checked):
-- two membership calls and one SADD a batch, instead of a key per event.
local current, last = prefix .. 'e:' .. window, prefix .. 'e:' .. (window - 1)
local ids = {}
for i = 1, #events do ids[i] = events[i][1] end
local function members(key)
  local found = {}
  for i = 1, #ids, 1000 do
    local part = redis.call('SMISMEMBER', key, unpack(ids, i, math.min(i + 999, #ids)))
    for k = 1, #part do found[i + k - 1] = part[k] end
  end
  return found
end
local in_current, in_last = members(current), members(last)
local applied, fresh, batch = 0, {}, {}
for i = 1, #events do
  local e = events[i]
  if in_current[i] == 0 and in_last[i] == 0 and not batch[e[1]] then
    batch[e[1]] = true
    fresh[#fresh + 1] = e[1]
    if #e > 2 then apply(prefix .. 's:' .. e[2], e) end
    applied = applied + 1
  end
end
if #fresh > 0 then
  for i = 1, #fresh, 1000 do
    redis.call('SADD', current, unpack(fresh, i, math.min(i + 999, #fresh)))
  end
  redis.call('EXPIRE', current, 2 * ttl_s)
end

for _, skey in ipairs(order) do
  local args = {}
  for f in pairs(gone[skey]) do
    if not dirty[skey][f] then args[#args + 1] = f end
  end
  if #args > 0 then chunked('HDEL', skey, args) end
  args = {}
  for f in pairs(dirty[skey]) do
    args[#args + 1] = f
    args[#args + 1] = cache[skey][f]
  end
  if #args > 0 then chunked('HSET', skey, args) end
end
return applied
"""

#: States for `RedisStore.read`: each hash as a JSON list [field, value, ...] ({} when
#: absent), all in one reply: a few bytes to parse instead of two replies per field.
_STATES = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return cjson.encode(out)
"""

#: Redis errors that mean "not reachable now" (a refused or dropped connection, a
#: timeout, a server still loading its data); others are bugs and propagate.
_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)
_EFFECT = "predictions that need features fail until it is back"
_TEXT_PARTS = frozenset({"l", "d"})
_CONVERTERS: dict[str, Callable[[str], Any]] = {}
_MAX_CONVERTERS = 100_000


def redact(url: str) -> str:
    """``url`` without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class RedisStore:
    """The online store in Redis (see the module docstring)."""

    def __init__(
        self, url: str, timeout_s: float = 0.25, *, breaker: CircuitBreaker | None = None
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        #: fails calls fast while Redis is down (None: every call tries Redis)
        self.breaker = breaker
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a request fails fast; the next call reconnects
            health_check_interval=0,
        )
        self._aclient: aredis.Redis | None = None  # for aread, made on first use
        self._write = self._client.register_script(_WRITE)
        self._apply = self._client.register_script(_APPLY)
        self._states = self._client.register_script(_STATES)

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """One call to Redis: refused at once while the breaker is open, its outcome
        reported to the breaker, an outage raised as `Unavailable` naming the URL."""
        breaker = self.breaker
        if breaker is None:
            with self._reporting():
                yield
            return
        breaker.check()
        try:
            with self._reporting():
                yield
        except Unavailable as exc:
            breaker.failure(exc.__cause__ or exc)
            raise
        except Exception:
            breaker.success()  # Redis answered; the error is the call's own
            raise
        except BaseException:  # cancelled: says nothing about Redis
            breaker.release()
            raise
        breaker.success()

    @contextmanager
    def _reporting(self) -> Iterator[None]:
        try:
            yield
        except _DOWN as exc:
            where = redact(self.url)
            raise Unavailable(
                f"the Redis online store at {where} is unreachable ({exc}); {_EFFECT}",
                hint=f"check it with: redis-cli -u {where} ping",
            ) from exc

    def use_breaker(self, observer: Observer | None = None) -> CircuitBreaker:
        """Fail fast while Redis is down (a server's store: requests must not each wait
        ``timeout_s``); ``observer`` hears the breaker change state."""
        where = redact(self.url)
        self.breaker = CircuitBreaker(
            f"the Redis online store at {where}",
            effect=_EFFECT,
            hint=f"check it with: redis-cli -u {where} ping",
            observer=observer,
        )
        return self.breaker

    @staticmethod
    def _prefix(view: str) -> str:
        return f"mp:f:{view}:"

    def write(self, view: str, rows: Mapping[str, tuple[Mapping[str, Any], float]]) -> int:
        if not rows:
            return 0
        now = time.time()
        prefix = self._prefix(view) + "r:"
        keys: list[str] = []
        args: list[Any] = []
        for key, (values, event_ts) in rows.items():
            ts = float(event_ts)
            body = {"t": ts, "w": now, "v": values}
            keys.append(prefix + key)
            args.append(repr(ts))
            args.append(orjson.dumps(body, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY))
        return self._call(lambda: self._write(keys=keys, args=args))

    def apply(self, view: str, events: Sequence[Event]) -> int:
        if not events:
            return 0
        batch, aggs = _encode(events)
        args: list[str | int | bytes] = [
            self._prefix(view),
            int(time.time() // DEDUPE_TTL_S),  # the dedupe window
            orjson.dumps(batch),
            orjson.dumps(aggs),
            int(DEDUPE_TTL_S),
        ]
        return self._call(lambda: self._apply(args=args))

    def _call(self, fn: Callable[[], Any]) -> int:
        with self._reaching():
            return int(fn())

    def read(self, lookups: Sequence[Lookup]) -> list[Found]:
        row_keys, state_keys = _keys(lookups)
        replies: list[Any] = []
        if row_keys or state_keys:
            with self._reaching():
                try:
                    replies = self._fetch(row_keys, state_keys)
                except redis.exceptions.NoScriptError:  # Redis restarted, or SCRIPT FLUSH
                    self._states.sha = self._client.script_load(_STATES)
                    replies = self._fetch(row_keys, state_keys)
        return _found(lookups, replies, bool(row_keys), bool(state_keys))

    async def aread(self, lookups: Sequence[Lookup]) -> list[Found]:
        """`read` on the running event loop (redis.asyncio): no thread hop for a server.
        The asyncio client is made on first use, on the loop that first calls."""
        row_keys, state_keys = _keys(lookups)
        replies: list[Any] = []
        if row_keys or state_keys:
            with self._reaching():
                client = self._async_client()
                try:
                    replies = await self._afetch(client, row_keys, state_keys)
                except redis.exceptions.NoScriptError:
                    await client.script_load(_STATES)
                    replies = await self._afetch(client, row_keys, state_keys)
        return _found(lookups, replies, bool(row_keys), bool(state_keys))

    def _async_client(self) -> aredis.Redis:
        if self._aclient is None:
            self._aclient = aredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry=AsyncRetry(NoBackoff(), 0),
                health_check_interval=0,
            )
        return self._aclient

    async def _afetch(
        self, client: aredis.Redis, row_keys: list[str], state_keys: list[str]
    ) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            if row_keys:
                pipe.mget(row_keys)
            if state_keys:
                pipe.evalsha(self._states.sha, len(state_keys), *state_keys)
            replies: list[Any] = await pipe.execute()
        return replies

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def _fetch(self, row_keys: list[str], state_keys: list[str]) -> list[Any]:
        """One round trip: MGET of the rows, the states script on the state keys."""
        with self._client.pipeline(transaction=False) as pipe:
            if row_keys:
                pipe.mget(row_keys)
            if state_keys:
                pipe.evalsha(self._states.sha, len(state_keys), *state_keys)
            replies: list[Any] = pipe.execute()
        return replies

    def delete_view(self, view: str) -> None:
        with self._reaching():
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=self._prefix(view) + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)

    def ping(self) -> None:
        with self._reaching():
            self._client.ping()

    def close(self) -> None:
        self._client.close()


def _keys(lookups: Sequence[Lookup]) -> tuple[list[str], list[str]]:
    """The row keys and the state keys of ``lookups``, in order."""
    rows = [f"mp:f:{lk.view}:r:{k}" for lk in lookups if lk.kind == "rows" for k in lk.keys]
    states = [f"mp:f:{lk.view}:s:{k}" for lk in lookups if lk.kind == "state" for k in lk.keys]
    return rows, states


def _found(
    lookups: Sequence[Lookup], replies: list[Any], has_rows: bool, has_states: bool
) -> list[Found]:
    """Each lookup's entries from the pipeline's replies (MGET first, then the states)."""
    raw_rows: list[bytes | None] = replies[0] if has_rows else []
    raw_states: list[Any] = orjson.loads(replies[-1]) if has_states else []
    rows, states = iter(raw_rows), iter(raw_states)
    out: list[Found] = []
    for lookup in lookups:
        if lookup.kind == "rows":
            out.append([_row(next(rows)) for _ in lookup.keys])
        else:
            out.append([_state(next(states)) for _ in lookup.keys])
    return out


def _encode(events: Sequence[Event]) -> tuple[list[list[Any]], list[tuple[str, str]]]:
    """Events as the apply script takes them (see `_APPLY`)."""
    index: dict[tuple[str, str], int] = {}
    batch: list[list[Any]] = []
    for event in events:
        flat: list[Any] = [event.id, event.key]
        for op in event.ops:
            aggregation, function, slot, bucket, value, ts = op.to_list()
            a = index.setdefault((aggregation, function), len(index) + 1)  # Lua counts from 1
            flat += (a, slot, bucket, _value(function, value), ts)
        batch.append(flat)
    return batch, list(index)


def _value(function: str, value: Any) -> Any:
    if function == "last" or function == "distinct_count":
        return json.dumps(value)
    if value is None:  # count
        return 0
    number = float(value)
    # JSON has no inf or nan: Lua's tonumber reads them from their text.
    return number if math.isfinite(number) else repr(number)


def _row(raw: bytes | None) -> Row | None:
    if raw is None:
        return None
    body = orjson.loads(raw)
    return Row(body["v"], float(body["t"]), float(body["w"]))


def _state(flat: list[str]) -> State | None:
    """A state hash as `aggregates` keeps it: ``b`` an int, ``l`` and ``d`` text, the
    rest floats. An empty hash is an absent state (Redis keeps no empty hash)."""
    if not flat:
        return None
    get = _CONVERTERS.get
    pairs = zip(flat[::2], flat[1::2], strict=True)
    return {name: (get(name) or _converter(name))(value) for name, value in pairs}


def _bucket(text: str) -> int:
    return int(float(text))


def _converter(name: str) -> Callable[[str], Any]:
    """How a field's text becomes its value, by its part; remembered per field name,
    since the same few names come back on every read."""
    part = name[name.rfind(":") + 1 :]
    convert: Callable[[str], Any] = (
        str if part in _TEXT_PARTS else _bucket if part == "b" else float
    )
    if len(_CONVERTERS) >= _MAX_CONVERTERS:
        _CONVERTERS.clear()
    _CONVERTERS[name] = convert
    return convert

"""The SQLite online store: one file shared by the server's processes and the CLI.

Three tables: ``feature_rows`` (a batch or push view's values per entity, JSON, with
the event time they were true at), ``feature_states`` (a stream view's aggregation
state per entity, the `modelport.features.aggregates` mapping as JSON) and
``feature_seen`` (applied event ids, until they expire). The file is in WAL mode with a
busy timeout, so several processes read while one writes; each thread gets its own
connection. Writes commit with ``synchronous=FULL``: a call has reached the disk when
it returns.

Example::

    store = SQLiteStore(Path(".modelport/online.db"))
    store.write("user_profile", {"u1": ({"age": 31.0, "emb": np.ones(4)}, 1_700_000_000.0)})
    [[row]] = store.read([Lookup("user_profile", "rows", ["u1"])])
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from modelport.errors import Unavailable
from modelport.features.aggregates import State, apply
from modelport.features.online import DEDUPE_TTL_S, Event, Found, Lookup, Row, json_default

#: Keys per ``IN (...)`` query, well under SQLite's limit on bound variables.
_CHUNK = 500
#: Expired event ids are purged every this many `SQLiteStore.apply` calls.
_PURGE_EVERY = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_rows (
    view TEXT NOT NULL, key TEXT NOT NULL, "values" TEXT NOT NULL,
    event_ts REAL NOT NULL, written_ts REAL NOT NULL, PRIMARY KEY (view, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feature_states (
    view TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (view, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feature_seen (
    view TEXT NOT NULL, id TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (view, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feature_seen_expires ON feature_seen (expires);
"""

_UPSERT_ROW = """
INSERT INTO feature_rows (view, key, "values", event_ts, written_ts) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (view, key) DO UPDATE SET
    "values" = excluded."values", event_ts = excluded.event_ts, written_ts = excluded.written_ts
WHERE excluded.event_ts >= feature_rows.event_ts
"""


def encode(value: Any) -> str:
    """JSON text of feature values or a state; numpy arrays and scalars become lists
    and numbers. NaN and infinities become null in rows (JSON has neither); a state
    keeps them (stdlib JSON's ``Infinity``), since `aggregates.read` needs numbers."""
    return orjson.dumps(value, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _encode_state(state: State) -> str:
    text = encode(state)
    # orjson writes a non-finite number as null; a state never holds null otherwise.
    return json.dumps(state) if "null" in text else text


def _decode_state(text: str) -> State:
    try:
        state: State = orjson.loads(text)
    except orjson.JSONDecodeError:  # Infinity or NaN, written by _encode_state
        state = json.loads(text)
    return state


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class SQLiteStore:
    """The online store in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._applies = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE
                check_same_thread=False,  # only so that close() can close it
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _unavailable(self, exc: Exception) -> Unavailable:
        return Unavailable(
            f"the SQLite online store {self.path} cannot be used ({exc}); predictions "
            "that need features fail until it can",
            hint="check that the file's folder exists and is writable, and that no other "
            "process holds a write lock for long",
        )

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk I/O
            raise self._unavailable(exc) from exc

    def write(self, view: str, rows: Mapping[str, tuple[Mapping[str, Any], float]]) -> int:
        now = time.time()
        params = [
            (view, key, encode(values), float(event_ts), now)
            for key, (values, event_ts) in rows.items()
        ]
        with self._transaction(write=True) as conn:
            before = conn.total_changes
            conn.executemany(_UPSERT_ROW, params)
            return conn.total_changes - before

    def apply(self, view: str, events: Sequence[Event]) -> int:
        if not events:
            return 0
        now = time.time()
        with self._transaction(write=True) as conn:
            seen = self._seen(conn, view, [e.id for e in events], now)
            keys = sorted({e.key for e in events if e.ops})
            states = self._states(conn, view, keys)
            fresh: list[str] = []
            touched: set[str] = set()
            for event in events:
                if event.id in seen:
                    continue
                seen.add(event.id)
                fresh.append(event.id)
                if event.ops:
                    state = states.setdefault(event.key, {})
                    for op in event.ops:
                        apply(state, op)
                    touched.add(event.key)
            conn.executemany(
                "INSERT OR REPLACE INTO feature_states (view, key, state) VALUES (?, ?, ?)",
                [(view, key, _encode_state(states[key])) for key in touched],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO feature_seen (view, id, expires) VALUES (?, ?, ?)",
                [(view, event_id, now + DEDUPE_TTL_S) for event_id in fresh],
            )
            self._applies += 1
            if self._applies % _PURGE_EVERY == 0:
                conn.execute("DELETE FROM feature_seen WHERE expires <= ?", (now,))
        return len(fresh)

    @staticmethod
    def _seen(conn: sqlite3.Connection, view: str, ids: list[str], now: float) -> set[str]:
        unique = sorted(set(ids))
        found: set[str] = set()
        for chunk in _chunks(unique):
            marks = ",".join("?" * len(chunk))
            found.update(
                event_id
                for (event_id,) in conn.execute(
                    f"SELECT id FROM feature_seen WHERE view = ? AND id IN ({marks}) "
                    "AND expires > ?",
                    (view, *chunk, now),
                )
            )
        return found

    @staticmethod
    def _states(conn: sqlite3.Connection, view: str, keys: Sequence[str]) -> dict[str, State]:
        states: dict[str, State] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            for key, text in conn.execute(
                f"SELECT key, state FROM feature_states WHERE view = ? AND key IN ({marks})",
                (view, *chunk),
            ):
                states[key] = _decode_state(text)
        return states

    def read(self, lookups: Sequence[Lookup]) -> list[Found]:
        out: list[Found] = []
        with self._transaction(write=False) as conn:  # one snapshot for every lookup
            for lookup in lookups:
                keys = list(lookup.keys)
                if lookup.kind == "rows":
                    rows = self._rows(conn, lookup.view, keys)
                    out.append([rows.get(k) for k in keys])
                else:
                    states = self._states(conn, lookup.view, sorted(set(keys)))
                    out.append([states.get(k) for k in keys])
        return out

    @staticmethod
    def _rows(conn: sqlite3.Connection, view: str, keys: list[str]) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        for chunk in _chunks(sorted(set(keys))):
            marks = ",".join("?" * len(chunk))
            for key, text, event_ts, written_ts in conn.execute(
                f'SELECT key, "values", event_ts, written_ts FROM feature_rows '
                f"WHERE view = ? AND key IN ({marks})",
                (view, *chunk),
            ):
                rows[key] = Row(orjson.loads(text), event_ts, written_ts)
        return rows

    def delete_view(self, view: str) -> None:
        with self._transaction(write=True) as conn:
            for table in ("feature_rows", "feature_states", "feature_seen"):
                conn.execute(f"DELETE FROM {table} WHERE view = ?", (view,))

    def ping(self) -> None:
        with self._transaction(write=False) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

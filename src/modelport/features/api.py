"""The Python API of features: register views, materialize them online, push rows,
read online values, and build point-in-time correct training sets.

The CLI (``modelport features ...``) and the HTTP routes (``/v1/features``) are thin
layers over `Features`; the batch work is in `modelport.features.batch`, the online
stores in `modelport.features.online`.

Example::

    client = modelport.Client()
    client.features.apply(view)
    client.features.materialize_incremental("user_profile")
    client.features.online("user_profile", ["u1"])  # {"u1": {"values": {...}, ...}}
    train = client.features.history("user_profile", labels, at_column="ts")
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelport.errors import InvalidInput
from modelport.features.aggregates import read as read_state
from modelport.features.online import Lookup, OnlineStore, Row, open_store
from modelport.features.views import Feature, FeatureView
from modelport.registry.features import FeatureViewStore

if TYPE_CHECKING:
    import pandas as pd

    from modelport.client import Client

Target = Literal["online", "offline", "both"]
TARGETS: tuple[str, ...] = ("online", "offline", "both")
#: Rows handed to the online store per write while materializing.
WRITE_BATCH = 5_000

Moment = datetime | str | float | None


class Features:
    """Feature views of ``client``'s registry, with ``store`` (default: the one its
    settings name, opened on first use) as the online store."""

    def __init__(self, client: Client, store: OnlineStore | None = None) -> None:
        self.client = client
        self.views = FeatureViewStore(client.registry.engine)
        self._store = store

    @property
    def store(self) -> OnlineStore:
        if self._store is None:
            self._store = open_store(self.client.settings)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def offline_dir(self, name: str) -> Path:
        """Where rows pushed offline to view ``name`` are kept."""
        return self.client.settings.home / "features" / name

    # -- views -----------------------------------------------------------------

    def apply(self, view: FeatureView) -> int:
        """Register ``view`` or update it; its revision."""
        return self.views.put(view, actor=self.client.user)

    def get_view(self, name: str) -> FeatureView:
        return self.views.get(name)

    def list_views(self) -> list[FeatureView]:
        return self.views.list()

    def delete_view(self, name: str) -> None:
        """Forget view ``name`` and its online values (rows pushed offline are kept)."""
        self.views.delete(name)
        self.store.delete_view(name)

    # -- materialization ---------------------------------------------------------

    def materialize(self, name: str, start: Moment = None, end: Moment = None) -> dict[str, Any]:
        """Write the latest row per entity with its event time in [start, end) to the
        online store (no start: from the beginning; no end: now). Rows older than what
        the store holds are ignored, so a repeat changes nothing."""
        from modelport.features import batch  # DuckDB: imported on use

        view = self._batch_view(name)
        begin = _moment(start, "start")
        until = _moment(end, "end") or datetime.now(UTC)
        if begin is not None and begin >= until:
            raise InvalidInput(f"the window is empty: start {begin} is not before end {until}")
        latest = batch.latest_per_entity(view, begin, until, offline_dir=self.offline_dir(name))
        ts_column = batch.timestamp_column(view)
        written = 0
        for chunk in latest.to_batches(max_chunksize=WRITE_BATCH):
            rows = {
                row[view.entity]: ({c: row[c] for c in view.columns}, row[ts_column].timestamp())
                for row in chunk.to_pylist()
            }
            written += self.store.write(name, rows)
        return {
            "view": name,
            "start": begin.isoformat() if begin else None,
            "end": until.isoformat(),
            "entities": latest.num_rows,
            "written": written,
        }

    def materialize_incremental(self, name: str, end: Moment = None) -> dict[str, Any]:
        """Materialize from where the last increment ended to ``end`` (default now) and
        record ``end``; the first runs from the beginning. Rows that arrive later with an
        event time before the recorded end are not picked up: `materialize` them."""
        begin = self.views.materialized_until(name)
        until = _moment(end, "end") or datetime.now(UTC)
        if begin is not None and until <= begin:
            return {
                "view": name,
                "start": begin.isoformat(),
                "end": begin.isoformat(),
                "entities": 0,
                "written": 0,
            }
        result = self.materialize(name, begin, until)
        self.views.set_materialized_until(name, until)
        return result

    def _batch_view(self, name: str) -> FeatureView:
        view = self.views.get(name)
        if view.kind == "stream":
            raise InvalidInput(
                f"view {name} aggregates a stream: its values are computed as events "
                "arrive, not materialized",
                hint="materialize a batch or push view",
            )
        return view

    # -- push --------------------------------------------------------------------

    def push(
        self,
        name: str,
        rows: pd.DataFrame | Sequence[Mapping[str, Any]],
        to: Target = "online",
    ) -> dict[str, Any]:
        """Write ``rows`` (the entity key, every feature, and optionally the view's
        timestamp column, else now) to the online store, the offline data (Parquet
        under ``{home}/features/{view}/``, which `history` and `materialize` read),
        or both. Every value is checked against the view first: all rows, or none."""
        from modelport.features import batch  # DuckDB: imported on use

        if to not in TARGETS:
            raise InvalidInput(f"push to {to!r}?", hint=f"push to one of {TARGETS}")
        view = self._batch_view(name)
        records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
        checked = check_rows(view, records, now=time.time())
        result: dict[str, Any] = {"view": name, "rows": len(checked)}
        result |= {"online": None, "offline": None}
        if to in ("offline", "both") and checked:
            path = batch.write_offline(batch.offline_table(view, checked), self.offline_dir(name))
            result["offline"] = str(path)
        if to in ("online", "both"):
            latest: dict[str, tuple[dict[str, Any], float]] = {}
            for key, event_ts, values in checked:
                if key not in latest or latest[key][1] <= event_ts:
                    latest[key] = (values, event_ts)
            result["online"] = self.store.write(name, latest) if latest else 0
        return result

    # -- reads -------------------------------------------------------------------

    def online(self, name: str, keys: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """What the online store holds for each key (None: nothing): ``values``,
        ``event_ts`` and ``written_ts`` (UTC datetimes), ``age_s`` and ``stale`` (older
        than the view's ttl). A stream view's values are its aggregations now."""
        view = self.views.get(name)
        keys = [str(k) for k in keys]
        now = time.time()
        kind: Literal["rows", "state"] = "state" if view.kind == "stream" else "rows"
        (found,) = self.store.read([Lookup(name, kind, keys)])
        out: dict[str, dict[str, Any] | None] = {}
        for key, held in zip(keys, found, strict=True):
            if held is None:
                out[key] = None
            elif isinstance(held, Row):
                age = max(0.0, now - held.event_ts)
                out[key] = {
                    "values": dict(held.values),
                    "event_ts": datetime.fromtimestamp(held.event_ts, UTC),
                    "written_ts": datetime.fromtimestamp(held.written_ts, UTC),
                    "age_s": age,
                    "stale": view.ttl_s is not None and age > view.ttl_s,
                }
            else:
                out[key] = {
                    "values": read_state(view, held, now),
                    "event_ts": None,
                    "written_ts": None,
                    "age_s": None,
                    "stale": False,
                }
        return out

    def history(
        self,
        name: str,
        entities: pd.DataFrame,
        at_column: str = "ts",
        *,
        event_ts_column: str | None = None,
    ) -> pd.DataFrame:
        """``entities`` with view ``name``'s features appended, point-in-time correct:
        each row gets the entity's latest values with an event time at or before its
        ``at_column`` time (from the batch source and rows pushed offline), never later
        ones. ``event_ts_column`` also appends the event time of the values used."""
        from modelport.features import batch  # DuckDB: imported on use

        view = self._batch_view(name)
        return batch.point_in_time(
            view,
            entities,
            at_column,
            offline_dir=self.offline_dir(name),
            event_ts_column=event_ts_column,
        )


def _moment(value: Moment, what: str) -> datetime | None:
    """A window bound: a datetime (naive is UTC), ISO text or a duration back (``7d``),
    or epoch seconds."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        from modelport.monitoring.labels import parse_time

        return parse_time(value)
    return datetime.fromtimestamp(epoch_seconds(value, what), UTC)


# -- pushed rows --------------------------------------------------------------------


def check_rows(
    view: FeatureView, rows: Iterable[Mapping[str, Any]], *, now: float
) -> list[tuple[str, float, dict[str, Any]]]:
    """Pushed rows as (key, event time, values), each value checked against its
    feature's type; a row without the timestamp column is at ``now``."""
    from modelport.features import batch  # DuckDB: imported on use

    ts_column = batch.timestamp_column(view)
    allowed = {view.entity, ts_column, *view.columns}
    features = {f.name: f for f in view.features}
    out: list[tuple[str, float, dict[str, Any]]] = []
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        extra = sorted(set(row) - allowed)
        if extra:
            raise InvalidInput(
                f"{where} has column(s) {extra} that view {view.name} does not have",
                hint=f"its columns are {sorted(allowed)}",
            )
        absent = [c for c in (view.entity, *view.columns) if c not in row]
        if absent:
            raise InvalidInput(
                f"{where} lacks the column(s) {absent} of view {view.name}",
                hint="give the entity key and every feature (null where unknown)",
            )
        key = _plain(row[view.entity])
        if key is None:
            raise InvalidInput(f"{where}.{view.entity} (the entity key) is null")
        stamp = _plain(row.get(ts_column))
        event_ts = now if stamp is None else epoch_seconds(stamp, f"{where}.{ts_column}")
        values = {
            name: check_value(feature, row[name], f"{where}.{name}")
            for name, feature in features.items()
        }
        out.append((str(key), event_ts, values))
    return out


def check_value(feature: Feature, value: Any, where: str) -> Any:
    """``value`` as the feature's type holds it (None for null), or an error naming it."""
    value = _plain(value)
    if value is None:
        return None
    kind = feature.type
    if kind == "vector":
        return _vector(feature, value, where)
    ok = {
        "double": _number(value),
        "long": _number(value) and float(value).is_integer(),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
    }[kind]
    if not ok:
        raise InvalidInput(
            f"{where} is {value!r} ({type(value).__name__}), but the feature is {kind}",
            hint="send a value of the feature's type, or null",
        )
    return float(value) if kind == "double" else int(value) if kind == "long" else value


def _vector(feature: Feature, value: Any, where: str) -> list[float]:
    if isinstance(value, str):  # a CSV cell: [0.1, 0.2]
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(_number(v) for v in value):
        raise InvalidInput(
            f"{where} must be a list of {feature.dim} numbers",
            hint="send the vector as a JSON list of numbers",
        )
    if len(value) != feature.dim:
        raise InvalidInput(
            f"{where} holds {len(value)} values; vector feature {feature.name!r} has dim "
            f"{feature.dim}",
            hint="send exactly dim numbers",
        )
    return [float(v) for v in value]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as a Python value; NaN, NaT and pd.NA as None."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value


def epoch_seconds(value: Any, where: str) -> float:
    """A time (datetime, ISO 8601 text or epoch seconds; naive is UTC) as epoch seconds."""
    if _number(value):
        return float(value)
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise InvalidInput(
        f"{where} is not a time: {value!r}",
        hint="give ISO 8601 text, a datetime or epoch seconds",
    )

"""Feature views joined onto batch chunks, as online enrichment joins them onto requests.

Without a time column each row gets its entity's latest values as of the run's start
(what ``materialize`` writes online, so what an online request would be enriched
with); with one, each row gets the values as of its own time (point-in-time, as
`Features.history`). Missing and stale values follow the view's policies as online:
``default``, ``null``, or ``error`` (the row is then a bad row, with the reason).
Vector features become one column per element (``emb_0``, ``emb_1``, ...).

A view's rows are read once per `FeatureJoin` (once per worker process): the latest row
per entity, indexed by key, or every row into an in-memory DuckDB table that each
chunk is ASOF-joined against. Memory grows with the view, not with the input.

Example::

    join = FeatureJoin.open(view, offline_dir, at_column=None, now=started)
    columns, bad_rows = join.join(chunk, None)   # {"age": Array, ...}, {row: reason}
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelport.errors import InvalidInput
from modelport.features.enrich import entity_key, output_columns
from modelport.features.views import FeatureView

if TYPE_CHECKING:
    import duckdb


class FeatureJoin:
    """One feature view joined onto chunks by its entity column (see the module)."""

    def __init__(self, view: FeatureView, now: datetime) -> None:
        self.view = view
        self.now = now
        self.columns = output_columns(view)
        self._latest: pa.Table | None = None
        self._index: Any = None
        self._con: duckdb.DuckDBPyConnection | None = None

    @classmethod
    def open(
        cls, view: FeatureView, offline_dir: Path, *, at_column: str | None, now: datetime
    ) -> FeatureJoin:
        from modelport.features import batch

        join = cls(view, now)
        if at_column is None:
            import pandas as pd

            latest = batch.latest_per_entity(view, None, now, offline_dir=offline_dir)
            join._latest = latest
            join._index = pd.Index(latest.column(view.entity).to_numpy(zero_copy_only=False))
        else:
            join._con = _history_table(view, offline_dir)
        return join

    def close(self) -> None:
        if self._con is not None:
            self._con.close()

    def join(
        self, table: pa.Table, at_column: str | None
    ) -> tuple[dict[str, pa.Array], dict[int, str]]:
        """The view's feature columns for ``table``'s rows, and the rows its policies
        reject, with the reason."""
        keys = _key_text(table.column(self.view.entity))
        if self._con is not None and at_column is not None:
            found, age, values, moments = self._as_of(keys, table.column(at_column))
        else:
            found, age, values = self._latest_values(keys)
            moments = None
        return self._policies(keys, found, age, values, moments)

    def _latest_values(self, keys: pa.Array) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array]]:
        from modelport.features.batch import timestamp_column

        assert self._latest is not None
        positions = self._index.get_indexer(keys.to_numpy(zero_copy_only=False))
        found = positions >= 0
        index = pa.array(positions, pa.int64(), mask=~found)
        values = {f.name: self._latest.column(f.name).take(index) for f in self.view.features}
        stamps = self._latest.column(timestamp_column(self.view)).take(index)
        micros = pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False)
        age = self.now.timestamp() - np.where(found, micros, np.nan) / 1e6
        return found, age, values

    def _as_of(
        self, keys: pa.Array, moments: pa.ChunkedArray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, pa.Array], pa.Array]:
        import duckdb

        from modelport.features.batch import quote, timestamp_column

        assert self._con is not None
        view = self.view
        entity = pa.table({"__row": pa.array(np.arange(len(keys))), "__key": keys, "__at": moments})
        at = _time_expr(moments.type)
        ent, ts = quote(view.entity), quote(timestamp_column(view))
        features = ", ".join(f"f.{quote(f.name)}" for f in view.features)
        sql = (
            f"SELECT {features}, epoch_us(f.{ts}) AS __event_us, epoch_us(e.__at) AS __at_us, "
            f"e.__at AS __at FROM (SELECT __row, __key, {at} AS __at FROM entity_rows) e "
            f"ASOF LEFT JOIN feature_rows f ON e.__key = f.{ent} AND e.__at >= f.{ts} "
            "ORDER BY e.__row"
        )
        self._con.register("entity_rows", entity)
        try:
            result = self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise InvalidInput(
                f"the time column could not be read as times: {exc}",
                hint="give timestamps, dates, epoch seconds or ISO 8601 text",
            ) from None
        finally:
            self._con.unregister("entity_rows")
        event = result.column("__event_us").to_numpy(zero_copy_only=False).astype(float)
        at_us = result.column("__at_us").to_numpy(zero_copy_only=False).astype(float)
        found = ~np.isnan(event)
        values = {f.name: result.column(f.name).combine_chunks() for f in view.features}
        return found, (at_us - event) / 1e6, values, result.column("__at").combine_chunks()

    def _policies(
        self,
        keys: pa.Array,
        found: np.ndarray,
        age: np.ndarray,
        values: dict[str, pa.Array],
        moments: pa.Array | None,
    ) -> tuple[dict[str, pa.Array], dict[int, str]]:
        view = self.view
        ttl = view.ttl_s
        stale = found & (age > ttl) if ttl is not None else np.zeros(len(found), bool)
        errors: dict[int, str] = {}
        to_default = np.zeros(len(found), bool)
        to_null = stale.copy() if view.on_stale == "null" else np.zeros(len(found), bool)
        for mask, policy, stale_rows in (
            (~found, view.on_missing, False),
            (stale, view.on_stale, True),
        ):
            if policy == "default":
                to_default |= mask
            elif policy == "error":
                for row in np.flatnonzero(mask).tolist():
                    errors.setdefault(row, self._policy_error(row, keys, age, moments, stale_rows))
        out: dict[str, pa.Array] = {}
        for feature in view.features:
            column = values[feature.name]
            if feature.type == "vector":
                default = list(feature.default) if feature.default is not None else None
                for i in range(feature.dim or 0):
                    element = (
                        pc.list_element(column, i) if len(column) else pa.array([], pa.float64())
                    )
                    value = default[i] if default is not None else None
                    out[f"{feature.name}_{i}"] = _replace(element, to_null, to_default, value)
            else:
                out[feature.name] = _replace(column, to_null, to_default, feature.default)
        return out, errors

    def _policy_error(
        self, row: int, keys: pa.Array, age: np.ndarray, moments: pa.Array | None, stale: bool
    ) -> str:
        view = self.view
        key = keys[row].as_py()
        if stale:
            reason = (
                f"features of {view.name!r} for {view.entity}={key!r} are stale: "
                f"{age[row]:.0f}s old, the view's ttl is {view.ttl_s:.0f}s"
            )
        else:
            when = f" at or before {moments[row].as_py()}" if moments is not None else ""
            reason = f"feature view {view.name!r} has no values for {view.entity}={key!r}{when}"
        return reason


def batch_view(view: FeatureView) -> FeatureView:
    """``view``, when a batch job can join it (a stream view's values exist only online)."""
    if view.kind == "stream":
        raise InvalidInput(
            f"feature view {view.name!r} aggregates a stream: its values exist only online",
            hint="join batch or push views in batch jobs",
        )
    return view


def _history_table(view: FeatureView, offline_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB table ``feature_rows`` of the view's rows, one per (entity,
    event time), a row pushed offline winning a tie with the source (as history does)."""
    import duckdb

    from modelport.features import batch

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 1")
    pushed = offline_dir.is_dir() and any(offline_dir.glob("*.parquet"))
    every = batch.read_rows(view, offline_dir=offline_dir if pushed else None)
    con.register("every_row", every)
    if pushed and view.kind == "batch":
        con.register("source_rows", batch.read_rows(view))
        rows = (
            "SELECT *, 0 AS __src FROM source_rows UNION ALL SELECT *, 1 AS __src FROM "
            "(SELECT * FROM every_row EXCEPT ALL SELECT * FROM source_rows)"
        )
    else:
        rows = f"SELECT *, {1 if pushed else 0} AS __src FROM every_row"
    ent, ts = batch.quote(view.entity), batch.quote(batch.timestamp_column(view))
    con.execute(
        f"CREATE TABLE feature_rows AS SELECT * EXCLUDE (__src) FROM ({rows}) "
        f"QUALIFY row_number() OVER (PARTITION BY {ent}, {ts} ORDER BY __src DESC) = 1"
    )
    for name in ("every_row", "source_rows"):
        con.unregister(name)
    return con


def _time_expr(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "to_timestamp(CAST(__at AS DOUBLE))"
    return "CAST(__at AS TIMESTAMPTZ)"


def _key_text(column: pa.ChunkedArray) -> pa.Array:
    """Entity keys as the text online stores hold them under (`entity_key`)."""
    column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.string())
    return pa.array([None if v is None else entity_key(v) for v in column.to_pylist()], pa.string())


def _replace(
    column: pa.Array, to_null: np.ndarray, to_default: np.ndarray, default: Any
) -> pa.Array:
    if to_null.any():
        column = pc.if_else(pa.array(to_null), pa.scalar(None, column.type), column)
    if to_default.any():
        column = pc.if_else(pa.array(to_default), pa.scalar(default, column.type), column)
    return column

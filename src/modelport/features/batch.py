"""A view's offline data: its batch source plus the rows pushed offline, checked
against the view, as Arrow tables; the latest row per entity in a time window (what
materialization writes online); and the point-in-time join (what training sets need).

DuckDB does the work, so rows stay columnar until a caller needs Python values:

- a Parquet or CSV ``path`` (a glob, or an object-store URL through DuckDB's httpfs,
  with credentials as DuckDB is configured) is scanned in place;
- a PostgreSQL ``query`` runs on its server with the window and the "latest per
  entity" pushed down (``DISTINCT ON``), so only the rows needed cross the wire;
- pushed rows are Parquet files under the view's offline folder
  (``{home}/features/{view}/``), in the canonical types (`arrow_schema`).

Every source is normalized to one shape: the entity key as text, the timestamp as a
UTC ``TIMESTAMPTZ`` (from a timestamp, a date, epoch seconds or ISO text), each feature
in its declared type. A missing column or a type that cannot hold the feature is an
`InvalidInput` naming the column and the file (or query).

Example::

    latest = latest_per_entity(view, start, end, offline_dir=home / "features" / view.name)
    train = point_in_time(view, entities, "ts")   # one row per entity row, no leakage
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelport.errors import InvalidInput, Unavailable
from modelport.features.views import BatchSource, Feature, FeatureView

if TYPE_CHECKING:
    import pandas as pd

#: The timestamp column of a view without a batch source (a push view).
DEFAULT_TIMESTAMP = "event_ts"

#: DuckDB's integer types, signed and unsigned.
_INTEGERS = {
    u + t for u in ("", "U") for t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
}
_FLOATS = {"FLOAT", "DOUBLE"}
_NULL = '"NULL"'  # DuckDB's type of a column with no values (an empty query result)
_LIST = re.compile(r"^(?P<base>[A-Z]+(?:\(\d+,\s*\d+\))?)\[(?P<size>\d*)\]$")
_SQL_TYPES = {"double": "DOUBLE", "long": "BIGINT", "string": "VARCHAR", "boolean": "BOOLEAN"}
_ARROW_TYPES = {
    "double": pa.float64(),
    "long": pa.int64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "vector": pa.list_(pa.float64()),
}
_PG_NUMBERS = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric


def timestamp_column(view: FeatureView) -> str:
    """The name of the view's event-time column (its source's, else ``event_ts``)."""
    if isinstance(view.source, BatchSource):
        return view.source.timestamp_column
    return DEFAULT_TIMESTAMP


def arrow_schema(view: FeatureView) -> pa.Schema:
    """The canonical columns of a view's rows: key, event time, features."""
    return pa.schema(
        [
            pa.field(view.entity, pa.string()),
            pa.field(timestamp_column(view), pa.timestamp("us", tz="UTC")),
            *(pa.field(f.name, _ARROW_TYPES[f.type]) for f in view.features),
        ]
    )


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _moment(value: datetime) -> str:
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"TIMESTAMPTZ {_literal(moment.isoformat())}"


# -- reading ---------------------------------------------------------------------


def read_rows(
    view: FeatureView,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    offline_dir: Path | None = None,
) -> pa.Table:
    """Every row of the view with its event time in [start, end), checked and in the
    canonical types (`arrow_schema`), ordered by key and time."""
    with _connect() as con:
        _load(con, view, offline_dir, start=start, end=end)
        ent, ts = quote(view.entity), quote(timestamp_column(view))
        sql = f"SELECT * FROM feature_rows WHERE {_window(view, start, end)} ORDER BY {ent}, {ts}"
        return _checked(view, _run(con, sql, view), offline_dir)


def latest_per_entity(
    view: FeatureView,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    offline_dir: Path | None = None,
) -> pa.Table:
    """The last row of each entity with its event time in [start, end) (no bound where
    None), from the batch source and the pushed offline rows; a pushed row wins a tie."""
    with _connect() as con:
        _load(con, view, offline_dir, start=start, end=end, latest=True)
        ent, ts = quote(view.entity), quote(timestamp_column(view))
        sql = (
            f"SELECT * FROM feature_rows WHERE {_window(view, start, end)} "
            f"QUALIFY row_number() OVER (PARTITION BY {ent} ORDER BY {ts} DESC, __src DESC) = 1 "
            f"ORDER BY {ent}"
        )
        return _checked(view, _run(con, sql, view), offline_dir)


def point_in_time(
    view: FeatureView,
    entities: pd.DataFrame,
    at_column: str,
    *,
    offline_dir: Path | None = None,
    event_ts_column: str | None = None,
) -> pd.DataFrame:
    """``entities`` with the view's features appended: for each row, the values of the
    entity's latest feature row whose event time is at or before the row's
    ``at_column`` time, never a later one (null where there is none). Rows keep their
    order and index; several rows per entity are fine. ``event_ts_column`` also appends
    the matched row's event time."""
    import numpy as np
    import pandas as pd

    _check_entities(view, entities, at_column, event_ts_column)
    keys = pd.DataFrame(
        {
            "__row": np.arange(len(entities)),
            "__key": entities[view.entity].reset_index(drop=True),
            "__at": entities[at_column].reset_index(drop=True),
        }
    )
    with _connect() as con:
        con.register("entity_raw", keys)
        at = _timestamp_expr(_types(con, "entity_raw")["__at"], "__at", "the entity rows")
        con.execute(
            "CREATE TEMP TABLE entity_rows AS SELECT __row, CAST(__key AS VARCHAR) AS __key, "
            f"{at} AS __at FROM entity_raw"
        )
        wanted, until = None, None
        if isinstance(view.source, BatchSource) and view.source.query is not None:
            # Only the entities and times asked about leave PostgreSQL.
            bounds = con.execute(
                "SELECT list(DISTINCT __key), max(__at) FROM entity_rows"
            ).fetchone()
            wanted, until = bounds if bounds is not None else (None, None)
            wanted = wanted or []
        _load(con, view, offline_dir, keys=wanted, until=until)
        ent, ts = quote(view.entity), quote(timestamp_column(view))
        features = ", ".join(f"f.{quote(c)}" for c in view.columns)
        sql = (
            f"WITH rows AS (SELECT * FROM feature_rows WHERE {ent} IS NOT NULL "
            f"AND {ts} IS NOT NULL QUALIFY row_number() OVER "
            f"(PARTITION BY {ent}, {ts} ORDER BY __src DESC) = 1) "
            f"SELECT e.__row, {features}, f.{ts}, f.__src FROM entity_rows e "
            f"ASOF LEFT JOIN rows f ON e.__key = f.{ent} AND e.__at >= f.{ts} ORDER BY e.__row"
        )
        found = _run(con, sql, view)
    found = _checked(view, found, offline_dir)
    out = entities.copy()
    for column in view.columns:
        out[column] = found.column(column).to_pandas().to_numpy()
    if event_ts_column is not None:
        out[event_ts_column] = found.column(timestamp_column(view)).to_pandas().to_numpy()
    return out


def _run(con: duckdb.DuckDBPyConnection, sql: str, view: FeatureView) -> pa.Table:
    """The result of ``sql`` over ``feature_rows``; a value that does not convert (text
    that is no vector or time) is an `InvalidInput` with DuckDB's words, which name it."""
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        where = _where(view) if isinstance(view.source, BatchSource) else f"view {view.name}"
        raise InvalidInput(
            f"{where}: could not read the rows: {exc}",
            hint="fix the values, or the feature's type in the view",
        ) from None


def _check_entities(
    view: FeatureView, entities: pd.DataFrame, at_column: str, event_ts_column: str | None
) -> None:
    for column, what in ((view.entity, "the view's entity key"), (at_column, "the time column")):
        if column not in entities.columns:
            raise InvalidInput(
                f"the entity rows have no column {column!r} ({what})",
                hint=f"give a frame with {view.entity!r} and {at_column!r} columns",
            )
    taken = [c for c in (*view.columns, event_ts_column) if c in entities.columns]
    if taken:
        raise InvalidInput(
            f"the entity rows already have the column(s) {taken} that view {view.name} adds",
            hint="rename or drop them before the join",
        )


# -- sources -----------------------------------------------------------------------


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _load(
    con: duckdb.DuckDBPyConnection,
    view: FeatureView,
    offline_dir: Path | None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    latest: bool = False,
    keys: Sequence[str] | None = None,
    until: datetime | None = None,
) -> None:
    """Define the view ``feature_rows``: the source's and the offline rows, normalized,
    with ``__src`` (0: source, 1: pushed). A query source gets the filters pushed down."""
    parts: list[str] = []
    source = view.source
    if isinstance(source, BatchSource):
        if source.path is not None:
            _scan(con, "source_raw", source.path, csv=_is_csv(source.path))
        else:
            table = _query(
                view, source, start=start, end=end, latest=latest, keys=keys, until=until
            )
            con.register("source_raw", table)
        parts.append(_normalized(con, view, "source_raw", _where(view), 0, lenient=False))
    files = sorted(offline_dir.glob("*.parquet")) if offline_dir is not None else []
    if offline_dir is not None and files:
        _scan(con, "offline_raw", str(offline_dir / "*.parquet"), csv=False)
        parts.append(_normalized(con, view, "offline_raw", str(offline_dir), 1, lenient=True))
    if not parts:
        columns = ", ".join(
            f"CAST(NULL AS {_sql_type(f)}) AS {quote(f.name)}" for f in view.features
        )
        parts.append(
            f"SELECT CAST(NULL AS VARCHAR) AS {quote(view.entity)}, CAST(NULL AS TIMESTAMPTZ) "
            f"AS {quote(timestamp_column(view))}, {columns}, 0 AS __src WHERE false"
        )
    con.execute("CREATE TEMP VIEW feature_rows AS " + " UNION ALL BY NAME ".join(parts))


def _is_csv(path: str) -> bool:
    return path.lower().rstrip("*").endswith((".csv", ".csv.gz", ".tsv"))


def _scan(con: duckdb.DuckDBPyConnection, name: str, path: str, *, csv: bool) -> None:
    if "://" in path and not path.startswith("file://"):
        try:
            con.execute("LOAD httpfs")
        except duckdb.Error as exc:
            raise Unavailable(
                f"cannot read {path}: DuckDB's httpfs extension is not available ({exc})",
                hint="install it once where the server runs: python -c "
                "\"import duckdb; duckdb.sql('INSTALL httpfs')\"",
            ) from None
    reader = (
        f"read_csv({_literal(path)}, header = true)"
        if csv
        else f"read_parquet({_literal(path)}, union_by_name = true)"
    )
    try:
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {reader}")
    except duckdb.Error as exc:
        raise InvalidInput(f"could not read {path}: {exc}", hint="check the path") from None


def _where(view: FeatureView) -> str:
    source = view.source
    assert isinstance(source, BatchSource)
    return source.path if source.path is not None else f"the query of view {view.name}"


def _types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.sql(f"DESCRIBE {relation}").fetchall()}


def _normalized(
    con: duckdb.DuckDBPyConnection,
    view: FeatureView,
    relation: str,
    where: str,
    src: int,
    *,
    lenient: bool,
) -> str:
    """SELECT of ``relation`` in the canonical types; ``lenient``: a missing feature is
    null (offline files pushed before the view gained it)."""
    try:
        types = _types(con, relation)
    except duckdb.Error as exc:
        raise InvalidInput(f"could not read {where}: {exc}") from None
    ts = timestamp_column(view)
    for column in (view.entity, ts):
        if column not in types:
            raise _missing(column, where, types)
    selects = [
        f"CAST({quote(view.entity)} AS VARCHAR) AS {quote(view.entity)}",
        f"{_timestamp_expr(types[ts], ts, where)} AS {quote(ts)}",
    ]
    for feature in view.features:
        if feature.name not in types:
            if not lenient:
                raise _missing(feature.name, where, types)
            selects.append(f"CAST(NULL AS {_sql_type(feature)}) AS {quote(feature.name)}")
            continue
        selects.append(
            f"{_feature_expr(feature, types[feature.name], where)} AS {quote(feature.name)}"
        )
    return f"SELECT {', '.join(selects)}, {src} AS __src FROM {relation}"


def _missing(column: str, where: str, types: Mapping[str, Any]) -> InvalidInput:
    return InvalidInput(
        f"{where} has no column {column!r}",
        hint=f"its columns are {sorted(types)}; fix the source or the view",
    )


def _sql_type(feature: Feature) -> str:
    return "DOUBLE[]" if feature.type == "vector" else _SQL_TYPES[feature.type]


def _timestamp_expr(duck_type: str, column: str, where: str) -> str:
    name = quote(column)
    if duck_type.startswith(("TIMESTAMP", "DATE")) or duck_type in ("VARCHAR", _NULL):
        return f"CAST({name} AS TIMESTAMPTZ)"
    if duck_type in _INTEGERS or duck_type in _FLOATS or duck_type.startswith("DECIMAL"):
        return f"to_timestamp(CAST({name} AS DOUBLE))"
    raise InvalidInput(
        f"{where}: the timestamp column {column!r} is {duck_type}",
        hint="give a timestamp, a date, epoch seconds or ISO 8601 text",
    )


def _feature_expr(feature: Feature, duck_type: str, where: str) -> str:
    """The cast of one source column to the feature's type, or an error naming both."""
    name = quote(feature.name)
    if duck_type == _NULL or _fits(feature, duck_type):
        return f"CAST({name} AS {_sql_type(feature)})"
    expected = f"vector of {feature.dim}" if feature.type == "vector" else feature.type
    raise InvalidInput(
        f"{where}: column {feature.name!r} is {duck_type}, but the view declares it {expected}",
        hint="fix the source's column type, or the feature's type in the view",
    )


def _numeric(duck_type: str) -> bool:
    return duck_type in _INTEGERS or duck_type in _FLOATS or duck_type.startswith("DECIMAL")


def _fits(feature: Feature, duck_type: str) -> bool:
    if feature.type == "double":
        return _numeric(duck_type)
    if feature.type == "long":
        return duck_type in _INTEGERS
    if feature.type == "string":
        return duck_type == "VARCHAR"
    if feature.type == "boolean":
        return duck_type == "BOOLEAN"
    if duck_type == "VARCHAR":  # a CSV holds a vector as text: [0.1, 0.2]
        return True
    match = _LIST.match(duck_type)
    if match is None or not _numeric(match["base"]):
        return False
    return not match["size"] or int(match["size"]) == feature.dim


def _window(view: FeatureView, start: datetime | None, end: datetime | None) -> str:
    ts = quote(timestamp_column(view))
    conditions = [f"{quote(view.entity)} IS NOT NULL", f"{ts} IS NOT NULL"]
    if start is not None:
        conditions.append(f"{ts} >= {_moment(start)}")
    if end is not None:
        conditions.append(f"{ts} < {_moment(end)}")
    return " AND ".join(conditions)


def _checked(view: FeatureView, table: pa.Table, offline_dir: Path | None) -> pa.Table:
    """``table`` without ``__src``, once every vector has the view's dim."""
    for feature in view.features:
        if feature.type != "vector":
            continue
        column = table.column(feature.name)
        lengths = pc.fill_null(pc.list_value_length(column), feature.dim)
        bad = pc.indices_nonzero(pc.not_equal(lengths, feature.dim))
        if len(bad):
            i = bad[0].as_py()
            src = table.column("__src")[i].as_py()
            where = _where(view) if src == 0 else str(offline_dir)
            raise InvalidInput(
                f"{where}: column {feature.name!r} holds a vector of {lengths[i].as_py()} "
                f"values for {view.entity} {table.column(view.entity)[i].as_py()!r}; the view "
                f"declares dim {feature.dim}",
                hint="fix the rows, or the feature's dim in the view",
            )
    return table.drop_columns(["__src"])


# -- PostgreSQL ---------------------------------------------------------------------


def _query(
    view: FeatureView,
    source: BatchSource,
    *,
    start: datetime | None,
    end: datetime | None,
    latest: bool,
    keys: Sequence[str] | None,
    until: datetime | None,
) -> pa.Table:
    """Run the source's query on PostgreSQL, filtered (and reduced to the latest row
    per entity) there; the result as Arrow."""
    import sqlalchemy as sa

    assert source.query is not None and source.url is not None
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", source.url)
    where = _where(view)
    # The query runs as the driver gets it: escape % so parameters can be bound.
    inner = f"({source.query.rstrip().rstrip(';')}) AS q".replace("%", "%%")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TIME ZONE 'UTC'")
            probe = conn.exec_driver_sql(f"SELECT * FROM {inner} LIMIT 0")
            kinds: dict[str, Any] = {d[0]: d[1] for d in probe.cursor.description or []}
            for column in (view.entity, source.timestamp_column):
                if column not in kinds:
                    raise _missing(column, where, kinds)
            sql, params = _pushed_down(
                view, inner, kinds[source.timestamp_column] in _PG_NUMBERS, start, end, keys, until
            )
            if latest:
                ent, ts = quote(view.entity), quote(source.timestamp_column)
                sql = f"SELECT DISTINCT ON ({ent}) * FROM ({sql}) AS w ORDER BY {ent}, {ts} DESC"
            result = conn.exec_driver_sql(sql, params)
            names = list(result.keys())
            rows = result.fetchall()
    except sa.exc.DBAPIError as exc:
        raise InvalidInput(f"{where} failed on PostgreSQL: {exc.orig}") from None
    finally:
        engine.dispose()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table({n: _arrow(values) for n, values in zip(names, columns, strict=True)})


def _pushed_down(
    view: FeatureView,
    inner: str,
    epoch: bool,
    start: datetime | None,
    end: datetime | None,
    keys: Sequence[str] | None,
    until: datetime | None,
) -> tuple[str, dict[str, Any]]:
    ts = quote(timestamp_column(view))
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for name, op, moment in (("start", ">=", start), ("end", "<", end), ("until", "<=", until)):
        if moment is not None:
            conditions.append(f"q.{ts} {op} %({name})s")
            params[name] = moment.timestamp() if epoch else moment
    if keys is not None:
        conditions.append(f"CAST(q.{quote(view.entity)} AS TEXT) = ANY(%(keys)s)")
        params["keys"] = list(keys)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT q.* FROM {inner}{where}", params


def _arrow(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: let the type check name it
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# -- pushed rows --------------------------------------------------------------------


def offline_table(view: FeatureView, rows: Sequence[tuple[str, float, dict[str, Any]]]) -> pa.Table:
    """Checked rows (`check_rows`) as a table in the canonical types."""
    schema = arrow_schema(view)
    data: dict[str, list[Any]] = {
        view.entity: [key for key, _, _ in rows],
        timestamp_column(view): [datetime.fromtimestamp(ts, UTC) for _, ts, _ in rows],
    }
    for name in view.columns:
        data[name] = [values[name] for _, _, values in rows]
    return pa.table(data, schema=schema)


def write_offline(table: pa.Table, offline_dir: Path) -> Path:
    """Append ``table`` to the offline folder as a new Parquet file (written to a
    temporary name first, so a reader never sees half a file)."""
    offline_dir.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    partial = offline_dir / f".{name}.partial"
    pq.write_table(table, partial)
    target = offline_dir / name
    partial.replace(target)
    return target

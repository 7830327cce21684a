"""What a logged prediction is: its columns, its ids, how a batch becomes a table, and
how tables become files.

One request is one `Entry` in the writer's buffer: references to the arrays the data
plane already holds, nothing copied, in a form the garbage collector leaves alone. The
writer turns many entries into one Arrow table: per-request values are repeated per
row, numeric inputs and outputs are concatenated once per column (one call for a whole
numeric block), so the cost is per batch of requests, not per row.

Columns of a logged row (the layout is in ``docs/monitoring.md``)::

    prediction_id, request_id, ts, environment, model, version, variant, status,
    error, latency_s, shadow, in_<input column>..., out_<output name>...,
    stale_features (enriched endpoints only)

Example::

    batch = build_tables(entries, "production", {"fraud-v3": ("fraud", 3)})
    label_text(1.0)  # "1", the same text as label_text(1) and label_text("1")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelport.monitoring import arrays
from modelport.monitoring.traffic import KEY, Summary, attach, concat, summary_of
from modelport.signature import Columns, Table

INPUT_PREFIX = "in_"
OUTPUT_PREFIX = "out_"
TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Columns every prediction row has, whatever the model (the partition columns
#: ``endpoint`` and ``date`` live in the path, not in the files).
BASE_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("request_id", pa.string()),
        ("ts", TIMESTAMP),
        ("environment", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("variant", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("latency_s", pa.float64()),
        ("shadow", pa.bool_()),
    ]
)

#: Columns of a label row (written by `modelport.monitoring.labels`).
LABEL_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("label", pa.string()),
        ("label_value", pa.float64()),
        ("ts", TIMESTAMP),
        ("source", pa.string()),
    ]
)

OK = "ok"
#: A prediction id is the request's id (this many hex characters), "-", the row's index.
REQUEST_ID_CHARS = 24
_ROW_SUFFIXES = [f"-{i}" for i in range(1024)]
SECONDS_PER_DAY = 86_400


def input_column(name: str) -> str:
    """The log column of a signature input: ``amount`` -> ``in_amount``."""
    return INPUT_PREFIX + name


def output_column(name: str) -> str:
    """The log column of a model output: ``probabilities`` -> ``out_probabilities``."""
    return OUTPUT_PREFIX + name


def new_prediction_ids(n: int) -> list[str]:
    """One id per row: 96 random bits for the request, then the row's index."""
    request = os.urandom(REQUEST_ID_CHARS // 2).hex()
    if n <= len(_ROW_SUFFIXES):
        return [request + suffix for suffix in _ROW_SUFFIXES[:n]]
    return [f"{request}-{i}" for i in range(n)]


def request_of(prediction_id: str) -> str:
    """The request part of a prediction id: ``"9f...e1-3"`` -> ``"9f...e1"``."""
    return prediction_id.rpartition("-")[0]


def label_text(value: Any) -> str:
    """The canonical text of a class label or value, so predictions and labels compare.

    ``True`` -> ``"true"``; ``3``, ``3.0`` and ``np.int64(3)`` -> ``"3"``; ``0.25`` ->
    ``"0.25"`` (shortest round-trip form); bytes -> their UTF-8 text; anything else ->
    ``str(value)``.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def date_of_day(day: int) -> str:
    """``YYYY-MM-DD`` of a UTC day number (days since 1970-01-01)."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def day_of(ts: float) -> int:
    """The UTC day number of a Unix timestamp."""
    return int(ts // SECONDS_PER_DAY)


#: Arrays as an entry keeps them: one 1-D array per name or, for the inputs of a
#: numeric `Table`, the 2-D block with one column per name.
Arrays: TypeAlias = np.ndarray | tuple[np.ndarray, ...]

#: The model and version of each variant ("fraud-v3" -> ("fraud", 3)).
Models = Mapping[str, tuple[str, int]]

#: One logged request as buffered: a flat tuple (fields at the indices below) of values
#: the garbage collector does not track (str, float, None, arrays, tuples of those). A
#: tuple holding a dict, a list or another level of tuples stays tracked, and a second
#: of buffered requests would then reach the collector's oldest generation and make full
#: collections, pauses of about 0.1 s on a loaded server, several times more frequent.
#: Output columns are None for a failed request, input columns when it failed before
#: its inputs were decoded. Build one with `entry`.
Entry = tuple[
    float,  # TS: Unix time of the answer
    str,  # ENDPOINT
    "str | None",  # VARIANT: "model-vN" (None: failed before a model was chosen)
    str,  # REQUEST: the request's id (its rows' prediction ids are REQUEST-0, REQUEST-1, ...)
    int,  # ROWS: how many rows it has
    "tuple[str, ...] | None",  # INPUT_NAMES
    "Arrays | None",  # INPUTS
    "tuple[str, ...] | None",  # OUTPUT_NAMES
    "Arrays | None",  # OUTPUTS
    float,  # LATENCY: seconds
    str,  # STATUS: "ok" or the error code
    "str | None",  # ERROR: the message
    bool,  # SHADOW: answered by a shadow variant (a copy of a live request)
    "tuple[tuple[str, ...], ...] | None",  # STALE: per row, feature views not fresh
]
TS: Final = 0
ENDPOINT: Final = 1
VARIANT: Final = 2
REQUEST: Final = 3
ROWS: Final = 4
INPUT_NAMES: Final = 5
INPUTS: Final = 6
OUTPUT_NAMES: Final = 7
OUTPUTS: Final = 8
LATENCY: Final = 9
STATUS: Final = 10
ERROR: Final = 11
SHADOW: Final = 12
STALE: Final = 13


def entry(
    endpoint: str,
    variant: str | None,
    prediction_ids: Sequence[str],
    columns: Columns | None,
    outputs: Mapping[str, np.ndarray] | None,
    latency_s: float,
    status: str = OK,
    error: str | None = None,
    shadow: bool = False,
    stale: tuple[tuple[str, ...], ...] | None = None,
) -> Entry:
    """The entry of one request, stamped now; no array is copied."""
    inputs: Arrays | None = None
    if isinstance(columns, Table):
        inputs = columns.matrix
    elif columns is not None:
        inputs = tuple(columns.values())
    return (
        time.time(),
        endpoint,
        variant,
        request_of(prediction_ids[0]),
        len(prediction_ids),
        tuple(columns) if columns is not None else None,
        inputs,
        tuple(outputs) if outputs is not None else None,
        tuple(outputs.values()) if outputs is not None else None,
        latency_s,
        status,
        error,
        shadow,
        stale,
    )


@dataclass
class Batch:
    """What a list of entries became: tables to write (one, unless a column changed
    type between versions) and the entries that could not be stored, with why."""

    tables: list[pa.Table]
    rejected: list[tuple[Entry, Exception]]

    @property
    def rejected_rows(self) -> int:
        return sum(entry[ROWS] for entry, _ in self.rejected)


def rows_of(entries: Sequence[Entry]) -> int:
    """How many rows ``entries`` log."""
    return sum(map(itemgetter(ROWS), entries))


def build_tables(entries: Sequence[Entry], environment: str, models: Models) -> Batch:
    """The Arrow tables of ``entries``: one row per predicted row.

    Entries of one variant and status share their columns and are built together,
    column by column. A group that does not build (a model whose outputs change from
    call to call) is built entry by entry, so one odd request cannot spoil the others.
    Groups with different columns (a failure with no inputs beside successes) are
    unified by name, a column one lacks being null there.
    """
    batch = Batch([], [])
    for group in _groups(entries):
        try:
            batch.tables.append(_build(group, environment, models))
        except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException):
            for entry in group:
                try:
                    batch.tables.append(_build([entry], environment, models))
                except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException) as exc:
                    batch.rejected.append((entry, exc))
    batch.tables = merge(batch.tables)
    return batch


def merge(tables: list[pa.Table]) -> list[pa.Table]:
    """Tables as one, columns matched by name, with the total of their traffic
    summaries; apart if a column's type differs."""
    if len(tables) > 1:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError):
            return [concat(tables)]
    return tables


def _groups(entries: Sequence[Entry]) -> list[Sequence[Entry]]:
    """Entries split so that each group has the same columns: by variant and status,
    and for failures by whether inputs were decoded. Under steady traffic (one variant,
    all answered) that is one group, found without a Python loop."""
    first = entries[0]
    if first[STATUS] == OK and len(set(map(itemgetter(VARIANT, STATUS, SHADOW), entries))) == 1:
        return [entries]
    groups: dict[tuple[str | None, str, bool, bool], list[Entry]] = {}
    for entry in entries:
        key = (entry[VARIANT], entry[STATUS], entry[SHADOW], entry[INPUTS] is None)
        groups.setdefault(key, []).append(entry)
    return list(groups.values())


def _build(entries: Sequence[Entry], environment: str, models: Models) -> pa.Table:
    """Entries with the same input and output names -> one table."""
    first, size = entries[0], len(entries)
    (ts, _, _, requests, sizes, input_names, inputs, output_names, outputs, latency, _, errors) = (
        zip(*(e[:SHADOW] for e in entries), strict=True)
    )
    counts = np.fromiter(sizes, np.int64, size)
    rows = int(counts.sum())
    micros = (np.array(ts, np.float64) * 1_000_000).astype(np.int64)
    seconds = np.array(latency, np.float64)
    group = (first[VARIANT], first[SHADOW])
    summary = Summary.of_requests(environment, group, micros, seconds, failed=first[STATUS] != OK)
    request_ids = arrays.strings(requests)
    owners: pa.Array | None = None
    if not (counts == 1).all():
        micros, seconds = np.repeat(micros, counts), np.repeat(seconds, counts)
        owners = arrays.numbers(np.repeat(np.arange(size), counts))
        request_ids = request_ids.take(owners)
    variant = first[VARIANT]
    model, version = models[variant] if variant is not None else (None, None)
    columns: dict[str, pa.Array] = {
        "prediction_id": _prediction_ids(request_ids, counts),
        "request_id": request_ids,
        "ts": arrays.timestamps(micros, TIMESTAMP),
        "environment": arrays.repeated(environment, rows),
        "model": arrays.repeated(model, rows),
        "version": arrays.repeated(version, rows, pa.int64()),
        "variant": arrays.repeated(variant, rows),
        "status": arrays.repeated(first[STATUS], rows),
        "error": (
            pa.nulls(rows, pa.string())
            if first[ERROR] is None
            else arrays.strings(errors)
            if owners is None
            else arrays.strings(errors).take(owners)
        ),
        "latency_s": arrays.numbers(seconds),
        "shadow": arrays.booleans(np.full(rows, first[SHADOW])),
    }
    if first[INPUTS] is not None:
        for name, values in _concat(input_names, inputs).items():
            columns[input_column(name)] = arrays.values(arrays.wide(values))
    if first[OUTPUTS] is not None:
        for name, values in _concat(output_names, outputs).items():
            columns[output_column(name)] = _output_array(values)
    if any(e[STALE] is not None for e in entries):
        columns["stale_features"] = _stale(entries)
    return attach(pa.table(columns), summary)


def _stale(entries: Sequence[Entry]) -> pa.Array:
    """``stale_features``: per row, the views whose values were not fresh (null for a
    request that was not enriched)."""
    per_row: list[tuple[str, ...] | None] = []
    for e in entries:
        marks = e[STALE]
        per_row.extend(marks if marks is not None else [None] * e[ROWS])
    items = [view for row in per_row if row for view in row]
    sizes = np.fromiter((len(r) if r else 0 for r in per_row), np.int32, len(per_row))
    null = np.fromiter((r is None for r in per_row), bool, len(per_row))
    return arrays.list_array(sizes, arrays.strings(items), null)


def _prediction_ids(request_ids: pa.Array, counts: np.ndarray) -> pa.Array:
    """``{request id}-{row index}`` for every row, joined in Arrow (no Python strings)."""
    largest = int(counts.max())
    suffixes = _SUFFIXES if largest <= len(_ROW_SUFFIXES) else _suffixes(largest)
    if largest == 1 and len(counts) == len(request_ids):  # one row per request
        index = np.zeros(len(counts), np.int64)
    else:
        index = np.arange(len(request_ids)) - np.repeat(np.cumsum(counts) - counts, counts)
    return pc.binary_join_element_wise(request_ids, suffixes.take(arrays.numbers(index)), _EMPTY)


def _suffixes(n: int) -> pa.Array:
    return arrays.strings([f"-{i}" for i in range(n)])


_SUFFIXES = _suffixes(len(_ROW_SUFFIXES))
#: The separator, as a scalar taken from an array: ``pa.scalar`` would import pandas.
_EMPTY = arrays.strings([""])[0]


def _concat(names: Sequence[tuple[str, ...]], parts: Sequence[Arrays]) -> dict[str, np.ndarray]:
    """Every request's arrays as one array per name (2-D blocks joined in one call)."""
    first = names[0]
    if names.count(first) != len(names):  # equal names are the same str objects: quick
        raise ValueError("the requests of a group do not have the same columns")
    blocks = [p for p in parts if isinstance(p, np.ndarray)]
    if len(blocks) == len(parts):
        return dict(zip(first, _columns_of_blocks(blocks), strict=True))
    columns = [p if isinstance(p, tuple) else tuple(p.T) for p in parts]
    return {name: np.concatenate(list(map(itemgetter(i), columns))) for i, name in enumerate(first)}


#: Rows per request from which blocks are transposed one at a time: a small block's
#: transposed copy stays in cache, where one transpose of their concatenation does not
#: (64-row requests: 3x faster); single rows are faster concatenated first.
_BLOCKWISE_ROWS = 8


def _columns_of_blocks(parts: Sequence[np.ndarray]) -> np.ndarray:
    """2-D blocks (rows x columns) stacked as one column-major block: a row per column,
    each contiguous."""
    rows = sum(len(p) for p in parts)
    if rows < _BLOCKWISE_ROWS * len(parts):
        return np.concatenate(parts).T.copy()
    out = np.empty((parts[0].shape[1], rows), dtype=np.result_type(*parts))
    at = 0
    for part in parts:
        out[:, at : at + len(part)] = part.T
        at += len(part)
    return out


def _output_array(values: np.ndarray) -> pa.Array:
    """A 1-D output keeps its type; a 2-D one (probabilities) becomes a list."""
    return arrays.values(values) if values.ndim <= 1 else arrays.lists(values)


# -- on disk --------------------------------------------------------------------


def endpoint_folder(root: Path, endpoint: str) -> Path:
    """Where an endpoint's prediction segments go, one ``date=`` folder per UTC day."""
    return root / "predictions" / f"endpoint={endpoint}"


def write_segment(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through ``path.tmp`` and a rename; no partial file stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_parquet(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


#: Columns with min/max statistics in each row group: what queries filter on by range.
#: Inputs, outputs and (random) ids would only cost time to describe.
STATISTICS = ["ts", "model", "version", "variant", "status", "latency_s"]


def write_parquet(table: pa.Table, where: Path | pa.NativeFile) -> None:
    """Parquet as the log writes it (`parquet_options`)."""
    pq.write_table(table, where, **parquet_options(table.schema))


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Dictionaries for repetitive strings, statistics for what queries filter on, and
    no compression: inputs are mostly high-entropy numbers, and snappy measured 5%
    smaller files for a fifth more writing time, on the serving machine."""
    return {
        "compression": "none",
        "use_dictionary": _dictionary_columns(schema),
        "write_statistics": [c for c in STATISTICS if c in schema.names],
    }


class SegmentWriter:
    """A segment written as it grows: each table one row group of ``NAME.tmp``; `close`
    writes the footer, with the total of the tables' traffic summaries, and renames the
    file to ``path``, so readers see it whole or not at all, like `write_segment`'s.

    For a busy endpoint: its rows are encoded a slice at a time, soon after they are
    built, rather than held until the flush and encoded at once (a second of 64-row
    requests at full load is tens of megabytes per worker).
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.rows = 0
        self._summaries: list[Summary | None] = []
        schema = schema.remove_metadata()
        self._writer = pq.ParquetWriter(self.tmp, schema, **parquet_options(schema))

    def fits(self, table: pa.Table) -> bool:
        """Whether ``table`` has this segment's columns and types."""
        return table.schema.equals(self._writer.schema, check_metadata=False)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.rows += table.num_rows
        self._summaries.append(summary_of(table))

    def close(self) -> None:
        """Footer and rename; raises what writing raises (then call `abort`)."""
        if self._summaries and None not in self._summaries:
            total = Summary.total([s for s in self._summaries if s is not None])
            self._writer.add_key_value_metadata({KEY: total.encode()})
        self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Stop and remove the unfinished file; never raises."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """String columns with repeated values (a request id repeats once per row);
    prediction ids are unique, and dictionaries of numbers cost more time than they
    save."""
    return [f.name for f in schema if pa.types.is_string(f.type) and f.name != "prediction_id"]


def expire_partitions(
    root: Path, retention_days: int, now: dt.datetime | None = None
) -> list[Path]:
    """Delete ``date=...`` partitions of predictions and labels older than the retention.

    The partitions of the last ``retention_days`` days (and today) stay. Returns what
    was removed.
    """
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    cutoff = today - dt.timedelta(days=retention_days)
    removed = []
    folders = chain(root.glob("predictions/endpoint=*/date=*"), root.glob("labels/date=*"))
    for folder in folders:
        try:
            day = dt.date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        if day < cutoff and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

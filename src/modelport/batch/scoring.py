"""Scoring a chunk of rows: the checks and outputs of an online request, vectorised.

A `Scorer` holds one loaded model version (hash-checked, one thread: a batch job gets
its parallelism from processes) and the feature views the job joins. `Scorer.score`
takes an Arrow table of input rows and returns the output rows and the rejected ones:

1. CSV cells of the signature's columns (read as text) become the signature's types;
   a cell that is not one is a bad row.
2. Each feature view's values are joined on by its entity column (`FeatureJoin`),
   with the view's missing and stale policies, exactly as online enrichment does.
3. The rows are checked by ``Signature.coerce_any``, the very check an online
   request goes through, in one vectorised step. Only when a chunk fails as a whole
   are the failing rows looked for (by halving the rows), so clean chunks stay fast.
4. The model predicts on the rows that passed.

Output columns, in order: the job's id columns as read; a classifier's ``label`` (the
class, typed as the model's classes) and ``probabilities`` (``list<double>``, one per
class in the model's class order); a regressor's ``prediction`` (double); any other
model's outputs by name (a 2-D output as a list column); then ``model`` (the name) and
``model_version`` (int64).

Bad rows follow ``on_bad_rows``: ``fail`` raises `InvalidInput` naming the file, the
row (a CSV's line) and the column of the first bad row; ``skip`` returns them as
rejects: the input columns as read plus ``source``, ``row``, ``column`` and ``reason``.

Example::

    scorer = Scorer.open(settings, JobSpec(model="models:/fraud/3", input="-", output="-"))
    out, rejects = scorer.score(table, source="data/part-0.parquet", offset=0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelport.batch.joins import FeatureJoin, batch_view
from modelport.batch.source import is_csv, place, place_number
from modelport.batch.spec import JobSpec
from modelport.errors import InvalidInput, ModelportError, PredictionFailed, SignatureMismatch
from modelport.features.enrich import output_columns
from modelport.features.views import FeatureView
from modelport.monitoring import arrays
from modelport.signature import ColumnSpec, Signature

if TYPE_CHECKING:
    from modelport.artifacts import LocalArtifactStore
    from modelport.client import Client
    from modelport.registry import ModelVersion
    from modelport.runtimes.base import Prediction, Runtime
    from modelport.runtimes.loading import RuntimeKind
    from modelport.settings import Settings

#: Columns every output has besides the id columns and the model's outputs.
MODEL_COLUMNS = ("model", "model_version")
#: Columns a rejects file adds to the input row.
REJECT_COLUMNS = ("source", "row", "column", "reason")
#: Text values a CSV boolean cell may hold (what an online CSV request accepts).
_TRUE, _FALSE = ("true", "True"), ("false", "False")
_ARROW_TYPES: dict[str, pa.DataType] = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}


def input_columns(spec: JobSpec, signature: Signature, views: Sequence[FeatureView]) -> list[str]:
    """The columns a job reads from its input: ids, the views' entity keys, the time
    column, and the signature's columns that no feature view provides."""
    provided = {c for view in views for c in output_columns(view)}
    names = [*spec.id_columns, *(view.entity for view in views)]
    if views and spec.at_column:
        names.append(spec.at_column)
    names += [c for c in signature.column_names if c not in provided]
    return list(dict.fromkeys(names))


def text_columns(signature: Signature) -> set[str]:
    """Signature columns whose CSV text is parsed into their type (all but strings)."""
    return {c.name for c in signature.inputs if c.type != "string"}


@dataclass(frozen=True)
class RowError:
    """Why one row of a chunk cannot be scored."""

    row: int  # within the chunk, from 0
    column: str
    reason: str


@dataclass(frozen=True)
class ScorerPlan:
    """What a `Scorer` needs, resolved from the registry once: the version, the form
    to run, where its artifacts are, the feature views and their offline folders.
    Worker processes receive it (it pickles) and load from it with no registry access.
    """

    spec: JobSpec
    version: ModelVersion
    kind: RuntimeKind
    artifacts: LocalArtifactStore
    views: tuple[tuple[FeatureView, Path], ...]
    now: datetime

    @classmethod
    def make(cls, client: Client, spec: JobSpec, *, now: datetime | None = None) -> ScorerPlan:
        """Resolve ``spec.model`` and ``spec.features``; ``now`` is when "latest"
        feature values are taken (default: now)."""
        from modelport.runtimes.loading import runtime_kind

        version = client.get_version(spec.model)
        views = tuple(
            (batch_view(client.features.get_view(name)), client.features.offline_dir(name))
            for name in spec.features
        )
        return cls(
            spec=spec,
            version=version,
            kind=runtime_kind(version, spec.runtime),
            artifacts=client.artifacts,
            views=views,
            now=now or datetime.now(UTC),
        )

    def load(self) -> Scorer:
        """The scorer: the runtime loaded (hash-checked, one thread), the views read."""
        from modelport.runtimes.loading import load_runtime

        joins = [
            FeatureJoin.open(view, folder, at_column=self.spec.at_column, now=self.now)
            for view, folder in self.views
        ]
        runtime = load_runtime(self.version, self.artifacts, kind=self.kind, threads=1)
        return Scorer(self.spec, self.version, self.kind, runtime, joins)


class Scorer:
    """One model version and the job's feature views, ready to score chunks.

    Build it with `Scorer.open` (once per process); `score` is then called per chunk.
    """

    def __init__(
        self,
        spec: JobSpec,
        version: ModelVersion,
        kind: RuntimeKind,
        runtime: Runtime,
        joins: Sequence[FeatureJoin] = (),
    ) -> None:
        self.spec = spec
        self.version = version
        self.kind = kind
        self.runtime = runtime
        self.joins = list(joins)
        self.signature = version.signature
        self._singles = {c.name: Signature(inputs=(c,)) for c in self.signature.inputs}
        self._check_names()

    @classmethod
    def open(cls, settings: Settings, spec: JobSpec, *, now: datetime | None = None) -> Scorer:
        """Resolve ``spec.model``, load its runtime once (hash-checked, one thread) and
        the feature views ``spec.features`` names; ``now`` is when "latest" feature
        values are taken (default: now)."""
        from modelport.client import Client

        client = Client(settings)
        try:
            plan = ScorerPlan.make(client, spec, now=now)
        finally:
            client.close()
        return plan.load()

    def close(self) -> None:
        self.runtime.unload()
        for join in self.joins:
            join.close()

    # -- what the job reads --------------------------------------------------------

    @property
    def input_columns(self) -> list[str]:
        return input_columns(self.spec, self.signature, [j.view for j in self.joins])

    @property
    def output_names(self) -> list[str]:
        outputs = [o.name for o in self.signature.outputs] or ["prediction"]
        return [*self.spec.id_columns, *outputs, *MODEL_COLUMNS]

    def _check_names(self) -> None:
        taken = set(self.output_names[len(self.spec.id_columns) :])
        clash = [c for c in self.spec.id_columns if c in taken]
        if clash:
            raise InvalidInput(
                f"id column(s) {clash} have the name of an output column",
                hint=f"the output adds {sorted(taken)}; rename the column in the input",
            )
        features = [c for join in self.joins for c in join.columns]
        clash = [c for c in features if c in self.spec.id_columns or features.count(c) > 1]
        if clash:
            raise InvalidInput(
                f"column(s) {sorted(set(clash))} come from a feature view and from the "
                "input's id columns (or another view)",
                hint="leave feature columns out of --id-column; rename one feature",
            )

    # -- scoring -------------------------------------------------------------------

    def score(
        self, table: pa.Table, *, source: str | None = None, offset: int = 0
    ) -> tuple[pa.Table, pa.Table | None]:
        """Check and predict ``table``'s rows: (output rows, rejected rows or None).

        ``source`` and ``offset`` (the table's first row within that file) name bad
        rows in errors and rejects; a ``source`` ending in ``.csv`` marks text columns.
        """
        self._check_columns(table, source)
        fail = self.spec.on_bad_rows == "fail"
        errors: dict[int, RowError] = {}
        typed = self._parse_text(table, errors, fail) if is_csv(source) else table
        if fail and errors:  # an earlier row may still be at fault in another column
            typed = typed.slice(0, min(errors))
        features: dict[str, pa.Array] = {}
        for join in self.joins:
            columns, bad = join.join(typed, self.spec.at_column)
            features.update(columns)
            for row, reason in bad.items():
                errors.setdefault(row, RowError(row, join.view.entity, reason))
        raw = {
            name: _numpy(features[name] if name in features else typed.column(name))
            for name in self.signature.column_names
        }
        keep, columns = self._checked(raw, errors, fail)
        if fail and errors:
            raise self._bad_row(errors[min(errors)], source, offset)
        rejects = self._rejects(table, errors, source, offset) if errors else None
        if columns is None:
            return self._outputs(typed, keep, None), rejects
        try:
            prediction = self.runtime.predict(columns)
        except ModelportError as exc:
            first = f"{place(source, offset)}" if source else f"rows from {offset + 1}"
            raise PredictionFailed(
                f"{self.version.uri} failed on the chunk at {first}: {exc.message}",
                hint=exc.hint,
            ) from exc
        return self._outputs(typed, keep, prediction), rejects

    def _check_columns(self, table: pa.Table, source: str | None) -> None:
        missing = [c for c in self.input_columns if c not in table.column_names]
        if missing:
            raise SignatureMismatch(
                f"{source or 'the input'} has no column(s) {missing}",
                hint=f"its columns are {table.column_names}; the model's signature needs "
                f"{self.signature.column_names} (feature views may provide some)",
            )

    def _parse_text(self, table: pa.Table, errors: dict[int, RowError], fail: bool) -> pa.Table:
        """``table`` with its text columns parsed into the signature's types."""
        for spec in self.signature.inputs:
            if spec.name not in table.column_names or spec.type == "string":
                continue
            column = table.column(spec.name)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            parsed, bad = _parse_column(column.combine_chunks(), spec, first_only=fail)
            for row in bad:
                value = column[row].as_py()
                reason = f"column '{spec.name}' expects {spec.type}, got text {value!r}"
                errors.setdefault(row, RowError(row, spec.name, reason))
            table = table.set_column(table.schema.get_field_index(spec.name), spec.name, parsed)
        return table

    def _checked(
        self, raw: dict[str, np.ndarray], errors: dict[int, RowError], fail: bool
    ) -> tuple[np.ndarray | None, Any]:
        """(rows kept or None for all, the coerced columns or None when no row is left)."""
        n = len(next(iter(raw.values()))) if raw else 0
        for attempt in range(2):
            keep = _kept(n, errors)
            subset = raw if keep is None else {k: v[keep] for k, v in raw.items()}
            if (n if keep is None else len(keep)) == 0:
                return keep, None
            try:
                return keep, self.signature.coerce_any(subset)
            except SignatureMismatch as exc:
                found = self._row_errors(subset, first_only=fail)
                if not found or attempt:
                    raise InvalidInput(exc.message, hint=exc.hint) from exc
                for error in found:
                    row = int(keep[error.row]) if keep is not None else error.row
                    errors.setdefault(row, RowError(row, error.column, error.reason))
                if fail:
                    return keep, None
        raise AssertionError("unreachable")  # pragma: no cover

    def _row_errors(self, raw: Mapping[str, np.ndarray], *, first_only: bool) -> list[RowError]:
        """The rows of ``raw`` that fail the signature, column by column, with the
        check's own words (only the first when ``first_only``)."""
        found: dict[int, RowError] = {}
        for name, single in self._singles.items():
            values = raw[name]

            def ok(lo: int, hi: int, single: Signature = single, values: Any = values) -> bool:
                return _coerces(single, values[lo:hi]) is None

            for row in _failing(len(values), ok, first_only=first_only):
                reason = _coerces(single, values[row : row + 1]) or "does not match"
                found.setdefault(row, RowError(row, name, reason.replace(" at row 0", "")))
        rows = sorted(found)
        return [found[r] for r in (rows[:1] if first_only else rows)]

    def _bad_row(self, error: RowError, source: str | None, offset: int) -> InvalidInput:
        where = place(source, offset + error.row)
        if f"'{error.column}'" not in error.reason:
            where += f", column '{error.column}'"
        return InvalidInput(
            f"{where}: {error.reason}",
            hint="fix the value in the file (or the model's signature), or rerun with "
            "--on-bad-rows skip to set bad rows aside in _rejects/ with the reason",
        )

    def _rejects(
        self, table: pa.Table, errors: dict[int, RowError], source: str | None, offset: int
    ) -> pa.Table:
        rows = sorted(errors)
        out = table.take(pa.array(rows, pa.int64()))
        extra = {
            "source": pa.array([source] * len(rows), pa.string()),
            "row": pa.array([place_number(source, offset + r) for r in rows], pa.int64()),
            "column": pa.array([errors[r].column for r in rows], pa.string()),
            "reason": pa.array([errors[r].reason for r in rows], pa.string()),
        }
        for name, values in extra.items():
            if name in out.column_names:
                out = out.drop_columns([name])
            out = out.append_column(name, values)
        return out

    def _outputs(
        self, table: pa.Table, keep: np.ndarray | None, prediction: Prediction | None
    ) -> pa.Table:
        index = None if keep is None else pa.array(keep, pa.int64())
        n = len(prediction) if prediction is not None else 0
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for name in self.spec.id_columns:
            column = table.column(name)
            columns[name] = column.take(index) if index is not None else column
        if prediction is None:
            columns = {k: v.slice(0, 0) for k, v in columns.items()}
            for spec in self.signature.outputs:
                columns[spec.name] = pa.array([], _output_type(spec.type, spec.shape))
        else:
            types = {o.name: _output_type(o.type, o.shape) for o in self.signature.outputs}
            for name, values in prediction.outputs.items():
                columns[name] = _arrow_output(np.asarray(values), types.get(name))
        columns["model"] = arrays.repeated(self.version.name, n)
        columns["model_version"] = arrays.repeated(self.version.version, n, pa.int64())
        return pa.table(columns)


# -- values -----------------------------------------------------------------------


def _numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as the numpy array an online request's column decodes to:
    numbers without nulls as they are, floats with NaN for nulls, anything else as
    Python values (None for null)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    values = arrays.to_numpy(column)  # no pandas import (Arrow's own to_numpy loads it)
    if values is not None:
        return values
    return np.array(column.to_pylist(), dtype=object)


def _parse_column(
    column: pa.Array, spec: ColumnSpec, *, first_only: bool
) -> tuple[pa.Array, list[int]]:
    """A text column in ``spec``'s type, and the rows whose text is not one (null)."""
    if spec.type == "boolean":
        known = pc.or_(pc.is_in(column, pa.array(_TRUE + _FALSE)), pc.is_null(column))
        bad = np.flatnonzero(~known.to_numpy(zero_copy_only=False)).tolist()
        truth = pc.is_in(column, pa.array(_TRUE))
        parsed = pc.if_else(pc.is_null(column), pa.scalar(None, pa.bool_()), truth)
        return parsed, bad[:1] if first_only else bad
    targets = [pa.int64(), pa.float64()] if spec.type in ("long", "integer") else [pa.float64()]
    for target in targets:
        parsed = _cast(column, target)
        if parsed is not None:
            return parsed, []
    target = targets[-1]

    def ok(lo: int, hi: int) -> bool:
        return _cast(column.slice(lo, hi - lo), target) is not None

    bad = _failing(len(column), ok, first_only=first_only)
    if first_only:  # the rows before the first bad one are all that will be looked at
        head = _cast(column.slice(0, bad[0]), target)
        assert head is not None
        return pa.concat_arrays([head, pa.nulls(len(column) - bad[0], target)]), bad
    mask = np.zeros(len(column), bool)
    mask[bad] = True
    cleaned = _cast(pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), column), target)
    assert cleaned is not None
    return cleaned, bad


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array | None:
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _coerces(single: Signature, values: np.ndarray) -> str | None:
    """None when ``values`` pass the one-column signature, else why not."""
    try:
        single.coerce({single.inputs[0].name: values})
    except SignatureMismatch as exc:
        return exc.message
    return None


def _failing(n: int, ok: Callable[[int, int], bool], *, first_only: bool) -> list[int]:
    """The rows in [0, n) where ``ok`` fails, found by halving failing ranges (a clean
    half costs one check), in order; only the first when ``first_only``."""
    found: list[int] = []

    def visit(lo: int, hi: int) -> None:
        if (first_only and found) or ok(lo, hi):
            return
        if hi - lo == 1:
            found.append(lo)
            return
        mid = (lo + hi) // 2
        visit(lo, mid)
        visit(mid, hi)

    if n:
        visit(0, n)
    return found


def _kept(n: int, errors: Mapping[int, RowError]) -> np.ndarray | None:
    if not errors:
        return None
    mask = np.ones(n, bool)
    mask[[r for r in errors if r < n]] = False
    return np.flatnonzero(mask)


def _output_type(kind: str, shape: Sequence[int]) -> pa.DataType:
    base = _ARROW_TYPES.get(kind, pa.float64())
    return pa.list_(base) if len(shape) > 1 else base


def _arrow_output(values: np.ndarray, kind: pa.DataType | None) -> pa.Array:
    """One output as an Arrow column: 1-D as it is, 2-D as a list per row. Numbers keep
    their NaN (a model's NaN is its answer, not a missing one)."""
    if values.ndim == 2:
        flat = values.reshape(-1)
        items = (
            arrays.numbers(flat, nan_is_null=False)
            if flat.dtype.kind in "fiub"
            else arrays.values(flat)
        )
        sizes = np.full(len(values), values.shape[1], np.int32)
        array: pa.Array = arrays.list_array(sizes, items)
    elif values.dtype.kind in "fiub":
        array = arrays.numbers(values, nan_is_null=False)
    else:
        array = arrays.values(values)
    if kind is not None and array.type != kind:
        cast = _cast(array, kind)
        array = cast if cast is not None else array
    return array

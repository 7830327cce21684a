"""Signatures: the named, typed input columns and the outputs of a model version.

Every request is checked against the signature before it reaches a model, so a wrong
column, type or shape is a 400 naming the column, never a stack trace from inside
the model. Column types use MLflow's names (``double``, ``float``, ``long``,
``integer``, ``boolean``, ``string``) so MLflow users read them at a glance.

Example::

    sig = Signature.infer(training_frame)
    columns = sig.coerce({"amount": [12.5, 3.0], "country": ["FR", "DE"]})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelport.errors import SignatureMismatch

if TYPE_CHECKING:
    import pandas as pd

ColumnType = Literal["double", "float", "long", "integer", "boolean", "string"]

#: Columns as the data plane hands them to runtimes: name -> 1-D numpy array, in
#: signature order, all of the same length.
Columns = dict[str, np.ndarray]


class Table(dict[str, np.ndarray]):
    """Columns that also exist as one 2-D numeric block, ``matrix`` (columns in key order).

    Requests of numbers only (``dataframe_split``, rows of lists, V2 matrices) decode to
    a Table, so validation and the runtimes work on the block in one vectorised step
    instead of column by column.
    """

    def __init__(self, names: Sequence[str], matrix: np.ndarray) -> None:
        super().__init__(zip(names, matrix.T, strict=True))  # column views, built in C
        self.matrix = matrix


NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "double": np.dtype("float64"),
    "float": np.dtype("float32"),
    "long": np.dtype("int64"),
    "integer": np.dtype("int32"),
    "boolean": np.dtype("bool"),
    "string": np.dtype("object"),
}

#: Open Inference Protocol (V2) tensor datatypes for each column type.
V2_DATATYPES: dict[str, str] = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}


def column_type_of(dtype: Any) -> ColumnType:
    """Map a numpy/pandas dtype to a signature column type."""
    import pandas as pd

    dt = np.dtype(dtype) if not isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype
    kind = getattr(dt, "kind", "O")
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer" if np.dtype(dt).itemsize <= 4 and kind == "i" else "long"
    if kind == "f":
        return "float" if np.dtype(dt).itemsize <= 4 else "double"
    return "string"


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its name, type and whether missing values (null/NaN) are allowed."""

    name: str
    type: ColumnType
    allow_missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "allow_missing": self.allow_missing}


@dataclass(frozen=True)
class OutputSpec:
    """One output: its name, type and shape (``-1`` for the batch dimension)."""

    name: str
    type: ColumnType
    shape: tuple[int, ...] = (-1,)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """Named, typed inputs and outputs of a model version."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[OutputSpec, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        try:
            inputs = tuple(
                ColumnSpec(
                    name=str(c["name"]),
                    type=_check_type(c["type"]),
                    allow_missing=bool(c.get("allow_missing", False)),
                )
                for c in data["inputs"]
            )
            outputs = tuple(
                OutputSpec(
                    name=str(o["name"]),
                    type=_check_type(o["type"]),
                    shape=tuple(int(s) for s in o.get("shape", (-1,))),
                )
                for o in data.get("outputs", ())
            )
        except (KeyError, TypeError) as exc:
            raise SignatureMismatch(
                f"invalid signature: missing or malformed field {exc}",
                hint='give {"inputs": [{"name": ..., "type": ...}], "outputs": [...]}',
            ) from exc
        if not inputs:
            raise SignatureMismatch("invalid signature: it has no input columns")
        return cls(inputs=inputs, outputs=outputs)

    def with_outputs(self, outputs: Sequence[OutputSpec]) -> Signature:
        return Signature(inputs=self.inputs, outputs=tuple(outputs))

    @classmethod
    def infer(cls, sample: Any, column_names: Sequence[str] | None = None) -> Signature:
        """Infer the input columns from a sample: a DataFrame, a 2-D array or a dict of lists.

        A 2-D array has no column names: they come from ``column_names`` (e.g. the model's
        ``feature_names_in_``) or default to ``f0, f1, ...``.
        """
        frame = sample_frame(sample, column_names)
        inputs = tuple(
            ColumnSpec(
                name=str(name),
                type=column_type_of(frame[name].dtype),
                allow_missing=bool(frame[name].isna().any()),
            )
            for name in frame.columns
        )
        if not inputs:
            raise SignatureMismatch("cannot infer a signature from a sample with no columns")
        return cls(inputs=inputs)

    @cached_property
    def _block_dtype(self) -> np.dtype[Any] | None:
        """The dtype when every input is a float column of one type (a Table fast path)."""
        types = {c.type for c in self.inputs}
        if len(types) != 1 or not types <= {"double", "float"}:
            return None
        return NUMPY_DTYPES[types.pop()]

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.inputs)}

    @cached_property
    def _no_missing(self) -> np.ndarray | slice:
        """Columns that must not hold NaN (a slice of all of them when none may)."""
        forbid = [i for i, c in enumerate(self.inputs) if not c.allow_missing]
        if len(forbid) == len(self.inputs):
            return slice(None)
        return np.array(forbid, dtype=int)

    def coerce_any(self, raw: Mapping[str, Any] | Sequence[Any]) -> Columns:
        """`coerce_table`, `coerce` or `coerce_matrix`, whichever fits ``raw``."""
        if isinstance(raw, Table):
            return self.coerce_table(raw)
        if isinstance(raw, Mapping):
            block = self._block_of(raw)
            return self.coerce(raw) if block is None else self.coerce_table(block)
        return self.coerce_matrix(raw)

    def _block_of(self, raw: Mapping[str, Any]) -> Table | None:
        """The signature's columns of ``raw`` as one float block, when the signature is
        all floats and every column holds only numbers (requests with a key or text
        column beside the model's numbers, such as enriched ones); else None."""
        dtype = self._block_dtype
        if dtype is None or dtype.kind != "f":
            return None
        try:
            columns = [np.asarray(raw[name]) for name in self.column_names]
        except (KeyError, ValueError):  # ValueError: lists nested unevenly; coerce says where
            return None
        if any(c.ndim != 1 or c.dtype.kind not in "fiu" for c in columns):
            return None
        if len({len(c) for c in columns}) != 1:
            return None
        return Table(self.column_names, np.column_stack(columns))

    def coerce_table(self, table: Table) -> Columns:
        """`coerce` for a numeric block: one reorder, one cast, one missing-value check."""
        dtype = self._block_dtype
        names = list(table)
        if dtype is None or table.matrix.dtype.kind not in "fiu" or len(table) < len(self.inputs):
            return self.coerce(table)
        wanted = self.column_names
        if names == wanted and table.matrix.dtype == dtype and table.matrix.flags.c_contiguous:
            block = table.matrix  # already what the model takes: check it, keep the Table
        elif names[: len(wanted)] == wanted:
            block = table.matrix[:, : len(wanted)] if len(names) > len(wanted) else table.matrix
        else:
            where = {n: i for i, n in enumerate(names)}
            if any(c not in where for c in wanted):
                return self.coerce(table)
            block = table.matrix[:, [where[c] for c in wanted]]
        block = np.ascontiguousarray(block, dtype=dtype)
        forbid = self._no_missing
        checked = block if isinstance(forbid, slice) else block[:, forbid]
        if len(block) == 0 or (checked.size and np.isnan(checked).any()):
            return self.coerce(table)  # the column-by-column path names the row at fault
        return table if block is table.matrix and names == wanted else Table(wanted, block)

    def coerce(self, raw: Mapping[str, Any]) -> Columns:
        """Check and convert decoded request columns to typed arrays in signature order.

        Columns the signature does not name are ignored (they may be entity keys or ids).
        Raises `SignatureMismatch` naming the column, the row and what was expected.
        """
        missing = [c.name for c in self.inputs if c.name not in raw]
        if missing:
            raise SignatureMismatch(
                f"missing input column(s) {missing}; the signature expects {self.column_names}",
                hint="send every column the model's signature names",
            )
        out: Columns = {}
        n_rows: int | None = None
        for spec in self.inputs:
            arr = _coerce_column(spec, raw[spec.name])
            if n_rows is None:
                n_rows = len(arr)
            elif len(arr) != n_rows:
                raise SignatureMismatch(
                    f"column '{spec.name}' has {len(arr)} values but "
                    f"'{self.inputs[0].name}' has {n_rows}",
                    hint="every column needs one value per row",
                )
            out[spec.name] = arr
        if not n_rows:
            raise SignatureMismatch("the request has no rows", hint="send at least one row")
        return out

    def coerce_matrix(self, rows: Any) -> Columns:
        """Coerce a positional 2-D input (list of rows) using the signature's column order."""
        numeric = numeric_matrix(rows)
        if numeric is not None and numeric.shape[1] == len(self.inputs):
            return self.coerce_table(Table(self.column_names, numeric))
        try:
            matrix = np.asarray(rows, dtype=object)
        except ValueError as exc:
            raise SignatureMismatch(f"rows are ragged: {exc}") from exc
        if matrix.ndim == 1 and len(self.inputs) == 1:
            matrix = matrix.reshape(-1, 1)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.inputs):
            shape = list(matrix.shape)
            raise SignatureMismatch(
                f"expected rows of {len(self.inputs)} values {self.column_names}, "
                f"got shape {shape}",
                hint="send one list per row with the columns in signature order, "
                "or name the columns",
            )
        return self.coerce({c.name: matrix[:, i] for i, c in enumerate(self.inputs)})


def _check_type(value: Any) -> ColumnType:
    if value not in NUMPY_DTYPES:
        raise SignatureMismatch(
            f"unknown column type {value!r}", hint=f"use one of {sorted(NUMPY_DTYPES)}"
        )
    return value


def sample_frame(sample: Any, column_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Turn a sample (DataFrame, 2-D array, dict of lists, list of dicts) into a DataFrame."""
    import pandas as pd

    if isinstance(sample, pd.DataFrame):
        return sample
    if isinstance(sample, Mapping):
        return pd.DataFrame({str(k): v for k, v in sample.items()})
    if isinstance(sample, list) and sample and isinstance(sample[0], Mapping):
        return pd.DataFrame(sample)
    arr = np.asarray(sample)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise SignatureMismatch(f"a sample must be 2-D, got shape {list(arr.shape)}")
    names = (
        list(column_names) if column_names is not None else [f"f{i}" for i in range(arr.shape[1])]
    )
    if len(names) != arr.shape[1]:
        raise SignatureMismatch(
            f"{len(names)} column names given for a sample with {arr.shape[1]} columns"
        )
    return pd.DataFrame(arr, columns=names)


def _bad_value(spec: ColumnSpec, values: np.ndarray, ok: np.ndarray) -> SignatureMismatch:
    row = int(np.flatnonzero(~ok)[0])
    value = values[row]
    kind = "null" if value is None else type(value).__name__
    return SignatureMismatch(
        f"column '{spec.name}' expects {spec.type}, got {kind} {value!r} at row {row}",
        hint=f"send {spec.type} values for '{spec.name}'",
    )


def _missing_error(spec: ColumnSpec, mask: np.ndarray) -> SignatureMismatch:
    row = int(np.flatnonzero(mask)[0])
    return SignatureMismatch(
        f"column '{spec.name}' has a missing value (null/NaN) at row {row}, "
        "and its signature does not allow missing values",
        hint=f"fill '{spec.name}', or register the model with allow_missing for it",
    )


_NUMBERS = frozenset({int, float})


def numeric_array(values: list[Any]) -> np.ndarray | None:
    """A list holding only Python ints and floats as one array, else None.

    The type check runs at C speed (``set(map(type, ...))``) and is exact: booleans,
    strings and nulls fall back to the value-by-value path with its precise errors.
    """
    types = set(map(type, values))
    if not types or not types <= _NUMBERS:
        return None
    return np.array(values, dtype=np.int64 if types == {int} else np.float64)


def numeric_matrix(rows: Any) -> np.ndarray | None:
    """Rows (a list of equal-length lists) of only ints and floats as a 2-D array, else None.

    numpy's own type discovery builds the block; strings and nulls give a non-numeric
    dtype (the caller then takes the checked, value-by-value path). Booleans would pass
    as 0 and 1, so only the cells equal to 0 or 1 are looked at one by one.
    """
    if not isinstance(rows, list) or not rows or type(rows[0]) is not list:
        return None
    try:
        matrix = np.array(rows)
    except (ValueError, TypeError):  # ragged rows: the checked path says which one
        return None
    if matrix.ndim != 2 or matrix.dtype.kind not in "fi":
        return None
    if matrix.size <= _SMALL_BLOCK:  # a few cells: their types, at C speed
        return None if bool in set(map(type, chain.from_iterable(rows))) else matrix
    suspects = np.flatnonzero((matrix == 0) | (matrix == 1)).tolist()
    width = matrix.shape[1]
    if any(type(rows[k // width][k % width]) is bool for k in suspects):
        return None
    return matrix


#: Cells up to which `numeric_matrix` looks at every cell's type rather than at the
#: cells equal to 0 or 1 (a few vectorised passes cost more on a small block).
_SMALL_BLOCK = 256


def _coerce_column(spec: ColumnSpec, values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        arr = values
    else:
        fast = numeric_array(values) if isinstance(values, list) else None
        arr = fast if fast is not None else np.asarray(values, dtype=object)
    if arr.ndim != 1:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        else:
            raise SignatureMismatch(
                f"column '{spec.name}' must be a flat list of values, got shape {list(arr.shape)}"
            )
    if spec.type in ("double", "float"):
        return _coerce_float(spec, arr)
    if spec.type in ("long", "integer"):
        return _coerce_int(spec, arr)
    if spec.type == "boolean":
        return _coerce_bool(spec, arr)
    return _coerce_string(spec, arr)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def _coerce_float(spec: ColumnSpec, arr: np.ndarray) -> np.ndarray:
    dtype = NUMPY_DTYPES[spec.type]
    if arr.dtype.kind in "fiu":
        out = arr.astype(dtype, copy=False)
    else:
        ok = np.fromiter((v is None or _is_number(v) for v in arr), bool, len(arr))
        if not ok.all():
            raise _bad_value(spec, arr, ok)
        out = np.array([np.nan if v is None else v for v in arr], dtype=dtype)
    if not spec.allow_missing:
        nan = np.isnan(out)
        if nan.any():
            raise _missing_error(spec, nan)
    return out


def _coerce_int(spec: ColumnSpec, arr: np.ndarray) -> np.ndarray:
    dtype = NUMPY_DTYPES[spec.type]
    if arr.dtype.kind in "iu":
        return arr.astype(dtype, copy=False)
    if arr.dtype.kind == "O":
        missing = np.fromiter((v is None for v in arr), bool, len(arr))
        if missing.any():
            raise _missing_error(spec, missing)
        ok = np.fromiter((_is_number(v) for v in arr), bool, len(arr))
        if not ok.all():
            raise _bad_value(spec, arr, ok)
        arr = np.array(list(arr), dtype=np.float64)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr == np.round(arr))
        if not ok.all():
            raise _bad_value(spec, arr.astype(object), ok)
        return arr.astype(dtype)
    ok = np.zeros(len(arr), bool)
    raise _bad_value(spec, arr.astype(object), ok)


def _coerce_bool(spec: ColumnSpec, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr
    ok = np.fromiter((isinstance(v, bool | np.bool_) for v in arr), bool, len(arr))
    if not ok.all() and (not spec.allow_missing or any(v is not None for v in arr[~ok])):
        raise _bad_value(spec, arr.astype(object), ok)
    return np.array([bool(v) if v is not None else False for v in arr], dtype=bool)


def _coerce_string(spec: ColumnSpec, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "U":
        return arr.astype(object)
    ok = np.fromiter(
        (isinstance(v, str) or (v is None and spec.allow_missing) for v in arr), bool, len(arr)
    )
    if not ok.all():
        bad = arr[~ok]
        if any(v is None for v in bad):
            raise _missing_error(spec, np.fromiter((v is None for v in arr), bool, len(arr)))
        raise _bad_value(spec, arr.astype(object), ok)
    return arr.astype(object)

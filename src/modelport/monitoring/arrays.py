"""Arrow arrays made straight from numpy buffers and Python strings.

``pa.array`` and ``pa.scalar`` import pandas on their first call (pyarrow's pandas
shim looks for it), which adds about 150 MB to every serving process that logs
predictions. The prediction log builds its arrays here instead, with
``pa.Array.from_buffers``: zero-copy for contiguous numbers, one join for strings, and
pandas is never imported.

`to_numpy` goes the other way, for the same reason (``Array.to_numpy`` loads pandas too).

Example::

    numbers(np.array([1.0, np.nan]))  # float64 [1, null]
    strings(["a", None])              # string ["a", null]
    repeated("fraud", 3)              # string ["fraud", "fraud", "fraud"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

#: What inputs are widened to (`wide`): one column type whatever the request held.
_WIDE = {"f": np.float64, "i": np.int64, "u": np.int64, "b": np.bool_}
_STRING = pa.string()


def numbers(values: np.ndarray, *, nan_is_null: bool = True) -> pa.Array:
    """A 1-D float (NaN -> null, unless told otherwise), integer or boolean array, its
    dtype kept."""
    kind = values.dtype.kind
    if kind == "b":
        return booleans(values)
    if kind not in "fiu":
        raise TypeError(f"not a numeric array: dtype {values.dtype}")
    values = np.ascontiguousarray(values)
    validity, nulls = None, 0
    if kind == "f" and nan_is_null:
        missing = np.isnan(values)
        if missing.any():
            validity, nulls = _bitmap(~missing), int(missing.sum())
    type_ = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(values)], nulls)


def to_numpy(column: pa.Array) -> np.ndarray | None:
    """A numeric Arrow array as numpy, without a copy where its layout allows: floats
    with NaN for nulls, integers and booleans without nulls; None for anything else."""
    kind = column.type
    n, offset = len(column), column.offset
    floating, integer = pa.types.is_floating(kind), pa.types.is_integer(kind)
    if (floating or integer) and (floating or column.null_count == 0):
        dtype = np.dtype(kind.to_pandas_dtype())
        validity, data = column.buffers()[:2]
        values = np.frombuffer(data, dtype=dtype, count=offset + n)[offset:]
        if floating and column.null_count:
            values = np.where(_unpack(validity, offset, n), values, np.nan)
        return values
    if pa.types.is_boolean(kind) and column.null_count == 0:
        return _unpack(column.buffers()[1], offset, n)
    return None


def _unpack(bits: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """Arrow's little-endian bitmap as a bool array of ``n`` from bit ``offset``."""
    packed = np.frombuffer(bits, dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little")[offset : offset + n].astype(np.bool_)


def wide(values: np.ndarray) -> np.ndarray:
    """Numbers as float64, int64 or bool; anything else as it is."""
    target = _WIDE.get(values.dtype.kind)
    return values if target is None else values.astype(target, copy=False)


def booleans(values: np.ndarray) -> pa.Array:
    bits = _bitmap(np.asarray(values, dtype=bool))
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, bits], 0)


def timestamps(micros: np.ndarray, type_: pa.DataType) -> pa.Array:
    """``type_`` (a timestamp type) from microseconds since the epoch."""
    values = np.ascontiguousarray(micros, dtype=np.int64)
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)], 0)


def strings(items: Sequence[Any]) -> pa.Array:
    """A string array: None and NaN are null, bytes are decoded, numbers written out;
    any other object is a TypeError."""
    count, mask = len(items), None
    try:
        joined, present = "".join(items), items  # the common case: only str, no loop
    except TypeError:
        texts = [_text(item) for item in items]
        mask = np.fromiter((t is not None for t in texts), bool, count)
        present = [t for t in texts if t is not None]
        joined = "".join(present)
    if joined.isascii():
        data, lengths = joined.encode("ascii"), np.fromiter(map(len, present), np.int64)
    else:
        encoded = [t.encode() for t in present]
        data, lengths = b"".join(encoded), np.fromiter(map(len, encoded), np.int64)
    nulls, validity = count - len(present), None
    if mask is not None and nulls:
        sizes = np.zeros(count, np.int64)
        sizes[mask] = lengths
        lengths, validity = sizes, _bitmap(mask)
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), count, buffers, nulls)


def repeated(value: str | int | None, rows: int, type_: pa.DataType = _STRING) -> pa.Array:
    """``value`` ``rows`` times (null if None)."""
    if value is None:
        return pa.nulls(rows, type_)
    if pa.types.is_integer(type_):
        return numbers(np.full(rows, value, np.int64)).cast(type_)
    data = str(value).encode()
    offsets = np.arange(rows + 1, dtype=np.int32) * np.int32(len(data))
    return pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data * rows)], 0
    )


def lists(block: np.ndarray) -> pa.Array:
    """A 2-D block (one row per item) as a list array: ``list<float64>`` for numbers,
    ``list<string>`` for text."""
    flat = block.reshape(len(block), -1)
    sizes = np.full(len(flat), flat.shape[1], np.int32)
    if flat.dtype.kind in "fiub":
        return list_array(sizes, numbers(flat.astype(np.float64).ravel()))
    return list_array(sizes, values(flat.ravel()))


def list_array(sizes: np.ndarray, items: pa.Array, null: np.ndarray | None = None) -> pa.Array:
    """A list array of ``sizes[i]`` consecutive ``items`` per row (rows where ``null``
    is true are null)."""
    offsets = np.zeros(len(sizes) + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    offsets_array = pa.Array.from_buffers(pa.int32(), len(offsets), [None, pa.py_buffer(offsets)])
    mask = booleans(null) if null is not None and null.any() else None
    return pa.ListArray.from_arrays(offsets_array, items, mask=mask)


def values(items: np.ndarray) -> pa.Array:
    """A 1-D array of any dtype: numbers as `numbers`, text (or objects holding any
    text) as `strings`, other objects as the numbers numpy makes of them."""
    kind = items.dtype.kind
    if kind in "fiub":
        return numbers(items)
    if kind == "O" and not any(isinstance(item, str | bytes) for item in items):
        converted = np.asarray([math.nan if item is None else item for item in items.tolist()])
        if converted.dtype.kind in "fiub":
            return numbers(converted)
    return strings(items.tolist())


def _bitmap(valid: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _text(item: Any) -> str | None:
    if item is None or (isinstance(item, float) and math.isnan(item)):
        return None
    if isinstance(item, bytes | bytearray):
        return bytes(item).decode("utf-8", errors="replace")
    if isinstance(item, np.generic):
        item = item.item()
    if isinstance(item, str | int | float):
        return str(item)
    raise TypeError(f"cannot store a {type(item).__name__} as text")

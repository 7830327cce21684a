"""Open Inference Protocol (KServe V2) bodies: tensors in, tensors out.

``{name}`` is an endpoint of the served environment; ``{version}`` a version of the
model it serves. Inputs are matched to the signature by name (one tensor per column,
shape ``[n]`` or ``[n, 1]``), or one ``[n, k]`` tensor holds every column in
signature order. Classifiers answer ``label`` and ``probabilities``; regressors
``prediction``. Errors are ``{"error": "..."}``. The binary tensor data extension
(``Inference-Header-Content-Length``, as Triton's and KServe's clients send by
default) is understood both ways.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.registry import ModelVersion
from modelport.runtimes.base import Prediction
from modelport.serving.dataplane import RawInput
from modelport.signature import V2_DATATYPES, Table

HEADER_LENGTH = "Inference-Header-Content-Length"

_NUMPY_V2: dict[str, str] = {
    "b": "BOOL",
    "f8": "FP64",
    "f4": "FP32",
    "f2": "FP16",
    "i8": "INT64",
    "i4": "INT32",
    "i2": "INT16",
    "i1": "INT8",
    "u8": "UINT64",
    "u4": "UINT32",
    "u2": "UINT16",
    "u1": "UINT8",
}
_CHECK: dict[str, tuple[type, ...]] = {
    "BOOL": (bool,),
    "BYTES": (str,),
}


def _parameters(holder: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """``holder["parameters"]``: an object, or nothing."""
    value = holder.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where}.parameters must be an object, got {type(value).__name__}")
    return value


def v2_datatype(arr: np.ndarray) -> str:
    if arr.dtype.kind == "b":
        return "BOOL"
    if arr.dtype.kind in "OUS":
        return "BYTES"
    return _NUMPY_V2.get(f"{arr.dtype.kind}{arr.dtype.itemsize}", "FP64")


def _flatten(data: Any) -> list[Any]:
    """Nested lists, however nested, as one flat list in row-major order."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    return [x for v in data for x in _flatten(v)]


_NUMPY_OF: dict[str, str] = {v: k for k, v in _NUMPY_V2.items() if k != "b"}


def _from_binary(name: str, datatype: str, shape: list[int], raw: bytes) -> list[Any] | np.ndarray:
    """Decode a tensor sent with the binary data extension (Triton, KServe)."""
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            size = int.from_bytes(raw[pos : pos + 4], "little")
            items.append(raw[pos + 4 : pos + 4 + size].decode("utf-8", errors="replace"))
            pos += 4 + size
        return items
    dtype = np.dtype(bool) if datatype == "BOOL" else np.dtype("<" + _NUMPY_OF.get(datatype, "f8"))
    if datatype not in _NUMPY_OF and datatype != "BOOL":
        raise InvalidInput(f"input '{name}': unknown datatype {datatype!r}")
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise InvalidInput(
            f"input '{name}': shape {shape} of {datatype} needs "
            f"{math.prod(shape) * dtype.itemsize} bytes, got {len(raw)}"
        )
    values = np.frombuffer(raw, dtype=dtype)
    return values.tolist() if datatype == "BOOL" else values.astype(np.float64)


def _tensor(spec: Any, index: int, binary: memoryview | None = None) -> tuple[str, np.ndarray]:
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype, data")
    size = _parameters(spec, f"inputs[{index}]").get("binary_data_size")
    needed = (
        ("name", "shape", "datatype") if size is not None else ("name", "shape", "datatype", "data")
    )
    missing = [k for k in needed if k not in spec]
    if missing:
        raise InvalidInput(f"inputs[{index}] lacks {missing}")
    name, shape, datatype = spec["name"], spec["shape"], spec["datatype"]
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidInput(f"inputs[{index}]: name and datatype must be strings")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise InvalidInput(f"input '{name}': shape must be a list of non-negative integers")
    if size is not None:
        if binary is None or not isinstance(size, int) or size > len(binary):
            raise InvalidInput(f"input '{name}': binary_data_size {size} is past the body's end")
        values = _from_binary(name, datatype, shape, bytes(binary[:size]))
    else:
        values = _from_json(name, datatype, spec["data"])
        if isinstance(values, np.ndarray):
            _check_range(name, datatype, values)
    arr = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    if arr.size != math.prod(shape):
        raise InvalidInput(
            f"input '{name}': shape {shape} needs {math.prod(shape)} values, got {arr.size}"
        )
    return str(name), arr.reshape(shape)


def _from_json(name: str, datatype: str, data: Any) -> list[Any] | np.ndarray:
    """A tensor's JSON ``data`` (flat or nested): numbers as one float64 array, built by
    numpy in one step; BOOL and BYTES values, and numbers numpy cannot take whole, are
    checked one by one (which names the offending value)."""
    if datatype not in _CHECK and datatype not in _NUMPY_V2.values():
        raise InvalidInput(f"input '{name}': unknown datatype {datatype!r}")
    expected = _CHECK.get(datatype)
    if expected is None:
        block = _numeric_block(data)
        if block is not None:
            return block
    flat = _flatten(data)
    if expected is not None:
        bad = next((v for v in flat if not isinstance(v, expected)), None)
        if bad is not None:
            raise InvalidInput(f"input '{name}' is {datatype} but holds {bad!r}")
        return flat
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise InvalidInput(f"input '{name}' is {datatype} but holds non-numeric values")
    try:
        return np.array(flat, dtype=float)
    except OverflowError:  # an integer past float64's range
        raise InvalidInput(f"input '{name}' holds a number too large for {datatype}") from None


def _check_range(name: str, datatype: str, values: np.ndarray) -> None:
    """Numbers that ``datatype`` cannot hold (integer types: whole numbers in range;
    FP16 and FP32: within their largest magnitude) name the first offender."""
    dtype = np.dtype(_NUMPY_OF[datatype])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        ok = (values >= info.min) & (values <= info.max) & (values == np.floor(values))
        allowed = f"whole numbers from {info.min} to {info.max}"
    elif dtype.itemsize < 8:
        top = float(np.finfo(dtype).max)
        ok = np.abs(values) <= top
        allowed = f"magnitudes up to {top:g}"
    else:
        return
    if not ok.all():
        bad = values[int(np.argmin(ok))]
        raise InvalidInput(f"input '{name}' is {datatype}, which holds {allowed}; got {bad!r}")


def _numeric_block(data: Any) -> np.ndarray | None:
    """``data`` as float64 when it is numbers only (flat, or nested evenly), else None.

    numpy reads booleans as 0 and 1, so where such values appear the original cells
    are looked at; nulls, text and ragged nesting make numpy's block non-numeric.
    """
    try:
        block = np.array(data)
    except (ValueError, TypeError, OverflowError):
        return None
    if block.dtype.kind not in "fiu" or block.ndim == 0:
        return None
    suspects = np.flatnonzero((block == 0) | (block == 1))
    if suspects.size:
        flat = _flatten(data)
        if any(type(flat[k]) is bool for k in suspects.tolist()):
            return None
    return block.reshape(-1).astype(np.float64, copy=False)


def _tensors(payload: Mapping[str, Any], binary: bytes) -> dict[str, np.ndarray]:
    view, pos, tensors = memoryview(binary), 0, {}
    for i, spec in enumerate(payload["inputs"]):
        name, arr = _tensor(spec, i, view[pos:])
        size = _parameters(spec, f"inputs[{i}]").get("binary_data_size")
        pos += size if isinstance(size, int) else 0
        tensors[name] = arr
    return tensors


def decode_infer(payload: Any, version: ModelVersion, binary: bytes = b"") -> RawInput:
    """A V2 inference request (JSON, plus binary tensors if any) -> columns or rows."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("inputs"), list):
        raise InvalidInput("a V2 inference request needs an 'inputs' list")
    _requested_outputs(payload)  # checked now, not after the model ran
    tensors = _tensors(payload, binary)
    columns = version.signature.column_names
    if len(tensors) == 1 and next(iter(tensors)) not in columns:
        ((name, arr),) = tensors.items()
        if arr.ndim != 2:
            raise InvalidInput(
                f"input '{name}' is not a signature column, so it must be a [rows, "
                f"{len(columns)}] tensor of every column in order {columns}"
            )
        if arr.dtype.kind == "f" and arr.shape[1] == len(columns) and len(arr):
            return Table(columns, arr)
        return arr.tolist()
    unknown = sorted(set(tensors) - set(columns))
    if unknown:
        raise InvalidInput(f"unknown input(s) {unknown}; the model takes {columns}")
    out: dict[str, Any] = {}
    for name, arr in tensors.items():
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InvalidInput(f"input '{name}' must have shape [rows] or [rows, 1]")
        out[name] = arr if arr.dtype.kind == "f" else arr.tolist()
    return out


def _to_binary(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = [str(v).encode() for v in arr.reshape(-1)]
        return b"".join(len(p).to_bytes(4, "little") + p for p in parts)
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()


def encode_outputs(
    prediction: Prediction, payload: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], bytes]:
    """Outputs as V2 tensors; those asked for as binary go in the returned bytes."""
    names = list(prediction.outputs)
    binary_default = bool(_parameters(payload, "the request").get("binary_data_output", False))
    as_binary = dict.fromkeys(names, binary_default)
    requested = _requested_outputs(payload)
    if requested:
        unknown = [name for name, _ in requested if name not in prediction.outputs]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; the model gives {names}")
        names = [name for name, _ in requested]
        as_binary = {
            name: bool(parameters.get("binary_data", binary_default))
            for name, parameters in requested
        }
    outputs, chunks = [], []
    for name in names:
        arr = np.asarray(prediction.outputs[name])
        datatype = v2_datatype(arr)
        tensor: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if as_binary[name]:
            chunk = _to_binary(arr, datatype)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            data = arr.astype(str) if arr.dtype.kind in "OU" else arr
            tensor["data"] = data.reshape(-1).tolist()
        outputs.append(tensor)
    return outputs, b"".join(chunks)


def _requested_outputs(payload: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The request's ``outputs``: (name, parameters) of each, checked."""
    _parameters(payload, "the request")
    requested = payload.get("outputs")
    if requested is None:
        return []
    if not isinstance(requested, list):
        raise InvalidInput(
            "'outputs' must be a list of objects with a name",
            hint='e.g. "outputs": [{"name": "probabilities"}]',
        )
    checked = []
    for i, output in enumerate(requested):
        if not isinstance(output, Mapping) or not isinstance(output.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be an object with a string 'name'")
        checked.append((output["name"], _parameters(output, f"outputs[{i}]")))
    return checked


def model_metadata(endpoint: str, version: ModelVersion, versions: list[str]) -> dict[str, Any]:
    sig = version.signature
    return {
        "name": endpoint,
        "versions": versions,
        "platform": version.flavor,
        "inputs": [
            {"name": c.name, "datatype": V2_DATATYPES[c.type], "shape": [-1]} for c in sig.inputs
        ],
        "outputs": [
            {"name": o.name, "datatype": V2_DATATYPES[o.type], "shape": list(o.shape)}
            for o in sig.outputs
        ],
    }


def header_length(value: str, body_size: int) -> int:
    """The JSON part's size from ``Inference-Header-Content-Length``, checked."""
    if not value.isdigit() or int(value) > body_size:
        raise InvalidInput(
            f"{HEADER_LENGTH} is {value!r} but the body has {body_size} bytes",
            hint="it must give the size of the JSON part that starts the body",
        )
    return int(value)

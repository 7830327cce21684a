"""Arrow arrays built from buffers: same values as pyarrow's own conversion, and no
pandas import in a process that logs predictions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from modelport.monitoring import arrays


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5, np.nan, -2.0]),
        np.array([1.5, np.nan], dtype=np.float32),
        np.array([3, -1, 7], dtype=np.int32),
        np.array([3, 1], dtype=np.uint8),
        np.array([True, False, True, True, False, False, True, False, True]),
        np.array([], dtype=np.float64),
    ],
)
def test_numbers_match_pyarrow(values: np.ndarray) -> None:
    expected = pa.array(values, from_pandas=True)
    assert arrays.numbers(values).equals(expected)


def test_strided_numbers_are_made_contiguous() -> None:
    block = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert arrays.numbers(block[:, 1]).to_pylist() == [1.0, 5.0, 9.0]


@pytest.mark.parametrize(
    "items",
    [
        ["a", "bc", ""],
        ["a", None, "é", "日本"],
        [None, None],
        [b"raw", 1, 2.5, float("nan"), np.int64(4), True],
        [],
    ],
)
def test_strings(items: list[object]) -> None:
    def text(v: object) -> str | None:
        if v is None or (isinstance(v, float) and v != v):
            return None
        if isinstance(v, bytes):
            return v.decode()
        return str(v.item() if isinstance(v, np.generic) else v)

    made = arrays.strings(items)
    made.validate(full=True)
    assert made.type == pa.string() and made.to_pylist() == [text(v) for v in items]


def test_strings_refuse_objects_they_cannot_write() -> None:
    with pytest.raises(TypeError, match="cannot store a object as text"):
        arrays.strings(["a", object()])


def test_repeated_values() -> None:
    assert arrays.repeated("fraud", 3).to_pylist() == ["fraud"] * 3
    assert arrays.repeated("", 2).to_pylist() == ["", ""]
    assert arrays.repeated(7, 2, pa.int64()).to_pylist() == [7, 7]
    assert arrays.repeated(None, 2).null_count == 2


def test_values_of_object_arrays() -> None:
    assert arrays.values(np.array([1, None], dtype=object)).to_pylist() == [1.0, None]
    assert arrays.values(np.array(["no", "yes"])).to_pylist() == ["no", "yes"]


def test_lists() -> None:
    block = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    assert arrays.lists(block).to_pylist() == [[0.25, 0.75], [1.0, 0.0]]
    assert arrays.lists(np.array([["a", "b"]], dtype=object)).to_pylist() == [["a", "b"]]


def test_logging_a_prediction_never_imports_pandas() -> None:
    script = (
        "import sys; from modelport.monitoring.logwriter import warm_up; warm_up('p'); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_to_numpy_is_the_inverse_without_pandas() -> None:
    floats = arrays.numbers(np.array([1.5, np.nan, -2.0, 4.0]))
    np.testing.assert_array_equal(arrays.to_numpy(floats), [1.5, np.nan, -2.0, 4.0])
    np.testing.assert_array_equal(arrays.to_numpy(floats.slice(1, 2)), [np.nan, -2.0])
    ints = arrays.numbers(np.arange(6, dtype=np.int32))
    assert arrays.to_numpy(ints.slice(2)).tolist() == [2, 3, 4, 5]
    assert arrays.to_numpy(ints).dtype == np.int32
    bits = arrays.booleans(np.array([True, False, True, True, False, False, True, False, True]))
    assert arrays.to_numpy(bits.slice(3)).tolist() == [True, False, False, True, False, True]
    assert arrays.to_numpy(pa.array([1, None])) is None  # integers with nulls: not numbers
    assert arrays.to_numpy(pa.array(["a"])) is None
    kept = arrays.numbers(np.array([np.nan, 1.0]), nan_is_null=False)
    assert kept.null_count == 0 and np.isnan(arrays.to_numpy(kept)[0])


def test_scoring_a_batch_chunk_never_imports_pandas() -> None:
    """A batch worker running an ONNX model converts Arrow columns and outputs itself."""
    script = """
import sys
import numpy as np
from modelport.monitoring import arrays
from modelport.batch.scoring import _numpy, _arrow_output
x = _numpy(arrays.numbers(np.array([1.0, np.nan])))
y = _arrow_output(np.array([[0.25, 0.75], [1.0, 0.0]]), None)
z = _arrow_output(np.array([1, 0]), None)
print('pandas' in sys.modules, x.tolist()[0], y.to_pylist(), z.to_pylist())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False 1.0 [[0.25, 0.75], [1.0, 0.0]] [1, 0]"

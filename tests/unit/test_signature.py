from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelport.errors import SignatureMismatch
from modelport.signature import ColumnSpec, Signature

SIG = Signature(
    inputs=(
        ColumnSpec("amount", "double"),
        ColumnSpec("count", "long"),
        ColumnSpec("country", "string"),
        ColumnSpec("vip", "boolean"),
        ColumnSpec("score", "double", allow_missing=True),
    )
)


def good() -> dict[str, list[object]]:
    return {
        "amount": [1.5, 2],
        "count": [1, 2.0],
        "country": ["FR", "DE"],
        "vip": [True, False],
        "score": [None, 0.3],
    }


def test_infer_types_and_missing() -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": [1, 2], "c": ["x", "y"], "d": [True, False]})
    sig = Signature.infer(frame)
    assert [(c.name, c.type, c.allow_missing) for c in sig.inputs] == [
        ("a", "double", True),
        ("b", "long", False),
        ("c", "string", False),
        ("d", "boolean", False),
    ]
    assert Signature.from_dict(sig.to_dict()) == sig


def test_infer_from_array_uses_given_names() -> None:
    sig = Signature.infer(np.zeros((3, 2), dtype=np.float32), column_names=["x", "y"])
    assert [(c.name, c.type) for c in sig.inputs] == [("x", "float"), ("y", "float")]


def test_coerce_gives_typed_columns_in_order() -> None:
    cols = SIG.coerce({**good(), "extra_id": [7, 8]})
    assert list(cols) == ["amount", "count", "country", "vip", "score"]
    assert cols["amount"].dtype == np.float64
    assert cols["count"].dtype == np.int64
    assert cols["vip"].dtype == bool
    assert np.isnan(cols["score"][0])


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("amount", ["abc", 1.0], r"column 'amount' expects double, got str 'abc' at row 0"),
        ("amount", [1.0, None], r"column 'amount' has a missing value \(null/NaN\) at row 1"),
        ("amount", [1.0, True], r"expects double, got bool True at row 1"),
        ("count", [1, 1.5], r"column 'count' expects long, got float 1.5 at row 1"),
        ("country", ["FR", 3], r"column 'country' expects string, got int 3 at row 1"),
        ("vip", [True, "yes"], r"column 'vip' expects boolean, got str 'yes' at row 1"),
        ("amount", [1.0], r"column 'count' has 2 values but 'amount' has 1"),
    ],
)
def test_coerce_names_column_row_and_expectation(
    column: str, values: list[object], message: str
) -> None:
    payload = good()
    payload[column] = values
    with pytest.raises(SignatureMismatch, match=message):
        SIG.coerce(payload)


def test_missing_columns_are_listed() -> None:
    payload = good()
    del payload["country"], payload["vip"]
    with pytest.raises(SignatureMismatch, match=r"missing input column\(s\) \['country', 'vip'\]"):
        SIG.coerce(payload)


def test_matrix_input_checks_width() -> None:
    sig = Signature((ColumnSpec("a", "double"), ColumnSpec("b", "double")))
    cols = sig.coerce_matrix([[1, 2], [3, 4]])
    assert cols["b"].tolist() == [2.0, 4.0]
    with pytest.raises(
        SignatureMismatch, match=r"expected rows of 2 values \['a', 'b'\], got shape \[1, 3\]"
    ):
        sig.coerce_matrix([[1, 2, 3]])


def test_empty_request_is_rejected() -> None:
    sig = Signature((ColumnSpec("a", "double"),))
    with pytest.raises(SignatureMismatch, match="no rows"):
        sig.coerce({"a": []})


def test_numeric_blocks_take_the_vectorised_path_with_the_same_result() -> None:
    from modelport.signature import Table

    sig = Signature((ColumnSpec("a", "double"), ColumnSpec("b", "double")))
    table = Table(["b", "x", "a"], np.array([[1.0, 9.0, 2.0], [3.0, 9.0, 4.0]]))
    fast = sig.coerce_table(table)
    slow = sig.coerce({"a": [2.0, 4.0], "b": [1.0, 3.0]})
    assert isinstance(fast, Table) and list(fast) == ["a", "b"]
    assert fast.matrix.tolist() == [[2.0, 1.0], [4.0, 3.0]]
    for name in ("a", "b"):
        np.testing.assert_array_equal(fast[name], slow[name])


def test_numeric_block_errors_name_the_row_like_the_column_path() -> None:
    from modelport.signature import Table

    sig = Signature((ColumnSpec("a", "double"), ColumnSpec("b", "double")))
    with pytest.raises(SignatureMismatch, match=r"column 'b' has a missing value .* at row 1"):
        sig.coerce_table(Table(["a", "b"], np.array([[1.0, 2.0], [3.0, np.nan]])))
    with pytest.raises(SignatureMismatch, match=r"missing input column\(s\) \['b'\]"):
        sig.coerce_table(Table(["a", "c"], np.array([[1.0, 2.0]])))
    ints = Signature((ColumnSpec("n", "long"),)).coerce_matrix([[1], [2]])
    assert ints["n"].dtype == np.int64


def test_bools_never_pass_as_numbers_in_blocks() -> None:
    sig = Signature((ColumnSpec("a", "double"), ColumnSpec("b", "double")))
    with pytest.raises(SignatureMismatch, match="expects double, got bool True"):
        sig.coerce_matrix([[1.0, True]])


def test_numeric_matrix_refuses_booleans_strings_nulls_and_ragged_rows() -> None:
    from modelport.signature import numeric_matrix

    assert numeric_matrix([[0.0, 1.0], [1, 0]]).tolist() == [[0.0, 1.0], [1.0, 0.0]]  # type: ignore[union-attr]
    for rows in ([[1.0, True]], [[False, 2]], [[1.0, "2"]], [[1.0, None]], [[1.0], [1.0, 2.0]]):
        assert numeric_matrix(rows) is None, rows

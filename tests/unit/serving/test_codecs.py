from __future__ import annotations

import re

import numpy as np
import orjson
import pytest

from modelport.errors import InvalidInput
from modelport.serving import codecs
from modelport.serving.codecs import decode_csv, decode_json, decode_native_json, parse_json
from modelport.signature import Table


def test_mlflow_shapes_decode_to_columns() -> None:
    expected = {"a": [1, 3], "b": ["x", "y"]}
    split = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [3, "y"]]}}
    records = {"dataframe_records": [{"a": 1, "b": "x"}, {"a": 3, "b": "y"}]}
    instances = {"instances": [{"a": 1, "b": "x"}, {"a": 3, "b": "y"}]}
    inputs = {"inputs": {"a": [1, 3], "b": ["x", "y"]}}
    for payload in (split, records, instances, inputs):
        assert decode_json(payload) == expected
    assert decode_json({"instances": [[1, 2], [3, 4]]}) == [[1, 2], [3, 4]]
    assert decode_json({"inputs": [[1, 2]]}) == [[1, 2]]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"rows": []}, "exactly one of"),
        ({"instances": [], "inputs": []}, "exactly one of"),
        ({"dataframe_split": {"columns": ["a"]}}, "'columns' and 'data'"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}, "row 0 has 1 values"),
        ({"dataframe_records": [1, 2]}, "list of objects"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(payload: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_json(payload)


def test_invalid_json() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_json(b'{"a": ')
    with pytest.raises(InvalidInput, match="empty"):
        parse_json(b"")


def test_csv() -> None:
    assert decode_csv(b"a,b,c\n1,x,\n2.5,y,true\n") == {
        "a": [1, 2.5],
        "b": ["x", "y"],
        "c": [None, True],
    }
    with pytest.raises(InvalidInput, match="line 3 has 1 cells"):
        decode_csv(b"a,b\n1,2\n3\n")


@pytest.fixture(autouse=True)
def block_reader_for_small_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    """These bodies are small: let the block reader take them too."""
    monkeypatch.setattr(codecs, "BLOCK_BYTES", 0)


def split_body(columns: list[object], data: object, **extra: object) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra})


def test_a_numeric_split_is_read_into_one_block_equal_to_the_checked_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [[1.5, -2, 3e-7], [0, 1, 2**52], [1, 0, -0.25]]
    with monkeypatch.context() as patch:  # the block reader alone: orjson is not called
        patch.setattr(codecs, "parse_json", lambda _body: pytest.fail("orjson path taken"))
        raw = decode_native_json(split_body(["a", "b", "c"], rows, params={"k": 1}))
    assert isinstance(raw, Table) and list(raw) == ["a", "b", "c"]
    assert raw.matrix.dtype == np.float64 and raw.matrix.flags.writeable
    np.testing.assert_array_equal(raw.matrix, np.array(rows, dtype=np.float64))
    checked = decode_json(parse_json(split_body(["a", "b", "c"], rows)))
    assert isinstance(checked, Table)
    np.testing.assert_array_equal(raw.matrix, checked.matrix)


@pytest.mark.parametrize(
    "body",
    [
        split_body(["a", "b"], [[1, True], [3, 4]]),  # a boolean is not 1
        split_body(["a", "b"], [[1, None], [3, 4]]),  # a missing value
        split_body(["a", "b"], [[1, "x"], [3, 4]]),  # text
        split_body(["a", "b"], [[1, [2]], [3, 4]]),  # a nested value
        split_body(["a", "b"], [[1, 2, 3], [4]]),  # ragged rows, same count
        split_body(["a", "b"], [[1, 2**60], [3, 4]]),  # not exact in float64
        split_body([1, 2], [[1, 2]]),  # names that are not text
        split_body(["a"], []),  # no rows
        orjson.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}, "inputs": [[1]]}),
    ],
)
def test_bodies_the_block_reader_refuses_take_the_checked_path(body: bytes) -> None:
    try:
        expected = decode_json(parse_json(body))
    except InvalidInput as exc:
        with pytest.raises(InvalidInput, match=re.escape(exc.message)):
            decode_native_json(body)
        return
    raw = decode_native_json(body)
    if isinstance(expected, Table):
        assert isinstance(raw, Table) and list(raw) == list(expected)
        np.testing.assert_array_equal(raw.matrix, expected.matrix)
        assert raw.matrix.dtype == expected.matrix.dtype
    else:
        assert raw == expected


def test_broken_json_keeps_the_precise_message() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        decode_native_json(b'{"dataframe_split": {"columns": ["a"], "data": [[1]')
    with pytest.raises(InvalidInput, match="empty"):
        decode_native_json(b"")


def test_the_block_reader_reuses_its_parser_safely_across_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    held = codecs._parse(split_body(["a"], [[0]]))  # a live document of this thread's parser
    bodies = [split_body(["a", "b"], [[i, i + 0.5]] * (i + 1)) for i in range(40)]

    def decode(i: int) -> bool:
        raw = decode_native_json(bodies[i])
        expected = np.array([[i, i + 0.5]] * (i + 1), dtype=np.float64)
        return isinstance(raw, Table) and np.array_equal(raw.matrix, expected)

    assert decode(3)  # this thread's parser is in use by `held`: a fresh one parses
    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(decode, list(range(40)) * 5))
    assert held.get("dataframe_split") is not None  # the held document is untouched

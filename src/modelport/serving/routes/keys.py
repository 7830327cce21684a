"""API key routes: ``GET/POST /v1/keys``, ``DELETE /v1/keys/{id}`` (admin), and
``GET /v1/auth/whoami`` (any valid key).

The routes call `modelport.registry.keys.KeyStore`, as ``modelport keys`` does; what
each route needs is decided in front of them (`modelport.serving.auth`). A new key is
in the answer to ``POST`` once, and nowhere after.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from modelport.registry.keys import SCOPES, ApiKey, KeyStore
from modelport.serving.auth import SCOPE_KEY
from modelport.serving.http import json_response
from modelport.serving.state import app_state

router = APIRouter(prefix="/v1", tags=["auth"])


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="What the key is for, e.g. prometheus or checkout-service.")
    scopes: list[str] = Field(description=f"One or more of {', '.join(SCOPES)}.", min_length=1)
    endpoints: list[str] | None = Field(
        default=None, description="Limit the predict scope to these endpoints."
    )
    rate_limit: float | None = Field(
        default=None, description="The key's allowance in requests per second.", gt=0
    )


def _store(request: Request) -> KeyStore:
    return KeyStore(app_state(request).client.registry.engine)


def _actor(request: Request) -> str:
    """Who acts: the key that called, else (auth off) the server's user."""
    key: ApiKey | None = request.scope.get(SCOPE_KEY)
    return f"key:{key.name}" if key is not None else app_state(request).client.user


@router.get("/keys")
def list_keys(request: Request, include_revoked: bool = True) -> Response:
    """Every key, without secrets: id, name, scopes, endpoints, rate, who made it, when,
    and whether it is revoked."""
    records = _store(request).list(include_revoked=include_revoked)
    return json_response({"keys": [r.to_dict() for r in records]})


@router.post("/keys", status_code=201)
def create_key(body: KeyBody, request: Request) -> Response:
    """A new key; the answer's ``key`` is shown this once, only its hash is kept."""
    created = _store(request).create(
        body.name,
        scopes=body.scopes,
        endpoints=body.endpoints,
        rate_limit=body.rate_limit,
        actor=_actor(request),
    )
    return json_response(created.to_dict(), 201)


@router.delete("/keys/{key}")
def revoke_key(key: str, request: Request) -> Response:
    """Revoke a key by id (or active name); servers refuse it within their
    ``poll_interval_seconds``."""
    return json_response(_store(request).revoke(key, actor=_actor(request)).to_dict())


@router.get("/auth/whoami")
def whoami(request: Request) -> Response:
    """The key this request came with, or ``auth: false`` when the server asks for none
    (then every scope is open)."""
    key: ApiKey | None = request.scope.get(SCOPE_KEY)
    if key is None:
        return json_response(
            {"auth": False, "id": None, "name": None, "scopes": list(SCOPES), "endpoints": None}
        )
    return json_response({"auth": True, **key.to_dict()})

"""Rollout routes: start, read and steer progressive rollouts, and roll back.

The environment is the server's (``MODELPORT_ENV``), as for the other routes of this
server; each call runs `modelport.rollouts.Rollouts` (through `Client.rollouts`) in a
thread, as the CLI and the Python API do. Steps are taken and judged by the servers'
rollout driver (`modelport.serving.watcher`), not by these routes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from modelport.errors import InvalidInput, NotFound
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.rollouts import Rollouts

router = APIRouter(prefix="/v1", tags=["rollouts"])

#: What ``POST /v1/rollouts/{endpoint}/{action}`` can do to an active rollout.
ACTIONS = ("pause", "resume", "promote", "abort")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(description="Endpoint the rollout changes (deployed already).")
    to: str = Field(description="The candidate: models:/NAME/VERSION or models:/NAME@ALIAS.")
    steps: list[float | str] | str | None = Field(
        default=None,
        description="The candidate's share per step, ending at 100: [0, 5, 50, 100] or "
        '"shadow,5,50,100" (default: the endpoint\'s rollout policy).',
    )
    interval: str | float | None = Field(
        default=None, description="How long each step runs before it is judged: 300 or 5m."
    )
    reason: str | None = Field(default=None, description="Why, kept with the rollout.")


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, description="Why, kept with the change.")


def _rollouts(request: Request) -> Rollouts:
    state = app_state(request)
    return state.client.rollouts(state.settings.env)


def _steps(steps: list[float | str] | str | None) -> list[float | str] | None:
    if not isinstance(steps, str):
        return steps
    from modelport.rollouts import parse_steps

    try:
        return list(parse_steps(steps))
    except ValueError as exc:
        raise InvalidInput(f"invalid steps {steps!r}: {exc}") from None


@router.post("/rollouts", status_code=201)
async def start_rollout(body: StartBody, request: Request) -> Response:
    """Start moving an endpoint to a new version step by step; the first step is
    taken now. 409 if the endpoint already has an active rollout."""
    rollouts = _rollouts(request)
    rollout = await asyncio.to_thread(
        rollouts.start,
        body.endpoint,
        body.to,
        steps=_steps(body.steps),
        interval=body.interval,
        reason=body.reason,
    )
    return json_response(rollout.to_dict(), 201)


@router.get("/rollouts")
async def list_rollouts(
    request: Request,
    endpoint: Annotated[str | None, Query(description="Only this endpoint.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """Rollouts of this server's environment, newest first."""
    rollouts = _rollouts(request)
    found = await asyncio.to_thread(rollouts.recent, endpoint, limit=limit)
    return json_response({"rollouts": [r.to_dict() for r in found]})


@router.get("/rollouts/{endpoint}")
async def rollout_status(endpoint: str, request: Request) -> Response:
    """The endpoint's active rollout, else its latest."""
    rollout = await asyncio.to_thread(_rollouts(request).status, endpoint)
    return json_response(rollout.to_dict())


@router.post("/rollouts/{endpoint}/{action}")
async def steer_rollout(
    endpoint: str,
    action: str,
    request: Request,
    body: ReasonBody | None = None,
    full: Annotated[bool, Query(description="promote: go straight to 100%.")] = False,
) -> Response:
    """``pause``, ``resume``, ``promote`` (the next step now; ``?full=true``: 100%) or
    ``abort`` (restore the deployment the rollout started from; body ``{"reason"}``)."""
    rollouts = _rollouts(request)
    kwargs: dict[str, Any] = {}
    if action == "promote":
        kwargs["full"] = full
    elif action == "abort":
        kwargs["reason"] = body.reason if body else None
    elif action not in ACTIONS:
        raise NotFound(
            f"no rollout action {action!r}",
            hint="POST /v1/rollouts/{endpoint}/pause, resume, promote or abort",
        )
    rollout = await asyncio.to_thread(getattr(rollouts, action), endpoint, **kwargs)
    return json_response(rollout.to_dict())


@router.post("/deployments/{endpoint}/rollback")
async def rollback(endpoint: str, request: Request, body: ReasonBody | None = None) -> Response:
    """Return the endpoint to what it served before its last change, now (an active
    rollout is aborted back to where it started)."""
    rollouts = _rollouts(request)
    reason = body.reason if body else None
    deployment = await asyncio.to_thread(rollouts.rollback, endpoint, reason=reason)
    return json_response(deployment.to_dict())

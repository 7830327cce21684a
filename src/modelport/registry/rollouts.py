"""Rollouts as the registry keeps them: one row per rollout, changed by compare-and-set.

A rollout moves one endpoint from its ``baseline`` deployment to a ``candidate``
variant through the policy's steps. Its state lives here, not in a server, so it
survives restarts and any replica can drive it; every change is a compare-and-set on
``generation``, so two drivers never take the same step twice. At most one rollout per
endpoint is active (running or paused).

Example::

    store = RolloutStore(registry.engine)
    rollout = store.create("production", "fraud", candidate, baseline, policy, actor="ana")
    store.update(rollout, step=0, step_started_at=now)  # None if someone else moved first
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from modelport.errors import Conflict, NotFound
from modelport.registry import schema as t
from modelport.registry.entities import DeploymentSpec, RolloutPolicy, Variant, iso
from modelport.registry.entities import now as _now
from modelport.registry.entities import utc as _utc

RUNNING, PAUSED = "running", "paused"
SUCCEEDED, ROLLED_BACK, ABORTED = "succeeded", "rolled_back", "aborted"
ACTIVE = (RUNNING, PAUSED)
#: Analyses kept per rollout (the newest); a long wait for traffic adds one per check.
ANALYSES_KEPT = 50


@dataclass(frozen=True)
class Rollout:
    """One rollout: where it is, what it judged, how it ended."""

    id: int
    environment: str
    endpoint: str
    state: str
    candidate: Variant
    baseline: DeploymentSpec
    policy: RolloutPolicy
    step: int
    step_started_at: datetime | None
    generation: int
    created_at: datetime
    updated_at: datetime
    analyses: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None
    incident_id: int | None = None
    created_by: str | None = None
    reason: str | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def percent(self) -> float:
        """The candidate's share of live traffic now (0 before the first step, and in
        a shadow step)."""
        return self.policy.steps[self.step] if self.step >= 0 else 0.0

    @property
    def last_step(self) -> bool:
        return self.step == len(self.policy.steps) - 1

    def spec_at(self, step: int) -> DeploymentSpec:
        """The deployment at ``step``: the candidate first with the step's share (a
        shadow at 0), the baseline's live variants sharing the rest in their
        proportions, the baseline's other shadows kept."""
        percent = self.policy.steps[step]
        name = self.candidate.name
        live = [v for v in self.baseline.live if v.name != name]
        shadows = [v for v in self.baseline.shadows if v.name != name]
        total = sum(v.weight for v in live)
        rest = 100.0 - percent
        if percent == 0:
            first = replace(self.candidate, weight=0.0, shadow=True)
            return self.baseline.with_variants([*live, first, *shadows])
        first = replace(self.candidate, weight=percent, shadow=False)
        if rest <= 0 or not live:
            return self.baseline.with_variants([first, *shadows])
        scaled = [replace(v, weight=round(v.weight / total * rest, 6)) for v in live]
        return self.baseline.with_variants([first, *scaled, *shadows])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "environment": self.environment,
            "endpoint": self.endpoint,
            "state": self.state,
            "candidate": self.candidate.to_dict() | {"uri": self.candidate.uri},
            "baseline": self.baseline.to_dict(),
            "policy": self.policy.to_dict(),
            "step": self.step,
            "steps": list(self.policy.steps),
            "percent": self.percent,
            "step_started_at": iso(self.step_started_at),
            "analyses": self.analyses,
            "message": self.message,
            "incident_id": self.incident_id,
            "generation": self.generation,
            "created_by": self.created_by,
            "reason": self.reason,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
        }


class RolloutStore:
    """The ``rollouts`` table, on the registry's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        environment: str,
        endpoint: str,
        candidate: Variant,
        baseline: DeploymentSpec,
        policy: RolloutPolicy,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> Rollout:
        """A new running rollout, before its first step; `Conflict` if one is active."""
        now = _now()
        try:
            with self.engine.begin() as conn:
                rid = conn.execute(
                    t.rollouts.insert()
                    .values(
                        environment=environment,
                        endpoint=endpoint,
                        active_key=f"{environment}/{endpoint}",
                        state=RUNNING,
                        candidate=candidate.to_dict(),
                        baseline=baseline.to_dict(),
                        policy=policy.to_dict(),
                        step=-1,
                        step_started_at=None,
                        analyses=[],
                        generation=0,
                        created_by=actor,
                        reason=reason,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(t.rollouts.c.id)
                ).scalar_one()
        except IntegrityError:
            active = self.active(environment, endpoint)
            which = f" (rollout {active.id}, to {active.candidate.uri})" if active else ""
            raise Conflict(
                f"{environment}/{endpoint} already has an active rollout{which}",
                hint=f"see `modelport rollout status {endpoint} --env {environment}`; "
                "abort it or let it finish first",
            ) from None
        return self.get(rid)

    def get(self, rollout_id: int) -> Rollout:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)).first()
        if row is None:
            raise NotFound(f"rollout {rollout_id} does not exist")
        return _to_rollout(row)

    def find(
        self,
        environment: str | None = None,
        endpoint: str | None = None,
        *,
        active_only: bool = False,
        limit: int = 50,
    ) -> list[Rollout]:
        """Rollouts, newest first."""
        c = t.rollouts.c
        query = sa.select(t.rollouts).order_by(c.id.desc()).limit(limit)
        if environment is not None:
            query = query.where(c.environment == environment)
        if endpoint is not None:
            query = query.where(c.endpoint == endpoint)
        if active_only:
            query = query.where(c.active_key.is_not(None))
        with self.engine.begin() as conn:
            return [_to_rollout(r) for r in conn.execute(query)]

    def active(self, environment: str, endpoint: str) -> Rollout | None:
        found = self.find(environment, endpoint, active_only=True, limit=1)
        return found[0] if found else None

    def update(self, rollout: Rollout, **changes: Any) -> Rollout | None:
        """Apply ``changes`` if nobody changed the rollout since it was read (its
        generation); the new rollout, or None when someone else moved first. A final
        ``state`` frees the endpoint for the next rollout."""
        values = dict(changes)
        if "analyses" in values:
            values["analyses"] = list(values["analyses"])[-ANALYSES_KEPT:]
        now = _now()
        if values.get("state") not in (None, *ACTIVE):
            values["active_key"] = None
            values["finished_at"] = now
        c = t.rollouts.c
        with self.engine.begin() as conn:
            done = conn.execute(
                t.rollouts.update()
                .where(c.id == rollout.id)
                .where(c.generation == rollout.generation)
                .values(generation=rollout.generation + 1, updated_at=now, **values)
            ).rowcount
        return self.get(rollout.id) if done else None


def _to_rollout(row: Any) -> Rollout:
    return Rollout(
        id=row.id,
        environment=row.environment,
        endpoint=row.endpoint,
        state=row.state,
        candidate=Variant.from_dict(row.candidate),
        baseline=DeploymentSpec.from_dict(row.baseline),
        policy=RolloutPolicy.from_dict(row.policy),
        step=row.step,
        step_started_at=_utc(row.step_started_at),
        generation=row.generation,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        analyses=list(row.analyses or []),
        message=row.message,
        incident_id=row.incident_id,
        created_by=row.created_by,
        reason=row.reason,
        finished_at=_utc(row.finished_at),
    )

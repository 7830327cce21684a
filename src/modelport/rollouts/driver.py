"""Rollouts: start, step, judge, promote or roll back; and rollback in one call.

`Rollouts` is both the Python API (``start``, ``pause``, ``resume``, ``promote``,
``abort``, ``rollback``) and the driver a server runs (``tick``). Every state change is
a compare-and-set on the rollout's generation and every deployment write a
compare-and-set on the deployment's revision, so any number of servers may tick: one
takes each step, the others see it taken.

A step: the deployment becomes ``rollout.spec_at(step)`` (recorded in the history as
action ``rollout``). After ``policy.interval_s`` the candidate is judged on that
interval (`modelport.rollouts.analysis`): pass, the next step (the last, 100%, ends the
rollout); wait, another interval (too little traffic); fail, the baseline deployment
is restored at once (action ``rollback``) and an incident with the failed checks goes
to the receivers the candidate's owner routes to.

A deployment that follows an alias (``follow: fraud@champion``) gets a rollout when the
alias moves to another version; a candidate that was rolled back is not retried until
the alias moves again.

Example::

    rollouts = Rollouts(client, environment="production")
    rollouts.start("fraud", "models:/fraud/4", steps=[5, 50, 100], interval="5m")
    rollouts.tick()  # what a server does every few seconds
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelport.durations import parse_duration
from modelport.errors import Conflict, InvalidInput, ModelportError, NotFound
from modelport.registry import Deployment, DeploymentEvent, DeploymentSpec, Variant
from modelport.registry.rollouts import (
    ABORTED,
    PAUSED,
    ROLLED_BACK,
    RUNNING,
    SUCCEEDED,
    Rollout,
    RolloutStore,
)
from modelport.rollouts.analysis import FAIL, PASS, Analysis, analyze

if TYPE_CHECKING:
    from modelport.alerting.model import Alert
    from modelport.client import Client
    from modelport.monitoring.labels import LabelStore
    from modelport.monitoring.logstore import LogStore

log = logging.getLogger(__name__)

#: Called with an alert and its diagnosis when a rollout rolls back; returns the
#: incident's id (`AlertEngine.announce` in a server).
Announce = Callable[["Alert", dict[str, Any]], int | None]


def _now() -> datetime:
    return datetime.now(UTC)


class Rollouts:
    """Rollouts of one environment's endpoints."""

    def __init__(
        self,
        client: Client,
        *,
        environment: str,
        announce: Announce | None = None,
        logs: LogStore | None = None,
        labels: LabelStore | None = None,
    ) -> None:
        self.client = client
        self.registry = client.registry
        self.environment = environment
        self.store = RolloutStore(client.registry.engine)
        self.announce = announce
        self._logs = logs
        self._labels = labels

    @property
    def logs(self) -> LogStore:
        if self._logs is None:
            from modelport.monitoring.logstore import LogStore

            self._logs = LogStore(self.client.settings)
        return self._logs

    @property
    def labels(self) -> LabelStore:
        if self._labels is None:
            from modelport.monitoring.labels import LabelStore

            self._labels = LabelStore(self.client.settings, registry=self.registry)
        return self._labels

    # -- the API ---------------------------------------------------------------

    def start(
        self,
        endpoint: str,
        uri: str,
        *,
        steps: Sequence[float | str] | None = None,
        interval: str | float | None = None,
        actor: str | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Rollout:
        """Start moving ``endpoint`` to ``uri`` step by step, with the endpoint's rollout
        policy (``steps`` and ``interval`` override it); the first step is taken now."""
        deployment = self.registry.get_deployment(self.environment, endpoint)
        version = self.client.get_version(uri)
        candidate = Variant(model=version.name, version=version.version, source=uri)
        spec = deployment.spec
        if len(spec.live) == 1 and spec.primary.name == candidate.name:
            raise Conflict(
                f"{self.environment}/{endpoint} already serves {candidate.uri}",
                hint="register a new version, or deploy another one first",
            )
        policy = spec.rollout
        try:
            if steps is not None:
                policy = replace(policy, steps=tuple(parse_step(s) for s in steps))
            if interval is not None:
                policy = replace(policy, interval_s=parse_duration(interval))
        except ValueError as exc:
            raise InvalidInput(f"invalid rollout policy: {exc}") from None
        actor = actor or self.client.user
        rollout = self.store.create(
            self.environment, endpoint, candidate, spec, policy, actor=actor, reason=reason
        )
        log.info("rollout %d: %s/%s -> %s", rollout.id, self.environment, endpoint, candidate.uri)
        return self._step(rollout, 0, deployment, now or _now()) or self.store.get(rollout.id)

    def get(self, rollout_id: int) -> Rollout:
        return self.store.get(rollout_id)

    def status(self, endpoint: str) -> Rollout:
        """The endpoint's active rollout, else its latest."""
        found = self.store.find(self.environment, endpoint, limit=1)
        if not found:
            raise NotFound(
                f"{self.environment}/{endpoint} has had no rollout",
                hint=f"start one: modelport rollout start {endpoint} --to models:/NAME/VERSION",
            )
        return found[0]

    def recent(self, endpoint: str | None = None, *, limit: int = 50) -> list[Rollout]:
        """Rollouts of the environment (or one endpoint), newest first."""
        return self.store.find(self.environment, endpoint, limit=limit)

    def pause(self, endpoint: str) -> Rollout:
        rollout = self._active(endpoint, RUNNING)
        return self._change(rollout, state=PAUSED, message="paused by hand")

    def resume(self, endpoint: str, now: datetime | None = None) -> Rollout:
        """Resume a paused rollout; its step's interval starts again."""
        rollout = self._active(endpoint, PAUSED)
        return self._change(rollout, state=RUNNING, step_started_at=now or _now(), message=None)

    def promote(self, endpoint: str, *, full: bool = False, now: datetime | None = None) -> Rollout:
        """Take the next step now without judging (``full``: go straight to 100%)."""
        rollout = self._active(endpoint)
        target = len(rollout.policy.steps) - 1 if full else rollout.step + 1
        deployment = self.registry.get_deployment(self.environment, endpoint)
        moved = self._step(rollout, target, deployment, now or _now(), message="promoted by hand")
        if moved is None:
            raise Conflict(f"rollout {rollout.id} changed meanwhile; look at it again")
        return moved

    def abort(self, endpoint: str, *, reason: str | None = None) -> Rollout:
        """Stop the active rollout and restore the deployment it started from."""
        rollout = self._active(endpoint)
        return self._end(rollout, ABORTED, reason or f"aborted by {self.client.user}")

    def rollback(self, endpoint: str, *, reason: str | None = None) -> Deployment:
        """Return ``endpoint`` to what it served before its last change, now: an active
        rollout is aborted (back to its baseline); otherwise the previous deployment
        in the history is restored."""
        actor = self.client.user
        active = self.store.active(self.environment, endpoint)
        if active is not None:
            self._end(active, ABORTED, reason or f"rolled back by {actor}")
            return self.registry.get_deployment(self.environment, endpoint)
        current = self.registry.get_deployment(self.environment, endpoint)
        target = _before_last_change(self.registry.history(self.environment, endpoint))
        if target is not None and target[1] != current.spec.to_dict():
            revision, previous = target
            return self.registry.set_deployment(
                self.environment,
                endpoint,
                DeploymentSpec.from_dict(previous),
                action="rollback",
                actor=actor,
                reason=reason or f"rollback to revision {revision}",
                expect_revision=current.revision,
            )
        raise NotFound(
            f"{self.environment}/{endpoint} has no earlier deployment to return to",
            hint=f"see `modelport history {endpoint} --env {self.environment}`",
        )

    # -- the driver ------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Rollout]:
        """Judge every running rollout whose interval is over, and start rollouts for
        followed aliases that moved. Returns the rollouts that changed."""
        now = now or _now()
        changed = []
        for rollout in self.store.find(self.environment, active_only=True, limit=1000):
            try:
                done = self._judge(rollout, now)
            except ModelportError:
                log.exception("rollout %d: could not be judged; will retry", rollout.id)
                continue
            if done is not None:
                changed.append(done)
        for deployment in self.registry.list_deployments(self.environment):
            if deployment.spec.follow is None:
                continue
            try:
                started = self._follow(deployment, now)
            except ModelportError:
                log.exception(
                    "could not follow %s on %s", deployment.spec.follow, deployment.endpoint
                )
                continue
            if started is not None:
                changed.append(started)
        return changed

    def _judge(self, rollout: Rollout, now: datetime) -> Rollout | None:
        if rollout.state != RUNNING or rollout.step_started_at is None:
            return None
        deployment = self.registry.get_deployment(self.environment, rollout.endpoint)
        expected = rollout.spec_at(rollout.step)
        if deployment.spec != expected:
            before = rollout.spec_at(rollout.step - 1) if rollout.step > 0 else rollout.baseline
            if deployment.spec == before:
                return self._write(rollout, expected, deployment)  # an interrupted step
            return self._superseded(rollout, deployment)
        interval = timedelta(seconds=rollout.policy.interval_s)
        if now - rollout.step_started_at < interval:
            return None
        analysis = analyze(self.logs, self.labels, rollout, since=now - interval, until=now)
        analyses = [*rollout.analyses, analysis.to_dict()]
        log.info("rollout %d step %d: %s", rollout.id, rollout.step, analysis.summary())
        if analysis.verdict == PASS:
            if rollout.last_step:
                return self.store.update(
                    rollout, state=SUCCEEDED, analyses=analyses, message="every step passed"
                )
            return self._step(rollout, rollout.step + 1, deployment, now, analyses=analyses)
        if analysis.verdict == FAIL:
            return self._fail(rollout, analysis, analyses)
        return self.store.update(  # wait: judge the next interval
            rollout, step_started_at=now, analyses=analyses, message=analysis.summary()
        )

    def _step(
        self,
        rollout: Rollout,
        step: int,
        deployment: Deployment,
        now: datetime,
        *,
        analyses: list[dict[str, Any]] | None = None,
        message: str | None = None,
    ) -> Rollout | None:
        """Claim ``step`` (compare-and-set), then write its deployment; the last step
        ends the rollout."""
        spec = rollout.spec_at(step)
        last = step == len(rollout.policy.steps) - 1
        changes: dict[str, Any] = {"step": step, "step_started_at": now, "message": message}
        if analyses is not None:
            changes["analyses"] = analyses
        if last:
            changes.update(state=SUCCEEDED, message=message or "reached 100%")
        claimed = self.store.update(rollout, **changes)
        if claimed is None:
            return None
        self._write(claimed, spec, deployment)
        return claimed

    def _write(self, rollout: Rollout, spec: DeploymentSpec, deployment: Deployment) -> Rollout:
        percent = rollout.policy.steps[rollout.step]
        what = "shadow" if percent == 0 else f"{percent:g}%"
        self.registry.set_deployment(
            self.environment,
            rollout.endpoint,
            spec,
            action="rollout",
            actor=f"rollout/{rollout.id}",
            reason=f"rollout {rollout.id} step {rollout.step + 1}/{len(rollout.policy.steps)}: "
            f"{rollout.candidate.uri} at {what}",
            expect_revision=deployment.revision,
        )
        return rollout

    def _fail(
        self, rollout: Rollout, analysis: Analysis, analyses: list[dict[str, Any]]
    ) -> Rollout | None:
        message = f"rolled back at step {rollout.step + 1}: {analysis.summary()}"
        ended = self._end(rollout, ROLLED_BACK, message, analyses=analyses)
        if ended is None or self.announce is None:
            return ended
        try:
            incident = self.announce(*self._incident(ended, analysis))
        except Exception:
            log.exception("rollout %d: could not open its incident", rollout.id)
            return ended
        return self.store.update(ended, incident_id=incident) or ended

    def _end(
        self,
        rollout: Rollout,
        state: str,
        message: str,
        *,
        analyses: list[dict[str, Any]] | None = None,
    ) -> Rollout:
        """Finish ``rollout`` in ``state`` and restore its baseline deployment."""
        changes: dict[str, Any] = {"state": state, "message": message}
        if analyses is not None:
            changes["analyses"] = analyses
        ended = self.store.update(rollout, **changes)
        if ended is None:
            raise Conflict(f"rollout {rollout.id} changed meanwhile; look at it again")
        self.registry.set_deployment(
            self.environment,
            rollout.endpoint,
            rollout.baseline,
            action="rollback",
            actor=f"rollout/{rollout.id}" if state == ROLLED_BACK else self.client.user,
            reason=message,
        )
        log.warning("rollout %d %s: %s", rollout.id, state, message)
        return ended

    def _superseded(self, rollout: Rollout, deployment: Deployment) -> Rollout | None:
        message = (
            f"aborted: the deployment was changed outside the rollout (revision "
            f"{deployment.revision} by {deployment.updated_by or 'unknown'}); it is kept"
        )
        return self.store.update(rollout, state=ABORTED, message=message)

    def _follow(self, deployment: Deployment, now: datetime) -> Rollout | None:
        follow = deployment.spec.follow or ""
        target = self.client.get_version(f"models:/{follow}")
        spec = deployment.spec
        if len(spec.live) == 1 and spec.primary.name == f"{target.name}-v{target.version}":
            return None
        if self.store.active(self.environment, deployment.endpoint) is not None:
            return None
        latest = self.store.find(self.environment, deployment.endpoint, limit=1)
        if latest and latest[0].candidate.name == f"{target.name}-v{target.version}":
            return None  # already rolled out to it (and rolled back): wait for a new move
        try:
            return self.start(
                deployment.endpoint,
                f"models:/{target.name}/{target.version}",
                actor=f"alias {follow}",
                reason=f"{follow} moved to version {target.version}",
                now=now,
            )
        except Conflict:
            return None  # another server started it first

    # -- helpers ---------------------------------------------------------------

    def _active(self, endpoint: str, state: str | None = None) -> Rollout:
        rollout = self.store.active(self.environment, endpoint)
        if rollout is None:
            raise NotFound(
                f"{self.environment}/{endpoint} has no active rollout",
                hint=f"see `modelport rollout status {endpoint} --env {self.environment}`",
            )
        if state is not None and rollout.state != state:
            raise Conflict(f"rollout {rollout.id} is {rollout.state}, not {state}")
        return rollout

    def _change(self, rollout: Rollout, **changes: Any) -> Rollout:
        changed = self.store.update(rollout, **changes)
        if changed is None:
            raise Conflict(f"rollout {rollout.id} changed meanwhile; look at it again")
        return changed

    def _incident(self, rollout: Rollout, analysis: Analysis) -> tuple[Alert, dict[str, Any]]:
        from modelport.alerting.model import Alert

        candidate = rollout.candidate
        mv = self.registry.get_version(candidate.model, candidate.version)
        model = self.registry.get_model(candidate.model)
        failed = analysis.failed
        labels = {
            "alertname": "RolloutRolledBack",
            "severity": "critical",
            "environment": self.environment,
            "endpoint": rollout.endpoint,
            "model": candidate.model,
            "version": str(candidate.version),
            "owner": mv.owner or model.owner or "",
            "team": model.team or "",
        }
        baseline = ", ".join(v.uri for v in rollout.baseline.live)
        annotations = {
            "summary": f"Rollout of {candidate.uri} on {rollout.endpoint} rolled back",
            "description": (
                f"Rollout {rollout.id} was rolled back at step {rollout.step + 1} "
                f"({rollout.percent:g}%): {analysis.summary()}. {rollout.endpoint} serves "
                f"{baseline} again."
            ),
        }
        alert = Alert(labels, annotations, "firing", _now(), value=None)
        diagnosis = {
            "rollout": {"id": rollout.id, "candidate": candidate.uri, "baseline": baseline},
            "analysis": analysis.to_dict(),
            "failed_checks": [c.to_dict() for c in failed],
            "next_steps": [
                f"modelport rollout status {rollout.endpoint} --env {self.environment}",
                f'modelport logs query "SELECT status, error, count(*) FROM predictions '
                f"WHERE endpoint = '{rollout.endpoint}' AND variant = '{candidate.name}' "
                'GROUP BY ALL"',
                f"fix the model, register a new version, then: modelport rollout start "
                f"{rollout.endpoint} --to models:/{candidate.model}/NEW --env {self.environment}",
            ],
        }
        return alert, diagnosis


def _before_last_change(events: Sequence[DeploymentEvent]) -> tuple[int, dict[str, Any]] | None:
    """(revision, spec) the endpoint had before its last change; a rollout's steps are
    one change (what it served before the first step)."""
    found: tuple[int, dict[str, Any]] | None = None
    for event in reversed(events):
        if event.previous is not None and (event.action == "rollout" or found is None):
            found = (event.revision - 1, event.previous)
        if event.action != "rollout":
            break
    return found


def parse_step(step: float | str) -> float:
    """A rollout step: a percent, or ``shadow`` (0)."""
    if isinstance(step, str):
        text = step.strip().lower().removesuffix("%")
        if text == "shadow":
            return 0.0
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"a step is a percent or 'shadow', not {step!r}") from None
    return float(step)


def parse_steps(text: str) -> list[float]:
    """``"shadow,5,25,100"`` -> ``[0, 5, 25, 100]``."""
    return [parse_step(part) for part in text.split(",") if part.strip()]

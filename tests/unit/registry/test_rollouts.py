"""Rollouts as state: steps, verdicts, compare-and-set, rollback, following an alias.

The analysis is replaced by a scripted verdict so the state machine is tested alone
(the analysis has its own tests, the whole loop runs in tests/integration). Runs on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelport.client import Client
from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import DeploymentSpec, RolloutPolicy, Variant
from modelport.rollouts import Rollouts, driver, parse_steps
from modelport.rollouts.analysis import Analysis, Check
from modelport.settings import Settings

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = RolloutPolicy(steps=(10.0, 50.0, 100.0), interval_s=60.0, min_requests=1)


@pytest.fixture
def rc(
    registry_url: str, tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> Iterator[Client]:
    settings = Settings(home=tmp_path / "home", registry_url=registry_url, user="ana")
    client = Client(settings)
    path, frame = sklearn_classifier
    client.registry.ensure_model("clf", owner="ana@example.com")
    for n in range(3):
        client.register_model("clf", path, sample_input=frame, description=f"v{n + 1}")
    spec = DeploymentSpec(DeploymentSpec.single("clf", 1).variants, rollout=POLICY)
    client.registry.set_deployment("production", "clf", spec)
    yield client
    client.close()


@pytest.fixture
def verdicts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The verdicts the next analyses return, in order ("pass" when none is left)."""
    script: list[str] = []

    def scripted(logs: Any, labels: Any, rollout: Any, *, since: Any, until: Any) -> Analysis:
        verdict = script.pop(0) if script else "pass"
        passed = {"pass": True, "fail": False, "wait": True}[verdict]
        checks = [Check("traffic", verdict != "wait", 5.0, 1.0, "the candidate answered 5")]
        checks.append(Check("error_rate", passed, 0.2, 0.02, "20% of requests failed"))
        return Analysis(rollout.step, rollout.percent, since, until, checks)

    monkeypatch.setattr(driver, "analyze", scripted)
    return script


def live(client: Client) -> list[tuple[str, float]]:
    spec = client.get_deployment("clf").spec
    return [(v.name, v.weight) for v in spec.live]


def test_each_step_is_a_deployment_and_a_pass_moves_on(rc: Client, verdicts: list[str]) -> None:
    rollouts = rc.rollouts()
    rollout = rollouts.start("clf", "models:/clf/2", now=T0)
    assert (rollout.state, rollout.step, rollout.percent) == ("running", 0, 10.0)
    assert live(rc) == [("clf-v2", 10.0), ("clf-v1", 90.0)]
    assert rollouts.tick(T0 + timedelta(seconds=30)) == []  # the interval is not over
    (moved,) = rollouts.tick(T0 + timedelta(seconds=61))
    assert moved.step == 1 and live(rc) == [("clf-v2", 50.0), ("clf-v1", 50.0)]
    (done,) = rollouts.tick(T0 + timedelta(seconds=122))
    assert done.state == "succeeded" and live(rc) == [("clf-v2", 100.0)]
    assert [a["verdict"] for a in done.analyses] == ["pass", "pass"]
    actions = [(e.action, e.actor) for e in rc.history("clf")][-3:]
    assert actions == [("rollout", f"rollout/{rollout.id}")] * 3
    with pytest.raises(NotFound, match="no active rollout"):
        rollouts.pause("clf")


def test_too_little_traffic_waits_and_a_failure_rolls_back_and_announces(
    rc: Client, verdicts: list[str]
) -> None:
    announced: list[tuple[Any, dict[str, Any]]] = []

    def announce(alert: Any, diagnosis: dict[str, Any]) -> int:
        announced.append((alert, diagnosis))
        return 7

    rollouts = Rollouts(rc, environment="production", announce=announce)
    rollout = rollouts.start("clf", "models:/clf/2", now=T0)
    verdicts.extend(["wait", "fail"])
    (waited,) = rollouts.tick(T0 + timedelta(seconds=61))
    assert waited.state == "running" and waited.step == 0 and "answered 5" in waited.message
    (failed,) = rollouts.tick(T0 + timedelta(seconds=122))
    assert failed.state == "rolled_back" and failed.incident_id == 7
    assert live(rc) == [("clf-v1", 100.0)]
    assert rc.history("clf")[-1].action == "rollback"
    (alert, diagnosis) = announced[0]
    assert alert.labels["alertname"] == "RolloutRolledBack"
    assert alert.labels["owner"] == "ana@example.com" and alert.labels["version"] == "2"
    assert "20% of requests failed" in alert.annotations["description"]
    assert diagnosis["failed_checks"][0]["check"] == "error_rate"
    assert rollouts.status("clf").id == rollout.id
    # the endpoint is free again
    assert rollouts.start("clf", "models:/clf/3", now=T0).state == "running"


def test_two_drivers_never_take_the_same_step(
    rc: Client, verdicts: list[str], request: pytest.FixtureRequest
) -> None:
    other = Client(rc.settings)
    request.addfinalizer(other.close)
    first, second = rc.rollouts(), Rollouts(other, environment="production")
    rollout = first.start("clf", "models:/clf/2", now=T0)
    stale = second.store.get(rollout.id)
    later = T0 + timedelta(seconds=61)
    assert len(first.tick(later)) == 1
    assert second._judge(stale, later) is None  # its read is out of date: it does nothing
    assert second.tick(later) == []  # and, reading again, sees the new step's interval
    steps = [e for e in rc.history("clf") if e.action == "rollout"]
    assert len(steps) == 2 and rc.rollouts().get(rollout.id).step == 1


def test_only_one_active_rollout_per_endpoint(rc: Client) -> None:
    rollouts = rc.rollouts()
    rollouts.start("clf", "models:/clf/2", now=T0)
    with pytest.raises(Conflict, match="already has an active rollout"):
        rollouts.start("clf", "models:/clf/3", now=T0)
    rollouts.abort("clf")
    with pytest.raises(Conflict, match="already serves"):
        rollouts.start("clf", "models:/clf/1", now=T0)


def test_pause_resume_promote_abort(rc: Client, verdicts: list[str]) -> None:
    rollouts = rc.rollouts()
    rollouts.start("clf", "models:/clf/2", steps=["shadow", "50", "100"], now=T0)
    spec = rc.get_deployment("clf").spec
    assert [(v.name, v.shadow) for v in spec.variants] == [("clf-v1", False), ("clf-v2", True)]
    paused = rollouts.pause("clf")
    assert paused.state == "paused" and rollouts.tick(T0 + timedelta(hours=1)) == []
    resumed = rollouts.resume("clf", now=T0 + timedelta(hours=1))
    assert resumed.state == "running" and resumed.step_started_at == T0 + timedelta(hours=1)
    promoted = rollouts.promote("clf")
    assert promoted.step == 1 and live(rc) == [("clf-v2", 50.0), ("clf-v1", 50.0)]
    aborted = rollouts.abort("clf", reason="wrong model")
    assert aborted.state == "aborted" and aborted.message == "wrong model"
    assert live(rc) == [("clf-v1", 100.0)]
    rollouts.start("clf", "models:/clf/3", now=T0)
    assert rollouts.promote("clf", full=True).state == "succeeded"
    assert live(rc) == [("clf-v3", 100.0)]


def test_a_hand_deploy_supersedes_the_rollout(rc: Client, verdicts: list[str]) -> None:
    rollouts = rc.rollouts()
    rollout = rollouts.start("clf", "models:/clf/2", now=T0)
    rc.deploy("clf", "models:/clf/3", reason="hotfix")
    (ended,) = rollouts.tick(T0 + timedelta(seconds=61))
    assert ended.id == rollout.id and ended.state == "aborted"
    assert "changed outside the rollout" in (ended.message or "")
    assert live(rc) == [("clf-v3", 100.0)]  # the hand deploy is kept


def test_rollback_returns_to_the_previous_deployment(rc: Client) -> None:
    rc.deploy("clf", "models:/clf/2")
    back = rc.rollback("clf", reason="bad numbers")
    assert live(rc) == [("clf-v1", 100.0)] and back.spec.rollout == POLICY
    event = rc.history("clf")[-1]
    assert (event.action, event.reason, event.actor) == ("rollback", "bad numbers", "ana")
    # after a finished rollout, rollback returns to what was served before its first step
    rollouts = rc.rollouts()
    rollouts.start("clf", "models:/clf/2", now=T0)
    rollouts.promote("clf", full=True)
    assert live(rc) == [("clf-v2", 100.0)]
    rc.rollback("clf")
    assert live(rc) == [("clf-v1", 100.0)]
    # during a rollout, rollback aborts it back to where it started
    rc.rollouts().start("clf", "models:/clf/3", now=T0)
    rc.rollback("clf")
    assert live(rc) == [("clf-v1", 100.0)]
    assert rc.rollouts().status("clf").state == "aborted"


def test_a_followed_alias_that_moves_starts_a_rollout_once(rc: Client, verdicts: list[str]) -> None:
    rc.set_alias("clf", "champion", 1)
    spec = rc.get_deployment("clf").spec
    following = DeploymentSpec(spec.variants, rollout=POLICY, follow="clf@champion")
    rc.registry.set_deployment("production", "clf", following)
    rollouts = rc.rollouts()
    assert rollouts.tick(T0) == []  # the alias is where the deployment is
    rc.set_alias("clf", "champion", 2)
    (started,) = rollouts.tick(T0)
    assert started.candidate == Variant("clf", 2, source="models:/clf/2")
    assert started.created_by == "alias clf@champion" and started.percent == 10
    verdicts.append("fail")
    (failed,) = rollouts.tick(T0 + timedelta(seconds=61))
    assert failed.state == "rolled_back"
    assert rollouts.tick(T0 + timedelta(seconds=62)) == []  # not retried until it moves again
    rc.set_alias("clf", "champion", 3)
    (again,) = rollouts.tick(T0 + timedelta(seconds=63))
    assert again.candidate.version == 3


def test_policy_and_steps_are_checked() -> None:
    assert parse_steps("shadow, 5,25%,100") == [0.0, 5.0, 25.0, 100.0]
    with pytest.raises(ValueError, match="end at 100"):
        RolloutPolicy(steps=(5.0, 50.0))
    with pytest.raises(ValueError, match="increase"):
        RolloutPolicy(steps=(50.0, 5.0, 100.0))


def test_a_bad_step_is_a_clear_error(rc: Client) -> None:
    with pytest.raises(InvalidInput, match="invalid rollout policy"):
        rc.rollouts().start("clf", "models:/clf/2", steps=["5", "200"])
    with pytest.raises(NotFound):
        rc.rollouts().start("nope", "models:/clf/2")

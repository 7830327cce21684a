"""The analysis between rollout steps, on prediction logs written for the purpose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import PredictionFailed
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import new_prediction_ids
from modelport.registry import DeploymentSpec, RolloutPolicy, Variant
from modelport.registry.rollouts import Rollout
from modelport.rollouts.analysis import FAIL, PASS, WAIT, analyze
from modelport.runtimes.base import classification
from modelport.settings import Settings
from tests.unit.monitoring.test_logwriter import make_version

POLICY = RolloutPolicy(steps=(0.0, 10.0, 100.0), interval_s=60.0, min_requests=50)
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", log_sample_rate=1.0)


@pytest.fixture
def log(settings: Settings) -> Iterator[PredictionLog]:
    writer = PredictionLog(settings, "production")
    yield writer
    writer.close()


def rollout(step: int) -> Rollout:
    baseline = DeploymentSpec((Variant("clf", 1),), rollout=POLICY)
    return Rollout(
        id=1,
        environment="production",
        endpoint="clf",
        state="running",
        candidate=Variant("clf", 2),
        baseline=baseline,
        policy=POLICY,
        step=step,
        step_started_at=NOW,
        generation=1,
        created_at=NOW,
        updated_at=NOW,
    )


def send(
    log: PredictionLog,
    version: int,
    n: int,
    *,
    latency: float = 0.001,
    fail_every: int = 0,
    flip: bool = False,
    shadow_of: list[list[str]] | None = None,
) -> list[list[str]]:
    """``n`` one-row requests answered by clf-v``version``; returns their ids."""
    mv = make_version(version=version)
    sent = []
    for i in range(n):
        ids = shadow_of[i] if shadow_of is not None else new_prediction_ids(1)
        sent.append(ids)
        columns = {"a": np.array([float(i % 7)]), "b": np.array([1.0])}
        if fail_every and i % fail_every == 0:
            error = PredictionFailed("model raised ValueError: bad")
            log.record_failure(
                "clf", error, version=mv, columns=columns, latency_s=latency,
                prediction_ids=ids, shadow=shadow_of is not None,
            )  # fmt: skip
            continue
        p = 0.9 if (i % 2 == 0) != flip else 0.1
        prediction = classification([[1 - p, p]], [0, 1])
        log.record(
            "clf", mv, mv_name(mv), ids, columns, prediction, latency, shadow=shadow_of is not None
        )
    return sent


def mv_name(mv: Any) -> str:
    return f"{mv.name}-v{mv.version}"


def judge(log: PredictionLog, settings: Settings, step: int) -> Any:
    log.flush()
    return analyze(
        LogStore(settings),
        None,
        rollout(step),
        since=NOW - dt.timedelta(minutes=5),
        until=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
    )


def checks(analysis: Any) -> dict[str, str]:
    return {c["check"]: c["result"] for c in analysis.to_dict()["checks"]}


def test_a_candidate_like_the_live_version_passes(log: PredictionLog, settings: Settings) -> None:
    send(log, 1, 400)
    send(log, 2, 250)
    analysis = judge(log, settings, 1)
    assert analysis.verdict == PASS, analysis.to_dict()
    assert checks(analysis) == {
        "traffic": "pass",
        "error_rate": "pass",
        "p99_latency": "pass",
        "prediction_drift": "pass",
        "performance": "skipped",
    }


def test_drift_waits_for_enough_answers(log: PredictionLog, settings: Settings) -> None:
    send(log, 1, 400)
    send(log, 2, 60)
    analysis = judge(log, settings, 1)
    assert analysis.verdict == PASS and checks(analysis)["prediction_drift"] == "skipped"


def test_too_little_traffic_is_a_wait(log: PredictionLog, settings: Settings) -> None:
    send(log, 1, 400)
    send(log, 2, 10)
    analysis = judge(log, settings, 1)
    assert analysis.verdict == WAIT and "answered 10 request(s)" in analysis.summary()


def test_a_candidate_that_fails_a_fifth_of_requests_fails(
    log: PredictionLog, settings: Settings
) -> None:
    send(log, 1, 400)
    send(log, 2, 100, fail_every=5)
    analysis = judge(log, settings, 1)
    assert analysis.verdict == FAIL and checks(analysis)["error_rate"] == "fail"
    assert "failed 20.00% of 100 requests" in analysis.summary()


def test_a_slow_candidate_fails_on_p99(log: PredictionLog, settings: Settings) -> None:
    send(log, 1, 400, latency=0.002)
    send(log, 2, 100, latency=0.005)
    analysis = judge(log, settings, 1)
    assert analysis.verdict == FAIL and checks(analysis)["p99_latency"] == "fail"
    assert "x2.5" in analysis.summary()  # 5 ms / 2 ms, from latency sketches (0.5%)


def test_answers_unlike_the_live_ones_fail_on_drift(log: PredictionLog, settings: Settings) -> None:
    send(log, 1, 400)
    mv = make_version(version=2)
    for _ in range(250):  # always class 1
        ids = new_prediction_ids(1)
        columns = {"a": np.array([1.0]), "b": np.array([1.0])}
        log.record("clf", mv, "clf-v2", ids, columns, classification([[0.1, 0.9]], [0, 1]), 0.001)
    analysis = judge(log, settings, 1)
    assert analysis.verdict == FAIL and checks(analysis)["prediction_drift"] == "fail"


def test_a_shadow_step_is_judged_on_disagreement(log: PredictionLog, settings: Settings) -> None:
    ids = send(log, 1, 100)
    send(log, 2, 100, flip=True, shadow_of=ids)  # every answer the other way
    analysis = judge(log, settings, 0)
    assert analysis.verdict == FAIL and checks(analysis)["disagreement"] == "fail"
    assert "prediction_drift" not in checks(analysis)


def test_a_shadow_that_agrees_passes(log: PredictionLog, settings: Settings) -> None:
    ids = send(log, 1, 100)
    send(log, 2, 100, shadow_of=ids)
    analysis = judge(log, settings, 0)
    assert analysis.verdict == PASS, analysis.to_dict()
    assert checks(analysis)["disagreement"] == "pass"

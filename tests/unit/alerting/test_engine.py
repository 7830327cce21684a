"""The alert engine's state machine: pending, firing once per group, repeat, resolve.

Traffic comes from a scripted source here so each step is exact; the end-to-end test
in tests/integration/test_alerting.py drives the same engine from real traffic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelport.alerting.engine import AlertEngine
from modelport.alerting.model import Notification
from modelport.alerting.notifiers import DeliveryError
from modelport.alerting.watchconfig import DOCUMENT
from modelport.client import Client
from modelport.registry.watching import WatchStore

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class ScriptedLogs:
    """Stands in for LogStore: the traffic figures a test sets, failures it lists."""

    def __init__(self) -> None:
        self.error_rate = 0.0

    def traffic(self, endpoint: str, *, since: datetime, until: datetime) -> Mapping[str, Any]:
        return {
            "requests": 1000,
            "errors": int(1000 * self.error_rate),
            "error_rate": self.error_rate,
            "p50_s": 0.001,
            "p99_s": 0.002,
            "requests_per_s": 1000 / (until - since).total_seconds(),
        }

    def failures(self, endpoint: str, *, since: datetime, limit: int = 5) -> list[dict[str, Any]]:
        return (
            [
                {
                    "prediction_id": "abc-0",
                    "ts": T0,
                    "status": "prediction_failed",
                    "error": "model raised ValueError",
                }
            ]
            if self.error_rate
            else []
        )


class Recorder:
    """A notifier that keeps what it was sent, and can fail on purpose."""

    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.sent: list[Notification] = []
        self.failures = failures

    def send(self, notification: Notification) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryError(f"{self.name}: HTTP 503", status_code=503)
        self.sent.append(notification)


class ImmediateExecutor:
    """Runs deliveries in the calling thread so a test sees them at once."""

    def submit(self, fn: Any, *args: Any) -> None:
        fn(*args)

    def shutdown(self, wait: bool = True) -> None:
        pass


@pytest.fixture
def deployed(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Client:
    path, frame = sklearn_classifier
    client.registry.ensure_model("fraud", owner="ana@example.com", team="risk")
    client.register_model("fraud", path, sample_input=frame, metrics={"accuracy": 0.95})
    client.register_model("fraud", path, sample_input=frame)
    client.deploy("fraud", "models:/fraud/1", env="production", reason="first")
    client.deploy("fraud", "models:/fraud/2", env="production", reason="retrained")
    return client


@pytest.fixture
def setup(deployed: Client) -> Iterator[tuple[AlertEngine, ScriptedLogs, dict[str, Recorder]]]:
    store = WatchStore(deployed.registry.engine)
    store.put_document(
        DOCUMENT,
        {
            "receivers": [
                {"name": "risk", "webhook": {"url": "http://127.0.0.1:9/hook"}},
                {"name": "pager", "webhook": {"url": "http://127.0.0.1:9/pd"}},
            ],
            "route": {
                "receiver": "log",
                "group_wait": "0s",
                "group_interval": "1m",
                "repeat_interval": "1h",
                "routes": [
                    {"match": {"team": "risk"}, "receiver": "risk", "continue": True},
                    {"match": {"severity": "critical"}, "receiver": "pager"},
                ],
            },
            "default_rules": False,
            "rules": [
                {
                    "name": "Errors",
                    "signal": "error_rate",
                    "threshold": 0.05,
                    "for": "2m",
                    "severity": "critical",
                    "window": "5m",
                }
            ],
        },
    )
    recorders = {
        "risk": Recorder("risk", failures=1),
        "pager": Recorder("pager"),
        "log": Recorder("log"),
    }
    logs = ScriptedLogs()
    engine = AlertEngine(
        deployed.registry,
        store,
        logs,  # type: ignore[arg-type]
        environment="production",
        base_url="http://mp.example:8000",
        executor=ImmediateExecutor(),  # type: ignore[arg-type]
        retry_backoff_s=0.0,
        notifier_factory=lambda receiver: recorders[receiver.name],
    )
    yield engine, logs, recorders


def test_an_alert_waits_for_its_duration_then_notifies_each_route_once(setup: Any) -> None:
    engine, logs, recorders = setup
    logs.error_rate = 0.2
    first = engine.evaluate(T0)
    assert [a.name for a in first.pending] == ["Errors"] and not first.firing
    assert not first.notified
    fired = engine.evaluate(T0 + timedelta(minutes=2))
    assert [a.name for a in fired.firing] == ["Errors"]
    assert sorted(n.receiver for n in fired.notified) == ["pager", "risk"]
    # The risk webhook failed once and was retried; both got exactly one notification.
    assert len(recorders["risk"].sent) == 1 and len(recorders["pager"].sent) == 1
    note = recorders["pager"].sent[0]
    assert note.status == "firing" and note.alerts[0].labels["owner"] == "ana@example.com"
    # Later evaluations within the repeat interval send nothing more.
    for minutes in (3, 4, 10):
        assert not engine.evaluate(T0 + timedelta(minutes=minutes)).notified
    assert len(recorders["pager"].sent) == 1


def test_the_incident_carries_a_diagnosis_and_the_attempts(setup: Any, deployed: Client) -> None:
    engine, logs, _ = setup
    logs.error_rate = 0.2
    engine.evaluate(T0)
    engine.evaluate(T0 + timedelta(minutes=2))
    store = WatchStore(deployed.registry.engine)
    (incident,) = store.list_incidents("production")
    assert incident.status == "firing" and incident.severity == "critical"
    assert incident.title == "Errors on fraud"
    d = incident.diagnosis
    assert d["signal"]["name"] == "error_rate" and d["signal"]["threshold"] == 0.05
    assert [v for _, v in d["signal"]["values"]] == [0.2, 0.2]
    assert d["rollback_command"] == (
        'modelport deploy fraud models:/fraud/1 --env production --reason "roll back: '
        f'incident {incident.id}"'
    )
    kinds = [c["kind"] for c in d["changes"]]
    assert kinds.count("new version") == 2 and kinds.count("deployment deploy") == 2
    assert d["failing_requests"][0]["error"] == "model raised ValueError"
    assert d["link"] == f"http://mp.example:8000/v1/incidents/{incident.id}"
    attempts = store.notifications(incident.id)
    risk = [(a["attempt"], a["ok"]) for a in attempts if a["receiver"] == "risk"]
    assert risk == [(1, False), (2, True)]


def test_a_cleared_condition_resolves_once_and_closes_the_incident(setup: Any) -> None:
    engine, logs, recorders = setup
    logs.error_rate = 0.2
    engine.evaluate(T0)
    engine.evaluate(T0 + timedelta(minutes=2))
    logs.error_rate = 0.0
    resolved = engine.evaluate(T0 + timedelta(minutes=3))
    assert sorted((n.receiver, n.status) for n in resolved.notified) == [
        ("pager", "resolved"),
        ("risk", "resolved"),
    ]
    assert not engine.evaluate(T0 + timedelta(minutes=4)).notified
    (incident,) = engine.watch.list_incidents("production")
    assert incident.status == "resolved" and incident.resolved_at is not None
    # It can fire again later: a new incident.
    logs.error_rate = 0.3
    engine.evaluate(T0 + timedelta(minutes=10))
    again = engine.evaluate(T0 + timedelta(minutes=12))
    assert len(again.notified) == 2
    assert len(engine.watch.list_incidents("production")) == 2
    assert [n.status for n in recorders["pager"].sent] == ["firing", "resolved", "firing"]


def test_two_evaluators_send_one_notification(setup: Any, deployed: Client) -> None:
    engine, logs, recorders = setup
    other = AlertEngine(
        deployed.registry,
        engine.watch,
        logs,  # type: ignore[arg-type]
        environment="production",
        base_url="http://mp.example:8000",
        executor=ImmediateExecutor(),  # type: ignore[arg-type]
        retry_backoff_s=0.0,
        notifier_factory=engine.notifier_factory,
    )
    logs.error_rate = 0.2
    for minutes in (0, 2, 3):
        engine.evaluate(T0 + timedelta(minutes=minutes))
        other.evaluate(T0 + timedelta(minutes=minutes))
    assert len(recorders["pager"].sent) == 1 and len(recorders["risk"].sent) == 1
    logs.error_rate = 0.0
    engine.evaluate(T0 + timedelta(minutes=5))
    other.evaluate(T0 + timedelta(minutes=5))
    assert [n.status for n in recorders["pager"].sent] == ["firing", "resolved"]


def test_repeat_interval_renotifies_a_long_incident(setup: Any) -> None:
    engine, logs, recorders = setup
    logs.error_rate = 0.2
    engine.evaluate(T0)
    engine.evaluate(T0 + timedelta(minutes=2))
    engine.evaluate(T0 + timedelta(minutes=62))
    assert [n.status for n in recorders["pager"].sent] == ["firing", "firing"]

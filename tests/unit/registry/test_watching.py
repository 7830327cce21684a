"""The watching tables: documents, leases, monitor runs, incidents, alert groups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from modelport.errors import NotFound
from modelport.registry import Registry
from modelport.registry.watching import MONITOR_RUNS_KEPT, WatchStore


@pytest.fixture
def store(registry_url: str) -> Iterator[WatchStore]:
    registry = Registry(registry_url)
    yield WatchStore(registry.engine)
    registry.close()


def test_documents_keep_a_revision_that_moves_only_on_change(store: WatchStore) -> None:
    assert store.get_document("alerting") is None
    assert store.put_document("alerting", {"rules": []}, actor="ana") == 1
    assert store.put_document("alerting", {"rules": []}) == 1
    assert store.put_document("alerting", {"rules": [{"name": "x"}]}) == 2
    assert store.get_document("alerting") == ({"rules": [{"name": "x"}]}, 2)


def test_a_lease_has_one_holder_until_it_expires(store: WatchStore) -> None:
    assert store.acquire_lease("watch/production", "a", ttl_s=30)
    assert not store.acquire_lease("watch/production", "b", ttl_s=30)
    assert store.acquire_lease("watch/production", "a", ttl_s=30)  # renewal
    assert store.acquire_lease("watch/staging", "b", ttl_s=30)
    store.release_lease("watch/production", "a")
    assert store.acquire_lease("watch/production", "b", ttl_s=0.0)
    assert store.acquire_lease("watch/production", "a", ttl_s=30)  # b's lease ran out


def test_monitor_runs_keep_the_latest(store: WatchStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelport.registry.watching.MONITOR_RUNS_KEPT", 3)
    assert store.latest_monitor_run("production", "fraud") is None
    for i in range(5):
        store.add_monitor_run("production", "fraud", "fraud", 1, {"rows": i})
    latest = store.latest_monitor_run("production", "fraud")
    assert latest is not None and latest["rows"] == 4 and latest["computed_at"]
    assert MONITOR_RUNS_KEPT > 3


def _incident(store: WatchStore, key: str = '{alertname="x"}') -> int:
    return store.open_incident(
        environment="production",
        endpoint="fraud",
        group_key=key,
        title="x on fraud",
        severity="critical",
        labels={"endpoint": "fraud"},
        alerts=[{"labels": {"alertname": "x"}}],
        diagnosis={},
        started_at=datetime.now(UTC),
    ).id


def test_one_firing_incident_per_group(store: WatchStore) -> None:
    first = _incident(store)
    assert _incident(store) == first
    store.update_incident(first, status="resolved", resolved_at=datetime.now(UTC))
    second = _incident(store)
    assert second != first
    assert [i.id for i in store.list_incidents("production", status="firing")] == [second]
    assert store.get_incident(first).resolved_at is not None
    with pytest.raises(NotFound, match="incident 999"):
        store.get_incident(999)


def test_an_alert_group_changes_state_once_per_generation(store: WatchStore) -> None:
    now = datetime.now(UTC)
    kwargs = {
        "environment": "production",
        "group_key": "oncall:{}",
        "receiver": "oncall",
        "incident_id": None,
        "alerts": ["abc"],
        "first_seen_at": now,
    }
    assert store.claim_group(None, status="firing", notified_at=now, **kwargs)
    assert not store.claim_group(None, status="firing", notified_at=now, **kwargs)
    (state,) = store.alert_groups("production")
    later = now + timedelta(minutes=5)
    assert store.claim_group(state, status="resolved", notified_at=later, **kwargs)
    # A second evaluator that read the same state loses the race.
    assert not store.claim_group(state, status="resolved", notified_at=later, **kwargs)
    (resolved,) = store.alert_groups("production")
    assert resolved.status == "resolved" and resolved.generation == state.generation + 1
    store.forget_group(resolved)
    assert store.alert_groups("production") == []


def test_notification_attempts_are_recorded(store: WatchStore) -> None:
    incident = _incident(store)
    for attempt, ok in ((1, False), (2, True)):
        store.record_attempt(
            incident_id=incident,
            environment="production",
            group_key="g",
            receiver="oncall",
            status="firing",
            attempt=attempt,
            ok=ok,
            status_code=500 if not ok else 200,
            error="HTTP 500" if not ok else None,
            duration_s=0.01,
        )
    attempts = store.notifications(incident)
    assert [(a["attempt"], a["ok"], a["status_code"]) for a in attempts] == [
        (1, False, 500),
        (2, True, 200),
    ]

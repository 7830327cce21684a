"""The nouns alerting passes around: an `Alert` and the `Notification` of a group.

Shapes follow Alertmanager's so that its webhook payload (version "4") is a direct
rendering: an alert is a set of labels (its identity), annotations (its text), a
state and a start; alerts sharing the ``group_by`` labels form one group, and a
group's notification carries all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AlertState = Literal["firing", "resolved"]


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id for a label set (16 hex digits, like Alertmanager's)."""
    text = "\x1f".join(f"{k}\x1e{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Alert:
    """One rule's condition on one endpoint.

    ``labels`` always hold ``alertname``, ``severity``, ``environment`` and, for
    endpoint rules, ``endpoint``, ``model``, ``version``, ``owner`` and ``team`` (from
    the registry) plus the rule's own labels. ``annotations`` hold ``summary`` and
    ``description``.
    """

    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    starts_at: datetime
    ends_at: datetime | None = None
    value: float | None = None

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True)
class Notification:
    """What a receiver is sent about one alert group at one state change.

    ``status`` is ``firing`` while any alert of the group fires, else ``resolved``.
    ``diagnosis`` is the incident's diagnosis (see `modelport.alerting.diagnosis`):
    a dict with ``signal``, ``changes``, ``drifted_columns``, ``failing_requests``,
    ``stale_features``, ``link`` and ``rollback_command``.
    """

    receiver: str
    status: AlertState
    group_key: str
    group_labels: dict[str, str]
    alerts: list[Alert]
    external_url: str
    incident_id: int | None = None
    incident_url: str | None = None
    diagnosis: dict[str, Any] = field(default_factory=dict)

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    @property
    def severity(self) -> str:
        return self.common_labels.get("severity") or max(
            (a.labels.get("severity", "warning") for a in self.alerts),
            key=lambda s: SEVERITY_ORDER.get(s, 0),
            default="warning",
        )


SEVERITY_ORDER = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}

"""How a notification reads: the text and Slack blocks receivers send.

Slack, email and PagerDuty show the same diagnosis: what fired, the signal and its
recent values, the drifted columns, recent failures, what changed, and the rollback
command. `diagnosis_sections` renders it once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from modelport.alerting.model import Alert, Notification

#: How many items of each diagnosis list a message shows.
TOP = 5


def headline(notification: Notification) -> str:
    """``drift on fraud (production)``: what fired, where."""
    labels = notification.common_labels
    names = sorted({a.name for a in notification.alerts})
    what = labels.get("alertname") or (", ".join(names) if len(names) <= 3 else "alerts")
    if labels.get("endpoint"):
        what += f" on {labels['endpoint']}"
    if labels.get("environment"):
        what += f" ({labels['environment']})"
    return what


def title(notification: Notification) -> str:
    """``[FIRING:2] drift on fraud (production)``, or ``[RESOLVED] ...``, as Alertmanager."""
    if notification.status == "firing":
        firing = sum(a.state == "firing" for a in notification.alerts)
        return f"[FIRING:{firing}] {headline(notification)}"
    return f"[RESOLVED] {headline(notification)}"


def summary(notification: Notification) -> str:
    """The alerts' summary annotation (the first alert's when they differ)."""
    common = notification.common_annotations
    if common.get("summary"):
        return common["summary"]
    return next(
        (a.annotations["summary"] for a in notification.alerts if "summary" in a.annotations), ""
    )


def facts(notification: Notification) -> list[tuple[str, str]]:
    """The labels a responder looks at first, those the group has in common."""
    labels = notification.common_labels
    shown = [("Severity", "severity"), ("Environment", "environment"), ("Endpoint", "endpoint")]
    shown += [("Model", "model"), ("Version", "version"), ("Owner", "owner"), ("Team", "team")]
    return [(title_, labels[key]) for title_, key in shown if labels.get(key)]


def diagnosis_sections(notification: Notification) -> list[tuple[str, list[str]]]:
    """The diagnosis as titled lists of lines, empty sections left out."""
    d = notification.diagnosis
    sections = [
        ("Signal", _signal(d.get("signal") or {})),
        ("Top drifted columns", _top(_drifting(d.get("drifted_columns")), _drifted)),
        ("Recent failures", _top(d.get("failing_requests"), _failure)),
        ("What changed", _top(d.get("changes"), _change, latest=True)),
        ("Stale features", _top(d.get("stale_features"), _plain)),
        ("Alerts", _top(notification.alerts, _alert, limit=10)),
    ]
    return [(name, lines) for name, lines in sections if lines]


def render_text(notification: Notification) -> str:
    """The whole message as plain text: the email body."""
    parts = [title(notification)]
    if summary(notification):
        parts.append(summary(notification))
    width = max((len(name) for name, _ in facts(notification)), default=0) + 1
    parts.append("\n".join(f"{name + ':':<{width}} {value}" for name, value in facts(notification)))
    parts += [
        f"{name}\n" + "\n".join(f"  - {line}" for line in lines)
        for name, lines in diagnosis_sections(notification)
    ]
    command = rollback(notification)
    if command:
        parts.append(f"Roll back\n  {command}")
    if link(notification):
        parts.append(f"Incident: {link(notification)}")
    return "\n\n".join(p for p in parts if p) + "\n"


def _signal(signal: Mapping[str, Any]) -> list[str]:
    if not signal.get("name"):
        return []
    line = f"{signal['name']} = {_num(signal.get('value'))}"
    if signal.get("threshold") is not None:
        line += f" (threshold {_num(signal['threshold'])})"
    values = [_num(v) for _, v in (signal.get("values") or [])[-6:]]
    return [line] + ([f"recent: {', '.join(values)}"] if values else [])


def _drifting(columns: Any) -> list[Mapping[str, Any]]:
    return [c for c in columns or [] if c.get("drifted") is not False]


def _drifted(c: Mapping[str, Any]) -> str:
    line = f"{c.get('column')}: {c.get('method', 'score')} {_num(c.get('score'))}"
    if c.get("threshold") is not None:
        line += f" (threshold {_num(c['threshold'])})"
    if c.get("psi") is not None and c.get("method") != "psi":
        line += f", PSI {_num(c['psi'])}"
    return line


def _failure(f: Mapping[str, Any]) -> str:
    return f"{_time(f.get('time'))} {f.get('prediction_id')} {f.get('status')}: {f.get('error')}"


def _change(c: Mapping[str, Any]) -> str:
    by = f" (by {c['actor']})" if c.get("actor") else ""
    return f"{_time(c.get('time'))} {c.get('kind')}: {c.get('summary')}{by}"


def _alert(a: Alert) -> str:
    where = f" on {a.labels['endpoint']}" if a.labels.get("endpoint") else ""
    since = "since" if a.state == "firing" else "started"
    return f"{a.name}{where} {a.state} {since} {_time(a.starts_at)}"


def _plain(item: Any) -> str:
    if isinstance(item, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


def _top(
    items: Any, render: Callable[[Any], str], limit: int = TOP, latest: bool = False
) -> list[str]:
    """The first ``limit`` items rendered (the last ones where ``latest``), and a count."""
    items = list(items or [])
    shown = items[-limit:] if latest else items[:limit]
    more = [f"... and {len(items) - limit} more"] if len(items) > limit else []
    return (more if latest else []) + [render(i) for i in shown] + ([] if latest else more)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _time(value: Any) -> str:
    """ISO text or a datetime as ``2024-05-01 12:00:03Z``."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return _utc(value).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    return _utc(value).isoformat().replace("+00:00", "Z")


def rollback(notification: Notification) -> str:
    command = notification.diagnosis.get("rollback_command")
    return str(command) if command and notification.status == "firing" else ""


def link(notification: Notification) -> str:
    return notification.incident_url or str(notification.diagnosis.get("link") or "")


def slack_blocks(notification: Notification) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(title(notification), 150)}}
    ]
    if summary(notification):
        blocks.append(_section(escape(summary(notification))))
    if facts(notification):
        fields = [
            _mrkdwn(f"*{name}*\n{escape(value)}"[:2000]) for name, value in facts(notification)
        ]
        blocks.append({"type": "section", "fields": fields[:10]})
    for name, lines in diagnosis_sections(notification):
        blocks.append(_section(f"*{name}*\n" + "\n".join(f"• {escape(line)}" for line in lines)))
    if rollback(notification):
        blocks.append(_section(f"*Roll back*\n```{escape(rollback(notification))}```"))
    if link(notification):
        label = (
            f"Open incident #{notification.incident_id}"
            if notification.incident_id
            else "Open incident"
        )
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "url": link(notification),
        }
        blocks.append({"type": "actions", "elements": [button]})
    return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(cut(text, 3000))}


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def escape(text: str) -> str:
    """Slack's three control characters, as its formatting rules ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

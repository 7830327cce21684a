"""Receivers against real local servers: the exact payloads, retries and failures.

An HTTP server on 127.0.0.1 stands in for Slack, PagerDuty and webhook endpoints and
captures what arrives; an aiosmtpd server does the same for email.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelport.alerting.model import Alert, Notification, fingerprint
from modelport.alerting.notifiers import (
    DeliveryAttempt,
    DeliveryError,
    EmailNotifier,
    LogNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifier,
    deliver,
    render_text,
)
from modelport.alerting.routing import ReceiverConfig
from tests.receivers import HttpReceiver, Mailbox, free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EXTERNAL = "https://modelport.example.com"
INCIDENT = f"{EXTERNAL}/v1/incidents/12"
ROLLBACK = "modelport rollback production/fraud --to models:/fraud/2 --reason 'incident #12'"
GROUP_KEY = '{}/{team="risk"}:{alertname="drift", endpoint="fraud"}'
LABELS = {
    "alertname": "drift",
    "severity": "critical",
    "environment": "production",
    "endpoint": "fraud",
    "model": "fraud",
    "version": "3",
    "owner": "ana@example.com",
    "team": "risk",
}
DIAGNOSIS: dict[str, Any] = {
    "signal": {
        "name": "drift_score",
        "value": 0.31,
        "threshold": 0.2,
        "values": [["2024-05-01T11:40:00+00:00", 0.08], ["2024-05-01T11:50:00+00:00", 0.31]],
    },
    "changes": [
        {
            "time": "2024-05-01T10:02:00+00:00",
            "kind": "deployment deploy",
            "summary": "fraud: models:/fraud/2 -> models:/fraud/3",
            "actor": "bo",
        }
    ],
    "drifted_columns": [
        {"column": "amount", "method": "ks", "score": 0.42, "threshold": 0.1, "psi": 0.35},
        {"column": "merchant", "method": "psi", "score": 0.27, "threshold": 0.2, "psi": 0.27},
    ],
    "failing_requests": [
        {
            "prediction_id": "5f0c2a9e1b7d4c3a8e6f1d2b-0",
            "time": "2024-05-01T11:58:30+00:00",
            "status": "invalid_input",
            "error": "column amount: expected float64, got <null>",
        }
    ],
    "stale_features": [],
    "link": INCIDENT,
    "rollback_command": ROLLBACK,
}


def make_alert(state: str = "firing", **labels: str) -> Alert:
    return Alert(
        labels={**LABELS, **labels},
        annotations={"summary": "Input drift on fraud: 0.31 above 0.2", "description": "KS"},
        state="firing" if state == "firing" else "resolved",
        starts_at=T0,
        ends_at=None if state == "firing" else T0 + timedelta(minutes=30),
        value=0.31,
    )


def make_notification(
    status: str = "firing", alerts: list[Alert] | None = None, receiver: str = "test"
) -> Notification:
    return Notification(
        receiver=receiver,
        status="firing" if status == "firing" else "resolved",
        group_key=GROUP_KEY,
        group_labels={"alertname": "drift", "endpoint": "fraud"},
        alerts=alerts if alerts is not None else [make_alert(status)],
        external_url=EXTERNAL,
        incident_id=12,
        incident_url=INCIDENT,
        diagnosis=DIAGNOSIS,
    )


def receiver_config(**data: Any) -> ReceiverConfig:
    return ReceiverConfig.model_validate({"name": "test", **data})


# -- a local HTTP receiver -------------------------------------------------------------


# -- webhook ---------------------------------------------------------------------------


def test_webhook_posts_the_alertmanager_payload_with_the_diagnosis(http: HttpReceiver) -> None:
    config = receiver_config(
        webhook={"url": f"{http.url}/hooks/alerts", "headers": {"X-Token": "s3cret"}}
    )
    notifier = build_notifier(config)
    assert isinstance(notifier, WebhookNotifier)

    notifier.send(make_notification(receiver="audit"))

    (request,) = http.requests
    assert request.path == "/hooks/alerts"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-token"] == "s3cret"
    assert request.json() == {
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "audit",
        "groupLabels": {"alertname": "drift", "endpoint": "fraud"},
        "commonLabels": LABELS,
        "commonAnnotations": {
            "summary": "Input drift on fraud: 0.31 above 0.2",
            "description": "KS",
        },
        "externalURL": EXTERNAL,
        "alerts": [
            {
                "status": "firing",
                "labels": LABELS,
                "annotations": {
                    "summary": "Input drift on fraud: 0.31 above 0.2",
                    "description": "KS",
                },
                "startsAt": "2024-05-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": INCIDENT,
                "fingerprint": fingerprint(LABELS),
            }
        ],
        "diagnosis": DIAGNOSIS,
        "incidentURL": INCIDENT,
    }


def test_webhook_resolved_alerts_end_and_extra_alerts_are_counted(http: HttpReceiver) -> None:
    notifier = build_notifier(receiver_config(webhook={"url": http.url, "max_alerts": 1}))
    alerts = [make_alert("resolved"), make_alert("resolved", endpoint="fraud-eu")]

    notifier.send(make_notification("resolved", alerts))

    body = http.requests[0].json()
    assert body["status"] == "resolved"
    assert body["truncatedAlerts"] == 1
    assert [a["endsAt"] for a in body["alerts"]] == ["2024-05-01T12:30:00Z"]
    assert "endpoint" not in body["commonLabels"]


# -- Slack -----------------------------------------------------------------------------


def test_slack_posts_text_and_blocks(http: HttpReceiver) -> None:
    notifier = build_notifier(
        receiver_config(
            slack={"url": f"{http.url}/services/T0/B0/xyz", "channel": "#risk", "username": "mp"}
        )
    )
    assert isinstance(notifier, SlackNotifier)

    notifier.send(make_notification())

    body = http.requests[0].json()
    assert (
        body["text"]
        == "[FIRING:1] drift on fraud (production): Input drift on fraud: 0.31 above 0.2"
    )
    assert (body["channel"], body["username"]) == ("#risk", "mp")
    blocks = body["blocks"]
    assert [b["type"] for b in blocks] == [
        "header",
        "section",  # summary
        "section",  # fields
        "section",  # signal
        "section",  # drifted columns
        "section",  # failures
        "section",  # changes
        "section",  # alerts
        "section",  # rollback
        "actions",
    ]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[FIRING:1] drift on fraud (production)"},
    }
    assert blocks[2]["fields"] == [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
        for name, value in [
            ("Severity", "critical"),
            ("Environment", "production"),
            ("Endpoint", "fraud"),
            ("Model", "fraud"),
            ("Version", "3"),
            ("Owner", "ana@example.com"),
            ("Team", "risk"),
        ]
    ]
    texts = [b["text"]["text"] for b in blocks[3:9]]
    assert texts[0] == "*Signal*\n• drift_score = 0.31 (threshold 0.2)\n• recent: 0.08, 0.31"
    assert texts[1] == (
        "*Top drifted columns*\n• amount: ks 0.42 (threshold 0.1), PSI 0.35"
        "\n• merchant: psi 0.27 (threshold 0.2)"
    )
    # Slack's control characters are escaped.
    assert "expected float64, got &lt;null&gt;" in texts[2]
    assert texts[3] == (
        "*What changed*\n• 2024-05-01 10:02:00Z deployment deploy: "
        "fraud: models:/fraud/2 -&gt; models:/fraud/3 (by bo)"
    )
    assert texts[5] == f"*Roll back*\n```{ROLLBACK}```"
    assert blocks[9] == {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open incident #12"},
                "url": INCIDENT,
            }
        ],
    }


def test_slack_resolved_message_has_no_rollback_and_url_from_env(http: HttpReceiver) -> None:
    notifier = build_notifier(
        receiver_config(slack={"url_env": "RISK_SLACK_URL"}),
        environ={"RISK_SLACK_URL": f"{http.url}/services/x"},
    )

    notifier.send(make_notification("resolved"))

    body = http.requests[0].json()
    assert http.requests[0].path == "/services/x"
    assert body["blocks"][0]["text"]["text"] == "[RESOLVED] drift on fraud (production)"
    assert not any("Roll back" in json.dumps(b) for b in body["blocks"])
    assert "channel" not in body


# -- PagerDuty -------------------------------------------------------------------------


def test_pagerduty_triggers_then_resolves_the_same_incident(http: HttpReceiver) -> None:
    http.replies = [(202, '{"status":"success","message":"Event processed"}', {})] * 2
    notifier = build_notifier(
        receiver_config(
            pagerduty={"routing_key_env": "PD_RISK_KEY", "url": f"{http.url}/v2/enqueue"}
        ),
        environ={"PD_RISK_KEY": "R0UT1NGKEY"},
    )
    assert isinstance(notifier, PagerDutyNotifier)

    notifier.send(make_notification())
    notifier.send(make_notification("resolved"))

    trigger, resolve = (r.json() for r in http.requests)
    assert http.requests[0].path == "/v2/enqueue"
    dedup_key = trigger["dedup_key"]
    assert dedup_key.startswith("modelport/production/") and len(dedup_key) <= 255
    assert resolve == {
        "routing_key": "R0UT1NGKEY",
        "dedup_key": dedup_key,
        "event_action": "resolve",
    }
    assert trigger == {
        "routing_key": "R0UT1NGKEY",
        "dedup_key": dedup_key,
        "event_action": "trigger",
        "payload": {
            "summary": "drift on fraud (production): Input drift on fraud: 0.31 above 0.2",
            "source": "production/fraud",
            "severity": "critical",
            "timestamp": "2024-05-01T12:00:00Z",
            "component": "fraud",
            "group": "risk",
            "class": "drift",
            "custom_details": trigger["payload"]["custom_details"],
        },
        "client": "Modelport",
        "client_url": EXTERNAL,
        "links": [{"href": INCIDENT, "text": "Modelport incident"}],
    }
    details = trigger["payload"]["custom_details"]
    assert details["firing"] == 1
    assert details["labels"] == LABELS
    assert details["rollback_command"] == ROLLBACK
    assert details["top_drifted_columns"][0] == "amount: ks 0.42 (threshold 0.1), PSI 0.35"


def test_pagerduty_dedup_key_is_per_environment_and_group() -> None:
    key = PagerDutyNotifier.dedup_key
    production = make_notification()
    staging = make_notification(alerts=[make_alert(environment="staging")])

    assert key(production) == key(make_notification("resolved"))
    assert key(production) != key(staging)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "critical"), ("error", "error"), ("info", "info"), ("page", "warning")],
)
def test_pagerduty_knows_four_severities(severity: str, expected: str) -> None:
    notifier = build_notifier(receiver_config(pagerduty={"routing_key": "k"}))
    assert isinstance(notifier, PagerDutyNotifier)

    event = notifier.payload(make_notification(alerts=[make_alert(severity=severity)]))

    assert event["payload"]["severity"] == expected


def test_pagerduty_summary_is_cut_to_1024_characters() -> None:
    notifier = build_notifier(receiver_config(pagerduty={"routing_key": "k"}))
    assert isinstance(notifier, PagerDutyNotifier)
    long = Alert(labels=LABELS, annotations={"summary": "x" * 2000}, state="firing", starts_at=T0)

    summary = notifier.payload(make_notification(alerts=[long]))["payload"]["summary"]

    assert len(summary) == 1024 and summary.endswith("…")


# -- email -----------------------------------------------------------------------------


def email_config(mailbox: Mailbox, **extra: Any) -> ReceiverConfig:
    return receiver_config(
        email={
            "to": ["{owner}", "oncall-{team}@example.com", "ana@example.com"],
            "from": "modelport@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox.port,
            "starttls": False,
            **extra,
        }
    )


def test_email_goes_to_the_owner_with_the_diagnosis(mailbox: Mailbox) -> None:
    notifier = build_notifier(email_config(mailbox))
    assert isinstance(notifier, EmailNotifier)

    notifier.send(make_notification(alerts=[make_alert(), make_alert(endpoint="fraud-eu")]))

    (envelope,) = mailbox.envelopes
    assert envelope.mail_from == "modelport@example.com"
    assert envelope.rcpt_tos == ["ana@example.com", "oncall-risk@example.com"]
    message = mailbox.message()
    assert message["Subject"] == "[FIRING:2] drift (production)"
    assert message["To"] == "ana@example.com, oncall-risk@example.com"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert ROLLBACK in text
    assert "Owner:       ana@example.com" in text
    assert "  - amount: ks 0.42 (threshold 0.1), PSI 0.35" in text
    assert f"Incident: {INCIDENT}" in text


def test_email_subject_names_the_endpoint_and_every_owner_is_mailed(mailbox: Mailbox) -> None:
    notifier = build_notifier(email_config(mailbox))
    alerts = [make_alert(), make_alert(owner="cy@example.com")]

    notifier.send(make_notification(alerts=alerts))

    assert mailbox.message()["Subject"] == "[FIRING:2] drift on fraud (production)"
    assert mailbox.envelopes[0].rcpt_tos == [
        "ana@example.com",
        "cy@example.com",
        "oncall-risk@example.com",
    ]


def test_email_logs_in_with_the_password_from_the_environment(mailbox: Mailbox) -> None:
    config = email_config(mailbox, username="alerts", password_env="SMTP_PASSWORD")
    good = build_notifier(config, environ={"SMTP_PASSWORD": "hunter2"})
    bad = build_notifier(config, environ={"SMTP_PASSWORD": "wrong"})

    good.send(make_notification())
    with pytest.raises(DeliveryError) as info:
        bad.send(make_notification())

    assert mailbox.logins == [(b"alerts", b"hunter2"), (b"alerts", b"wrong")]
    assert len(mailbox.envelopes) == 1
    assert info.value.status_code == 535 and not info.value.retryable


def test_email_temporary_smtp_failure_is_retryable(mailbox: Mailbox) -> None:
    mailbox.data_reply = "451 4.3.0 try again later"
    notifier = build_notifier(email_config(mailbox))

    with pytest.raises(DeliveryError) as info:
        notifier.send(make_notification())

    assert info.value.status_code == 451 and info.value.retryable
    assert "451" in str(info.value)


def test_email_without_an_owner_label_is_not_sent() -> None:
    notifier = build_notifier(
        receiver_config(email={"to": ["{owner}"], "from": "m@example.com", "smtp_host": "x"})
    )
    ownerless = Alert(labels={"alertname": "drift"}, annotations={}, state="firing", starts_at=T0)

    with pytest.raises(DeliveryError, match="no recipient") as info:
        notifier.send(make_notification(alerts=[ownerless]))

    assert not info.value.retryable


def test_plain_text_rendering() -> None:
    text = render_text(make_notification())

    assert text.splitlines()[:3] == [
        "[FIRING:1] drift on fraud (production)",
        "",
        "Input drift on fraud: 0.31 above 0.2",
    ]
    assert (
        "Recent failures\n  - 2024-05-01 11:58:30Z 5f0c2a9e1b7d4c3a8e6f1d2b-0 invalid_input" in text
    )
    assert f"Roll back\n  {ROLLBACK}" in text


# -- delivery: retries, failures, every attempt reported --------------------------------


def test_a_receiver_failing_twice_is_retried_with_backoff(http: HttpReceiver) -> None:
    http.replies = [(500, "boom", {}), (503, "busy", {})]
    notifier = build_notifier(receiver_config(webhook={"url": f"{http.url}/secret-path"}))
    attempts: list[DeliveryAttempt] = []

    started = time.monotonic()
    delivered = deliver(notifier, make_notification(), backoff_s=0.05, on_attempt=attempts.append)

    assert delivered
    assert time.monotonic() - started >= 0.05 + 0.1
    assert len(http.requests) == 3
    assert [(a.attempt, a.ok, a.status_code, a.will_retry) for a in attempts] == [
        (1, False, 500, True),
        (2, False, 503, True),
        (3, True, None, False),
    ]
    assert attempts[0].error == f"{http.url} answered 500: boom"
    assert attempts[2].error is None
    assert all(a.receiver == "test" and a.group_key == GROUP_KEY for a in attempts)
    assert all(a.status == "firing" and a.duration_s >= 0 for a in attempts)


def test_a_receiver_that_is_down_fails_after_every_attempt() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/secret"
    notifier = build_notifier(receiver_config(slack={"url": url}))
    attempts: list[DeliveryAttempt] = []

    delivered = deliver(
        notifier, make_notification(), attempts=3, backoff_s=0.001, on_attempt=attempts.append
    )

    assert not delivered
    assert [(a.attempt, a.ok, a.will_retry) for a in attempts] == [
        (1, False, True),
        (2, False, True),
        (3, False, False),
    ]
    for attempt in attempts:
        assert attempt.error is not None and attempt.error.startswith("cannot reach http://127")
        assert "secret" not in attempt.error
        assert attempt.status_code is None


def test_a_slow_receiver_times_out(http: HttpReceiver) -> None:
    http.delay_s = 0.5
    notifier = build_notifier(receiver_config(webhook={"url": http.url, "timeout": "100ms"}))

    with pytest.raises(DeliveryError, match="did not answer within 0.1s") as info:
        notifier.send(make_notification())

    assert info.value.retryable


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after(http: HttpReceiver) -> None:
    http.replies = [(500, "", {})] * 3 + [(429, "slow down", {"Retry-After": "7"})]
    notifier = build_notifier(receiver_config(webhook={"url": http.url}))
    waits: list[float] = []

    delivered = deliver(
        notifier,
        make_notification(),
        attempts=5,
        backoff_s=1.0,
        max_backoff_s=10.0,
        sleep=waits.append,
    )

    assert delivered
    assert waits == [1.0, 2.0, 4.0, 8.0]
    http.replies = [(429, "", {"Retry-After": "60"})]
    waits.clear()
    deliver(notifier, make_notification(), backoff_s=1.0, max_backoff_s=10.0, sleep=waits.append)
    assert waits == [10.0]


def test_a_client_error_is_not_retried(http: HttpReceiver) -> None:
    http.replies = [(400, "invalid_payload", {})]
    notifier = build_notifier(receiver_config(slack={"url": http.url}))
    attempts: list[DeliveryAttempt] = []

    assert not deliver(notifier, make_notification(), on_attempt=attempts.append)

    assert [(a.status_code, a.will_retry) for a in attempts] == [(400, False)]
    assert attempts[0].error == f"{http.url} answered 400: invalid_payload"


def test_a_missing_secret_is_a_recorded_failure() -> None:
    notifier = build_notifier(receiver_config(pagerduty={"routing_key_env": "PD_KEY"}), environ={})
    attempts: list[DeliveryAttempt] = []

    assert not deliver(notifier, make_notification(), on_attempt=attempts.append)

    (attempt,) = attempts
    assert (
        attempt.error
        == "environment variable PD_KEY is not set (export PD_KEY where the monitor runs)"
    )


class Broken:
    name = "broken"

    def send(self, notification: Notification) -> None:
        raise KeyError("summary")


def test_a_notifier_bug_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[DeliveryAttempt] = []

    with caplog.at_level(logging.ERROR, "modelport.alerting"):
        assert not deliver(Broken(), make_notification(), on_attempt=attempts.append)

    assert [(a.receiver, a.error, a.will_retry) for a in attempts] == [
        ("broken", "KeyError: 'summary'", False)
    ]
    assert "receiver broken failed unexpectedly" in caplog.text


def test_a_failing_recorder_does_not_stop_delivery(http: HttpReceiver) -> None:
    def record(attempt: DeliveryAttempt) -> None:
        raise RuntimeError("database is locked")

    notifier = build_notifier(receiver_config(webhook={"url": http.url}))

    assert deliver(notifier, make_notification(), on_attempt=record)
    assert len(http.requests) == 1


def test_the_log_receiver_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    notifier = build_notifier(receiver_config(log={}))
    assert isinstance(notifier, LogNotifier)

    with caplog.at_level(logging.INFO, "modelport.alerting"):
        notifier.send(make_notification())
        notifier.send(make_notification("resolved"))

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "[FIRING:1] drift on fraud (production): Input drift on fraud: 0.31 above 0.2 "
            + INCIDENT,
        ),
        (
            "INFO",
            "[RESOLVED] drift on fraud (production): Input drift on fraud: 0.31 above 0.2 "
            + INCIDENT,
        ),
    ]

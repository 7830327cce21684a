"""Receivers: how a `Notification` reaches people, and delivering it despite failures.

Each receiver is a small `Notifier` (a name and a blocking ``send``) built from its
typed config by `build_notifier`: a generic webhook with Alertmanager's payload, a
Slack incoming webhook, PagerDuty's Events API v2, email over SMTP, and the log.
`deliver` retries a failing receiver with exponential backoff and reports every
attempt, so the engine can record it; it runs on the engine's worker threads, far
from the request path, which is why plain blocking I/O with timeouts is right here.
Every attempt is bounded by its receiver's ``timeout``, and each receiver (a name and
its destination) has a circuit breaker (`ReceiverBreakers`, `modelport.breaker`): after
`RECEIVER_FAILURES` deliveries in a row failed (timeouts, refused connections, 5xx) its
deliveries, and the retries of those under way, fail at once for `RECEIVER_RESET_S`;
so a receiver that hangs holds the engine's threads for one timeout, not for every
retry of every notification, and the other receivers are not kept waiting behind it.

What a message says is in `modelport.alerting.render`.

Example::

    notifier = build_notifier(config.receiver_map()["risk-slack"])
    deliver(notifier, notification, on_attempt=store.record_attempt)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from modelport.alerting.model import SEVERITY_ORDER, Notification
from modelport.alerting.render import (
    cut,
    diagnosis_sections,
    escape,
    headline,
    link,
    render_text,
    rfc3339,
    rollback,
    slack_blocks,
    summary,
    title,
)
from modelport.alerting.routing import (
    EmailConfig,
    LogConfig,
    PagerDutyConfig,
    ReceiverConfig,
    SlackConfig,
    WebhookConfig,
)
from modelport.breaker import CircuitBreaker
from modelport.errors import DeliveryError

log = logging.getLogger("modelport.alerting")

#: Alertmanager's ``endsAt`` for an alert that has not ended.
ZERO_TIME = "0001-01-01T00:00:00Z"

#: How many items of each diagnosis list a message shows.
TOP = 5
#: A receiver whose deliveries failed this many times in a row is skipped (its circuit
#: opens) ...
RECEIVER_FAILURES = 3
#: ... for this long; then one attempt tries it again.
RECEIVER_RESET_S = 30.0


class ReceiverBreakers:
    """A circuit breaker per receiver (its name and where it sends), shared by every
    delivery in this process."""

    def __init__(
        self, failure_threshold: int = RECEIVER_FAILURES, reset_timeout_s: float = RECEIVER_RESET_S
    ) -> None:
        self.failure_threshold, self.reset_timeout_s = failure_threshold, reset_timeout_s
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, receiver: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(receiver)
            if breaker is None:
                breaker = self._breakers[receiver] = CircuitBreaker(
                    f"alert receiver {receiver!r}",
                    failure_threshold=self.failure_threshold,
                    reset_timeout_s=self.reset_timeout_s,
                    hint=f"check the receiver {receiver!r} in the watch config; deliveries "
                    "to it resume by themselves once one attempt succeeds",
                )
            return breaker

    def states(self) -> dict[str, str]:
        with self._lock:
            return {name: b.state for name, b in self._breakers.items()}


#: The breakers `deliver` uses unless given others.
RECEIVERS = ReceiverBreakers()


class Notifier(Protocol):
    """One receiver: ``send`` delivers or raises `DeliveryError`."""

    name: str

    def send(self, notification: Notification) -> None: ...


# -- delivery --------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryAttempt:
    """One try at delivering one notification to one receiver."""

    receiver: str
    group_key: str
    status: str
    attempt: int
    ok: bool
    error: str | None
    status_code: int | None
    duration_s: float
    started_at: datetime
    will_retry: bool


def deliver(
    notifier: Notifier,
    notification: Notification,
    *,
    attempts: int = 4,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    on_attempt: Callable[[DeliveryAttempt], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    breakers: ReceiverBreakers = RECEIVERS,
) -> bool:
    """Send ``notification``, retrying failures; True once it is delivered.

    Waits ``backoff_s``, then twice that, and so on up to ``max_backoff_s`` between
    attempts (longer when the receiver asks with Retry-After), and stops early on a
    failure retrying cannot fix. ``on_attempt`` sees every attempt. While the
    receiver's breaker (in ``breakers``) is open, an attempt fails at once, unretried.

    Example::

        delivered = deliver(notifier, notification, on_attempt=attempts.append)
    """
    breaker = breakers.get(f"{notifier.name} {destination(notifier)}".strip())
    counted = False
    for number in range(1, max(attempts, 1) + 1):
        started, clock = datetime.now(UTC), time.perf_counter()
        failure = _try_guarded(breaker, notifier, notification, counted=counted)
        counted = counted or failure is not None
        will_retry = failure is not None and failure.retryable and number < attempts
        _report(
            on_attempt,
            DeliveryAttempt(
                receiver=notifier.name,
                group_key=notification.group_key,
                status=notification.status,
                attempt=number,
                ok=failure is None,
                error=None if failure is None else str(failure),
                status_code=None if failure is None else failure.status_code,
                duration_s=time.perf_counter() - clock,
                started_at=started,
                will_retry=will_retry,
            ),
        )
        if failure is None:
            return True
        if not will_retry:
            log.warning(
                "notification %s to %s not delivered after %d attempt(s): %s",
                notification.group_key,
                notifier.name,
                number,
                failure,
            )
            return False
        delay = backoff_s * 2 ** (number - 1)
        sleep(min(max_backoff_s, max(delay, failure.retry_after or 0.0)))
    return False


def _try_guarded(
    breaker: CircuitBreaker, notifier: Notifier, notification: Notification, *, counted: bool
) -> DeliveryError | None:
    """One attempt through the receiver's breaker: refused while it is open. A failure
    retrying could fix (timeout, refused, 5xx) counts against the receiver once per
    delivery (``counted``: this delivery's already did), and always when it was the
    half-open trial; any answer counts for it."""
    if not breaker.allow():
        return DeliveryError(str(breaker.rejection()), retryable=False)
    failure = _try(notifier, notification)
    if failure is None or not failure.retryable:
        breaker.success()
    elif not counted or breaker.state != "closed":
        breaker.failure(failure)
    else:
        breaker.release()
    return failure


def destination(notifier: Notifier) -> str:
    """Where ``notifier`` sends (a URL, an SMTP server), or "" for the log and others."""
    if isinstance(notifier, WebhookNotifier | PagerDutyNotifier):
        return str(notifier.config.url)
    if isinstance(notifier, SlackNotifier):
        return str(notifier.config.url or f"${notifier.config.url_env}")
    if isinstance(notifier, EmailNotifier):
        return f"smtp://{notifier.config.smtp_host}:{notifier.config.smtp_port}"
    return ""


def _try(notifier: Notifier, notification: Notification) -> DeliveryError | None:
    try:
        notifier.send(notification)
    except DeliveryError as exc:
        return exc
    except Exception as exc:  # a notifier's bug must not end the engine's worker
        log.exception("receiver %s failed unexpectedly", notifier.name)
        return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
    return None


def _report(on_attempt: Callable[[DeliveryAttempt], None] | None, attempt: DeliveryAttempt) -> None:
    if on_attempt is None:
        return
    try:
        on_attempt(attempt)
    except Exception:  # recording is best effort; delivering matters more
        log.exception("could not record delivery attempt to %s", attempt.receiver)


# -- HTTP receivers --------------------------------------------------------------------


def _post(url: str, body: Any, *, timeout: float, headers: Mapping[str, str] | None = None) -> None:
    """POST ``body`` as JSON; a `DeliveryError` unless the answer is 2xx.

    Errors name only the receiver's origin: webhook URLs often carry the secret.
    """
    where = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    content = json.dumps(body, default=str, ensure_ascii=False).encode()
    sent = {"Content-Type": "application/json", "User-Agent": "modelport", **(headers or {})}
    try:
        response = httpx.post(url, content=content, headers=sent, timeout=timeout)
    except httpx.TimeoutException:
        raise DeliveryError(f"{where} did not answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"cannot reach {where}: {exc}") from None
    if response.is_success:
        return
    code, snippet = response.status_code, response.text[:200]
    raise DeliveryError(
        f"{where} answered {code}: {snippet}",
        status_code=code,
        body=snippet,
        retryable=code >= 500 or code in (408, 429),
        retry_after=_seconds(response.headers.get("Retry-After")),
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class WebhookNotifier:
    """POSTs Alertmanager's webhook payload (version "4") with the diagnosis added."""

    def __init__(self, name: str, config: WebhookConfig) -> None:
        self.name, self.config = name, config

    def payload(self, notification: Notification) -> dict[str, Any]:
        limit = self.config.max_alerts or len(notification.alerts)
        alerts = notification.alerts[:limit]
        return {
            "version": "4",
            "groupKey": notification.group_key,
            "truncatedAlerts": len(notification.alerts) - len(alerts),
            "status": notification.status,
            "receiver": notification.receiver,
            "groupLabels": notification.group_labels,
            "commonLabels": notification.common_labels,
            "commonAnnotations": notification.common_annotations,
            "externalURL": notification.external_url,
            "alerts": [
                {
                    "status": a.state,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": _ends_at(a.state, a.ends_at),
                    "generatorURL": notification.incident_url or notification.external_url,
                    "fingerprint": a.fingerprint,
                }
                for a in alerts
            ],
            "diagnosis": notification.diagnosis,
            "incidentURL": notification.incident_url,
        }

    def send(self, notification: Notification) -> None:
        _post(
            self.config.url,
            self.payload(notification),
            timeout=self.config.timeout,
            headers=self.config.headers,
        )


def _ends_at(state: str, ends_at: datetime | None) -> str:
    if state == "firing":
        return ZERO_TIME
    return rfc3339(ends_at or datetime.now(UTC))


class SlackNotifier:
    """Posts to a Slack incoming webhook: ``text`` for notifications, ``blocks`` to read."""

    def __init__(self, name: str, config: SlackConfig, environ: Mapping[str, str]) -> None:
        self.name, self.config, self.environ = name, config, environ

    def payload(self, notification: Notification) -> dict[str, Any]:
        text = title(notification) + (f": {summary(notification)}" if summary(notification) else "")
        body: dict[str, Any] = {"text": escape(text), "blocks": slack_blocks(notification)}
        if self.config.channel:
            body["channel"] = self.config.channel
        if self.config.username:
            body["username"] = self.config.username
        return body

    def send(self, notification: Notification) -> None:
        url = self.config.url or _secret(self.config.url_env, self.environ)
        _post(url, self.payload(notification), timeout=self.config.timeout)


class PagerDutyNotifier:
    """Triggers a PagerDuty incident while firing and resolves the same one after.

    The ``dedup_key`` hashes the environment and the group key, so every
    notification of one group lands on one incident, and a resolve closes it.
    """

    def __init__(self, name: str, config: PagerDutyConfig, environ: Mapping[str, str]) -> None:
        self.name, self.config, self.environ = name, config, environ

    @staticmethod
    def dedup_key(notification: Notification) -> str:
        environment = notification.common_labels.get("environment", "")
        digest = hashlib.sha256(f"{environment}\x1f{notification.group_key}".encode()).hexdigest()
        return f"modelport/{environment}/{digest[:40]}"

    def payload(self, notification: Notification) -> dict[str, Any]:
        routing_key = self.config.routing_key or _secret(self.config.routing_key_env, self.environ)
        event: dict[str, Any] = {
            "routing_key": routing_key,
            "dedup_key": self.dedup_key(notification),
            "event_action": "trigger" if notification.status == "firing" else "resolve",
        }
        if notification.status != "firing":
            return event
        labels, now = notification.common_labels, datetime.now(UTC)
        text = headline(notification) + (
            f": {summary(notification)}" if summary(notification) else ""
        )
        event["payload"] = {
            "summary": cut(text, 1024),
            "source": f"{labels.get('environment', '-')}/{labels.get('endpoint', '-')}",
            "severity": _pagerduty_severity(notification.severity),
            "timestamp": rfc3339(min((a.starts_at for a in notification.alerts), default=now)),
            "component": labels.get("model", ""),
            "group": labels.get("team", ""),
            "class": labels.get("alertname", ""),
            "custom_details": {
                "firing": sum(a.state == "firing" for a in notification.alerts),
                "labels": labels,
                **{n.lower().replace(" ", "_"): v for n, v in diagnosis_sections(notification)},
                "rollback_command": rollback(notification),
            },
        }
        event["client"] = "Modelport"
        event["client_url"] = notification.external_url
        if link(notification):
            event["links"] = [{"href": link(notification), "text": "Modelport incident"}]
        return event

    def send(self, notification: Notification) -> None:
        _post(self.config.url, self.payload(notification), timeout=self.config.timeout)


def _pagerduty_severity(severity: str) -> str:
    """PagerDuty knows critical, error, warning and info; anything else is a warning."""
    return severity if severity in SEVERITY_ORDER else "warning"


# -- email and log ---------------------------------------------------------------------


class EmailNotifier:
    """Sends the plain-text rendering over SMTP, to the alert's owner where asked."""

    def __init__(self, name: str, config: EmailConfig, environ: Mapping[str, str]) -> None:
        self.name, self.config, self.environ = name, config, environ

    def recipients(self, notification: Notification) -> list[str]:
        """``to`` with ``{owner}`` and ``{team}`` replaced by every value the alerts carry."""
        found: list[str] = []
        for template in self.config.to:
            for address in _expand(template, notification):
                if address not in found:
                    found.append(address)
        return found

    def message(self, notification: Notification) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = title(notification)
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.recipients(notification))
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain="modelport")
        message.set_content(render_text(notification))
        return message

    def send(self, notification: Notification) -> None:
        recipients = self.recipients(notification)
        if not recipients:
            raise DeliveryError(
                f"no recipient: {self.config.to} needs labels the alerts do not carry",
                retryable=False,
                hint="give the model an owner (and team) in the registry",
            )
        password = (
            _secret(self.config.password_env, self.environ) if self.config.password_env else ""
        )
        try:
            self._send(self.message(notification), recipients, password)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                f"SMTP server {self._where} answered {exc.smtp_code}: {text[:200]}",
                status_code=exc.smtp_code,
                body=text[:200],
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise DeliveryError(
                f"SMTP server {self._where} refused {refused}", retryable=False
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"cannot send through {self._where}: {exc}") from None

    @property
    def _where(self) -> str:
        return f"{self.config.smtp_host}:{self.config.smtp_port}"

    def _send(self, message: EmailMessage, recipients: list[str], password: str) -> None:
        c = self.config
        with smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.timeout) as smtp:
            if c.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                smtp.login(c.username, password)
            refused = smtp.send_message(message, from_addr=c.sender, to_addrs=recipients)
        if refused:
            log.warning("receiver %s: the SMTP server refused %s", self.name, sorted(refused))


def _expand(template: str, notification: Notification) -> list[str]:
    addresses = [template]
    for key in ("owner", "team"):
        placeholder = "{" + key + "}"
        if placeholder not in template:
            continue
        values = sorted({a.labels[key] for a in notification.alerts if a.labels.get(key)})
        addresses = [a.replace(placeholder, v) for a in addresses for v in values]
    return addresses


class LogNotifier:
    """Writes one line per notification to the ``modelport.alerting`` log."""

    def __init__(self, name: str, config: LogConfig) -> None:
        self.name, self.config = name, config

    def send(self, notification: Notification) -> None:
        level = (
            logging.getLevelName(self.config.level.upper())
            if notification.status == "firing"
            else logging.INFO
        )
        url = link(notification)
        log.log(
            level,
            "%s%s%s",
            title(notification),
            f": {summary(notification)}" if summary(notification) else "",
            f" {url}" if url else "",
        )


# -- building ------------------------------------------------------------------------


def build_notifier(receiver: ReceiverConfig, environ: Mapping[str, str] | None = None) -> Notifier:
    """The notifier for ``receiver``.

    Secrets named by ``*_env`` fields are read from ``environ`` (the process
    environment by default) when sending, so a missing one is a failed, recorded
    delivery attempt rather than an error in the engine.

    Example::

        notifier = build_notifier(ReceiverConfig(name="ops", slack=SlackConfig(url=URL)))
    """
    env = os.environ if environ is None else environ
    settings = receiver.settings
    if isinstance(settings, WebhookConfig):
        return WebhookNotifier(receiver.name, settings)
    if isinstance(settings, SlackConfig):
        return SlackNotifier(receiver.name, settings, env)
    if isinstance(settings, PagerDutyConfig):
        return PagerDutyNotifier(receiver.name, settings, env)
    if isinstance(settings, EmailConfig):
        return EmailNotifier(receiver.name, settings, env)
    return LogNotifier(receiver.name, settings)


def _secret(variable: str | None, environ: Mapping[str, str]) -> str:
    value = environ.get(variable or "")
    if not value:
        raise DeliveryError(
            f"environment variable {variable} is not set",
            retryable=False,
            hint=f"export {variable} where the monitor runs",
        )
    return value


__all__ = [
    "DeliveryAttempt",
    "DeliveryError",
    "EmailNotifier",
    "LogNotifier",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "build_notifier",
    "deliver",
]

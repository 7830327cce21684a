"""The `alerting:` section of modelport.yaml: receivers, and the route tree choosing them.

Routing follows Alertmanager's tree so that people who know it know this: every
alert enters at the root route, which matches everything; it goes down depth-first
into the first child whose ``match`` / ``match_re`` fit its labels, and stops there
unless that child says ``continue``. The deepest matching routes win; a route no
child matches is itself the answer. Children inherit the receiver, ``group_by`` and
the three intervals they leave unset. Alerts carry the model's ``owner`` and ``team``
from the registry, so a route on ``team`` and an email receiver to ``{owner}`` reach
the person responsible.

A receiver named ``log`` always exists: it only writes to the Python log (and the
engine records the notification), so a deployment without an ``alerting:`` section
still keeps every notification.

Example::

    config = AlertingConfig.model_validate(yaml.safe_load(text)["alerting"])
    for route in resolve_routes(config, alert.labels):
        route.receiver, route.group_key(alert.labels)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from modelport.durations import parse_duration
from modelport.errors import InvalidInput, NotFound

#: What the root route uses for the fields it leaves unset.
DEFAULT_GROUP_BY = ("alertname", "endpoint")
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0

#: The receiver that only records; it exists whether or not it is declared.
LOG_RECEIVER = "log"

#: ``group_by: ["..."]`` groups by every label (one group per alert), as in Alertmanager.
ALL_LABELS = "..."

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{message}", {"message": message})


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _error("invalid_duration", f"expected a duration like 30s, 5m or 4h, got {value!r}")
    try:
        return parse_duration(value)
    except InvalidInput as exc:
        raise _error("invalid_duration", str(exc)) from None


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise _error("invalid_regex", f"{value!r} is not a regular expression: {exc}") from None
    return value


def _receiver_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise _error(
            "invalid_name",
            f"receiver name {value!r} must start with a letter or digit and hold only "
            "letters, digits and _ . @ -",
        )
    return value


def _http_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]+", value):
        raise _error("invalid_url", f"expected an http:// or https:// URL, got {value!r}")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
Regex = Annotated[str, AfterValidator(_regex)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Config(BaseModel):
    """Unknown fields are errors; numbers written where text is expected become text."""

    model_config = ConfigDict(
        extra="forbid", coerce_numbers_to_str=True, frozen=True, validate_by_name=True
    )


# -- receivers ---------------------------------------------------------------------


class WebhookConfig(_Config):
    """POST the Alertmanager webhook payload (version "4") plus the diagnosis."""

    url: HttpUrl = Field(description="Where to POST, e.g. https://hooks.example.com/alerts.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers, e.g. {Authorization: Bearer ...}."
    )
    timeout: Duration = Field(default=10.0, description="Longest one attempt may take.")
    max_alerts: int = Field(
        default=0,
        ge=0,
        description="Most alerts per payload (0: all); the rest are counted in truncatedAlerts.",
    )


class SlackConfig(_Config):
    """Post to a Slack incoming webhook: a text fallback and Block Kit blocks."""

    url: HttpUrl | None = Field(
        default=None, description="The incoming webhook URL (https://hooks.slack.com/services/...)."
    )
    url_env: str | None = Field(
        default=None, description="Environment variable holding the webhook URL instead."
    )
    channel: str | None = Field(
        default=None, description="Channel override, for legacy webhooks that allow one."
    )
    username: str | None = Field(
        default=None, description="Sender name override, for legacy webhooks that allow one."
    )
    timeout: Duration = Field(default=10.0, description="Longest one attempt may take.")

    @model_validator(mode="after")
    def _one_url(self) -> SlackConfig:
        if (self.url is None) == (self.url_env is None):
            raise _error("invalid_receiver", "set exactly one of url and url_env")
        return self


class PagerDutyConfig(_Config):
    """Trigger and resolve PagerDuty incidents through the Events API v2."""

    routing_key: str | None = Field(
        default=None, description="The integration key of an Events API v2 integration."
    )
    routing_key_env: str | None = Field(
        default=None, description="Environment variable holding the integration key instead."
    )
    url: HttpUrl = Field(
        default="https://events.pagerduty.com/v2/enqueue", description="Events API endpoint."
    )
    timeout: Duration = Field(default=10.0, description="Longest one attempt may take.")

    @model_validator(mode="after")
    def _one_key(self) -> PagerDutyConfig:
        if (self.routing_key is None) == (self.routing_key_env is None):
            raise _error("invalid_receiver", "set exactly one of routing_key and routing_key_env")
        return self


class EmailConfig(_Config):
    """Send a plain-text email over SMTP."""

    to: list[str] = Field(
        min_length=1,
        description="Recipients; {owner} and {team} become the alert's owner and team "
        'labels, e.g. ["{owner}", "oncall@example.com"].',
    )
    sender: str = Field(alias="from", description="The From address.")
    smtp_host: str = Field(min_length=1, description="SMTP server host name.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    username: str | None = Field(default=None, description="Log in as this user when set.")
    password_env: str | None = Field(
        default=None, description="Environment variable holding the SMTP password."
    )
    timeout: Duration = Field(default=30.0, description="Longest one attempt may take.")


class LogConfig(_Config):
    """Only write to the Python log; the engine still records the notification."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="warning", description="Log level of firing notifications (resolved: info)."
    )


ReceiverKind = Literal["webhook", "slack", "pagerduty", "email", "log"]
ReceiverSettings = WebhookConfig | SlackConfig | PagerDutyConfig | EmailConfig | LogConfig
_KINDS: tuple[ReceiverKind, ...] = ("webhook", "slack", "pagerduty", "email", "log")


class ReceiverConfig(_Config):
    """A named receiver with exactly one way to deliver."""

    name: Annotated[str, AfterValidator(_receiver_name)] = Field(
        description="What routes call this receiver."
    )
    webhook: WebhookConfig | None = Field(default=None, description="A generic webhook.")
    slack: SlackConfig | None = Field(default=None, description="A Slack incoming webhook.")
    pagerduty: PagerDutyConfig | None = Field(default=None, description="PagerDuty Events v2.")
    email: EmailConfig | None = Field(default=None, description="Email over SMTP.")
    log: LogConfig | None = Field(default=None, description="The Python log only.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ReceiverConfig:
        count = sum(getattr(self, kind) is not None for kind in _KINDS)
        if count != 1:
            raise _error("invalid_receiver", f"set exactly one of {', '.join(_KINDS)}")
        return self

    @property
    def kind(self) -> ReceiverKind:
        return next(kind for kind in _KINDS if getattr(self, kind) is not None)

    @property
    def settings(self) -> ReceiverSettings:
        value: ReceiverSettings = getattr(self, self.kind)
        return value


# -- routes ------------------------------------------------------------------------


class Route(_Config):
    """A node of the route tree; unset fields are inherited from the parent route."""

    receiver: str | None = Field(
        default=None, description="Receiver of the alerts this route takes; inherited if unset."
    )
    match: dict[str, str] = Field(
        default_factory=dict,
        description="Labels an alert must have with these exact values, e.g. {team: risk}; "
        "a missing label reads as the empty string.",
    )
    match_re: dict[str, Regex] = Field(
        default_factory=dict,
        description="Labels whose whole value must match these regular expressions, "
        "e.g. {severity: critical|error}.",
    )
    continue_: bool = Field(
        default=False,
        alias="continue",
        description="After matching, keep trying the following sibling routes too.",
    )
    group_by: list[str] | None = Field(
        default=None,
        description='Labels that split alerts into notification groups; ["..."] means all. '
        "Default [alertname, endpoint].",
    )
    group_wait: Duration | None = Field(
        default=None, description="How long a new group waits for more alerts (default 30s)."
    )
    group_interval: Duration | None = Field(
        default=None, description="Least time between notifications of a changed group (5m)."
    )
    repeat_interval: Duration | None = Field(
        default=None, description="When to repeat a notification of an unchanged group (4h)."
    )
    routes: list[Route] = Field(default_factory=list, description="Child routes, tried in order.")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy every matcher (a missing label is "")."""
        return all(labels.get(k, "") == v for k, v in self.match.items()) and all(
            re.fullmatch(pattern, labels.get(k, "")) for k, pattern in self.match_re.items()
        )

    def matcher_text(self) -> str:
        """Matchers as Alertmanager writes them: ``{severity="critical",team=~"^(?:risk)$"}``."""
        parts = [(k, "=", v) for k, v in self.match.items()]
        parts += [(k, "=~", f"^(?:{v})$") for k, v in self.match_re.items()]
        return "{" + ",".join(f"{k}{op}{_quote(v)}" for k, op, v in sorted(parts)) + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AlertingConfig(_Config):
    """The `alerting:` section: who can be notified and which alerts go where.

    Left out entirely, every alert goes to the ``log`` receiver.
    """

    receivers: list[ReceiverConfig] = Field(
        default_factory=list, description="Receivers by name; `log` exists without declaring it."
    )
    route: Route = Field(
        default_factory=lambda: Route(receiver=LOG_RECEIVER),
        description="The root route; it matches every alert.",
    )

    @model_validator(mode="after")
    def _check(self) -> AlertingConfig:
        errors = list(_problems(self))
        if errors:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(type=_error(kind, message), loc=loc, input=value)
                    for loc, kind, message, value in errors
                ],
            )
        return self

    def receiver_map(self) -> dict[str, ReceiverConfig]:
        """Every receiver by name, the built-in ``log`` included unless redefined."""
        found = {LOG_RECEIVER: ReceiverConfig(name=LOG_RECEIVER, log=LogConfig())}
        found.update((r.name, r) for r in self.receivers)
        return found

    def receiver(self, name: str) -> ReceiverConfig:
        """The receiver called ``name``; `NotFound` if there is none."""
        found = self.receiver_map()
        if name not in found:
            raise NotFound(
                f"no receiver named {name!r}", hint=f"defined: {', '.join(sorted(found))}"
            )
        return found[name]


_Problem = tuple[tuple[str | int, ...], str, str, Any]


def _problems(config: AlertingConfig) -> Iterator[_Problem]:
    first: dict[str, int] = {}
    for index, receiver in enumerate(config.receivers):
        if receiver.name in first:
            yield (
                ("receivers", index, "name"),
                "duplicate_receiver",
                f"receiver {receiver.name!r} is defined twice; first at "
                f"receivers[{first[receiver.name]}]",
                receiver.name,
            )
        first.setdefault(receiver.name, index)
    root = config.route
    if root.receiver is None:
        yield ("route", "receiver"), "invalid_route", "the root route needs a receiver", None
    for field in ("match", "match_re", "continue_"):
        if field in root.model_fields_set:
            yield (
                ("route", "continue" if field == "continue_" else field),
                "invalid_route",
                "the root route takes every alert; put matchers on its child routes",
                getattr(root, field),
            )
    known = set(config.receiver_map())
    for loc, route in _walk(root, ("route",)):
        if route.receiver is not None and route.receiver not in known:
            yield (
                (*loc, "receiver"),
                "unknown_receiver",
                f"no receiver named {route.receiver!r} (defined: {', '.join(sorted(known))})",
                route.receiver,
            )
        if route.group_by and ALL_LABELS in route.group_by and len(route.group_by) > 1:
            yield (*loc, "group_by"), "invalid_route", '"..." must be alone', route.group_by
        for name in ("group_interval", "repeat_interval"):
            if getattr(route, name) == 0:
                yield (*loc, name), "invalid_duration", "must be longer than 0s", 0


def _walk(
    route: Route, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Route]]:
    yield loc, route
    for index, child in enumerate(route.routes):
        yield from _walk(child, (*loc, "routes", index))


# -- resolving -------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedRoute:
    """Where one alert goes: a receiver and the grouping in force on its route.

    ``key`` names the route as Alertmanager does (the matchers from the root down),
    so two routes to the same receiver keep separate groups.
    """

    receiver: str
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    key: str

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that pick ``labels``' group on this route."""
        if ALL_LABELS in self.group_by:
            return dict(sorted(labels.items()))
        return {k: labels[k] for k in self.group_by if k in labels}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """``{}/{team="risk"}:{alertname="drift", endpoint="fraud"}``: one group's identity."""
        inner = ", ".join(f"{k}={_quote(v)}" for k, v in sorted(self.group_labels(labels).items()))
        return f"{self.key}:{{{inner}}}"


def resolve_routes(config: AlertingConfig, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    """The routes an alert with ``labels`` takes, in tree order (at least one: the root).

    >>> config = AlertingConfig.model_validate({
    ...     "receivers": [{"name": "risk", "slack": {"url": "https://hooks.slack.com/x"}}],
    ...     "route": {"receiver": "log", "routes": [{"match": {"team": "risk"},
    ...                                              "receiver": "risk"}]}})
    >>> [r.receiver for r in resolve_routes(config, {"team": "risk"})]
    ['risk']
    """
    defaults = ResolvedRoute(
        receiver=LOG_RECEIVER,
        group_by=DEFAULT_GROUP_BY,
        group_wait_s=DEFAULT_GROUP_WAIT,
        group_interval_s=DEFAULT_GROUP_INTERVAL,
        repeat_interval_s=DEFAULT_REPEAT_INTERVAL,
        key="",
    )
    return _resolve(config.route, labels, _under(defaults, config.route, "{}"))


def _under(parent: ResolvedRoute, route: Route, key: str) -> ResolvedRoute:
    """``route``'s settings: its own where set, else its parent's."""
    return ResolvedRoute(
        receiver=route.receiver or parent.receiver,
        group_by=parent.group_by if route.group_by is None else tuple(route.group_by),
        group_wait_s=parent.group_wait_s if route.group_wait is None else route.group_wait,
        group_interval_s=parent.group_interval_s
        if route.group_interval is None
        else route.group_interval,
        repeat_interval_s=parent.repeat_interval_s
        if route.repeat_interval is None
        else route.repeat_interval,
        key=key,
    )


def _resolve(route: Route, labels: Mapping[str, str], here: ResolvedRoute) -> list[ResolvedRoute]:
    """Alertmanager's walk: the matching children's answers, else this route."""
    found: list[ResolvedRoute] = []
    for index, child in enumerate(route.routes):
        if not child.matches(labels):
            continue
        key = f"{here.key}/{child.matcher_text()}"
        if any(s.matcher_text() == child.matcher_text() for s in route.routes[:index]):
            key += f"/{index}"
        found.extend(_resolve(child, labels, _under(here, child, key)))
        if not child.continue_:
            break
    return found or [here]


__all__ = [
    "ALL_LABELS",
    "DEFAULT_GROUP_BY",
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_REPEAT_INTERVAL",
    "LOG_RECEIVER",
    "AlertingConfig",
    "EmailConfig",
    "LogConfig",
    "PagerDutyConfig",
    "ReceiverConfig",
    "ReceiverKind",
    "ReceiverSettings",
    "ResolvedRoute",
    "Route",
    "SlackConfig",
    "WebhookConfig",
    "resolve_routes",
]

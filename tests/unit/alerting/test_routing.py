"""The route tree: Alertmanager's matching, inheritance and continue; config validation."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelport.alerting.routing import (
    AlertingConfig,
    EmailConfig,
    PagerDutyConfig,
    ReceiverConfig,
    ResolvedRoute,
    SlackConfig,
    resolve_routes,
)
from modelport.errors import NotFound

TREE = """
receivers:
  - name: oncall-pager
    pagerduty: {routing_key_env: PD_RISK_KEY}
  - name: risk-slack
    slack: {url: "https://hooks.slack.com/services/T0/B0/x", channel: "#risk-alerts"}
  - name: owner-email
    email:
      to: ["{owner}", "ml-platform@example.com"]
      from: modelport@example.com
      smtp_host: smtp.example.com
  - name: audit
    webhook: {url: "https://audit.example.com/hook", headers: {X-Token: abc}}
route:
  receiver: owner-email
  group_wait: 10s
  routes:
    - match: {environment: production}
      match_re: {severity: critical|error}
      receiver: oncall-pager
      group_by: [alertname, endpoint, environment]
      continue: true
    - match: {team: risk}
      receiver: risk-slack
      repeat_interval: 1h
      routes:
        - match: {severity: info}
          receiver: owner-email
    - match_re: {team: "ml-.*"}
      receiver: audit
"""


def config_of(text: str) -> AlertingConfig:
    return AlertingConfig.model_validate(yaml.safe_load(textwrap.dedent(text)))


def receivers(config: AlertingConfig, **labels: str) -> list[str]:
    return [r.receiver for r in resolve_routes(config, labels)]


def errors_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted location, message) of every error validating ``data``."""
    with pytest.raises(ValidationError) as info:
        AlertingConfig.model_validate(data)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


@pytest.fixture
def tree() -> AlertingConfig:
    return config_of(TREE)


def test_without_configuration_everything_goes_to_the_log_receiver() -> None:
    config = AlertingConfig()

    (route,) = resolve_routes(config, {"alertname": "drift", "endpoint": "fraud"})

    assert route == ResolvedRoute(
        receiver="log",
        group_by=("alertname", "endpoint"),
        group_wait_s=30.0,
        group_interval_s=300.0,
        repeat_interval_s=14400.0,
        key="{}",
    )
    assert config.receiver("log").kind == "log"


def test_the_root_takes_what_no_child_matches(tree: AlertingConfig) -> None:
    assert receivers(tree, team="search", severity="warning") == ["owner-email"]


def test_first_matching_child_stops_the_search() -> None:
    config = config_of(
        """
        receivers:
          - {name: first, log: {}}
          - {name: second, log: {}}
        route:
          receiver: log
          routes:
            - {match: {severity: critical}, receiver: first}
            - {match_re: {severity: ".*"}, receiver: second}
        """
    )

    assert receivers(config, severity="critical") == ["first"]
    assert receivers(config, severity="warning") == ["second"]


def test_continue_lets_later_siblings_match_too(tree: AlertingConfig) -> None:
    labels = {"team": "risk", "severity": "critical", "environment": "production"}
    assert receivers(tree, **labels) == ["oncall-pager", "risk-slack"]


def test_match_and_match_re_must_all_hold(tree: AlertingConfig) -> None:
    # production but only a warning: the pager route's regex does not match.
    assert receivers(tree, team="risk", severity="warning", environment="production") == [
        "risk-slack"
    ]
    # critical but in staging: the equality does not hold.
    assert receivers(tree, team="x", severity="critical", environment="staging") == ["owner-email"]


def test_match_re_is_anchored_like_alertmanager(tree: AlertingConfig) -> None:
    assert receivers(tree, team="ml-ranking") == ["audit"]
    assert receivers(tree, team="prod-ml-ranking") == ["owner-email"]
    assert receivers(tree, severity="critical-ish", environment="production") == ["owner-email"]


def test_deepest_match_wins(tree: AlertingConfig) -> None:
    assert receivers(tree, team="risk", severity="info") == ["owner-email"]


def test_children_inherit_what_they_leave_unset(tree: AlertingConfig) -> None:
    (route,) = resolve_routes(tree, {"team": "risk", "severity": "info"})

    assert route.receiver == "owner-email"
    assert route.group_wait_s == 10.0  # from the root
    assert route.repeat_interval_s == 3600.0  # from the risk route
    assert route.group_interval_s == 300.0  # the default
    assert route.group_by == ("alertname", "endpoint")
    assert route.key == '{}/{team="risk"}/{severity="info"}'


def test_a_route_sets_its_own_grouping(tree: AlertingConfig) -> None:
    labels = {
        "alertname": "error_rate",
        "endpoint": "fraud",
        "environment": "production",
        "severity": "critical",
        "team": "payments",
    }
    (pager,) = resolve_routes(tree, labels)

    assert pager.group_by == ("alertname", "endpoint", "environment")
    assert pager.key == '{}/{environment="production",severity=~"^(?:critical|error)$"}'
    assert pager.group_labels(labels) == {
        "alertname": "error_rate",
        "endpoint": "fraud",
        "environment": "production",
    }
    assert pager.group_key(labels) == (
        '{}/{environment="production",severity=~"^(?:critical|error)$"}:'
        '{alertname="error_rate", endpoint="fraud", environment="production"}'
    )
    (root,) = resolve_routes(tree, {**labels, "environment": "staging"})
    assert root.receiver == "owner-email"
    assert root.group_key(labels) == '{}:{alertname="error_rate", endpoint="fraud"}'


def test_owner_and_team_from_the_registry_pick_the_receiver() -> None:
    config = config_of(
        """
        receivers:
          - name: risk-email
            email: {to: ["{owner}"], from: mp@example.com, smtp_host: mail}
          - name: search-slack
            slack: {url: "https://hooks.slack.com/services/T/B/y"}
        route:
          receiver: log
          routes:
            - {match: {team: risk}, receiver: risk-email}
            - {match: {owner: ana@example.com}, receiver: search-slack}
        """
    )

    assert receivers(config, team="risk", owner="bo@example.com") == ["risk-email"]
    assert receivers(config, team="search", owner="ana@example.com") == ["search-slack"]
    assert receivers(config, team="search", owner="cy@example.com") == ["log"]


def test_a_missing_label_reads_as_empty() -> None:
    config = config_of(
        """
        route:
          receiver: log
          routes: [{match: {team: ""}, receiver: log, group_by: ["..."]}]
        """
    )
    (route,) = resolve_routes(config, {"alertname": "drift", "version": "3"})

    assert route.key == '{}/{team=""}'
    assert route.group_labels({"b": "2", "a": "1"}) == {"a": "1", "b": "2"}


def test_sibling_routes_with_equal_matchers_keep_separate_keys() -> None:
    config = config_of(
        """
        route:
          receiver: log
          routes:
            - {match: {team: risk}, continue: true}
            - {match: {team: risk}}
        """
    )
    keys = [r.key for r in resolve_routes(config, {"team": "risk"})]

    assert keys == ['{}/{team="risk"}', '{}/{team="risk"}/1']


def test_numbers_in_matchers_are_text() -> None:
    config = config_of(
        """
        route:
          receiver: log
          routes: [{match: {version: 3}, receiver: log, group_wait: 0}]
        """
    )
    (route,) = resolve_routes(config, {"version": "3"})

    assert route.group_wait_s == 0.0
    assert config.route.routes[0].match == {"version": "3"}


def test_receiver_kinds_and_settings(tree: AlertingConfig) -> None:
    by_name = tree.receiver_map()

    assert [by_name[n].kind for n in ("oncall-pager", "risk-slack", "owner-email", "audit")] == [
        "pagerduty",
        "slack",
        "email",
        "webhook",
    ]
    pager = by_name["oncall-pager"].settings
    assert isinstance(pager, PagerDutyConfig)
    assert pager.url == "https://events.pagerduty.com/v2/enqueue"
    email = by_name["owner-email"].settings
    assert isinstance(email, EmailConfig)
    assert (email.sender, email.smtp_port, email.starttls) == ("modelport@example.com", 587, True)
    assert by_name["log"].kind == "log"
    with pytest.raises(NotFound, match="no receiver named 'nobody'"):
        tree.receiver("nobody")


def test_receivers_are_built_in_python_too() -> None:
    receiver = ReceiverConfig(name="ops", slack=SlackConfig(url="https://hooks.slack.com/x"))

    assert receiver.kind == "slack"
    assert AlertingConfig(receivers=[receiver]).receiver("ops") is receiver


# -- validation ----------------------------------------------------------------------


def test_a_route_to_an_unknown_receiver_names_the_field() -> None:
    found = errors_of(
        {
            "receivers": [{"name": "risk", "log": {}}],
            "route": {"receiver": "risk", "routes": [{"match": {"a": "b"}, "receiver": "pager"}]},
        }
    )
    assert found == [("route.routes.0.receiver", "no receiver named 'pager' (defined: log, risk)")]


def test_a_bad_regex_names_the_field() -> None:
    found = errors_of({"route": {"receiver": "log", "routes": [{"match_re": {"team": "(risk"}}]}})

    ((where, message),) = found
    assert where == "route.routes.0.match_re.team"
    assert message.startswith("'(risk' is not a regular expression: missing ), unterminated")


def test_a_bad_duration_names_the_field() -> None:
    found = errors_of({"route": {"receiver": "log", "repeat_interval": "4 hours"}})

    ((where, message),) = found
    assert where == "route.repeat_interval"
    assert message.startswith("'4 hours' is not a duration")


def test_intervals_must_be_positive() -> None:
    found = errors_of({"route": {"receiver": "log", "routes": [{"group_interval": "0s"}]}})

    assert found == [("route.routes.0.group_interval", "must be longer than 0s")]


def test_the_root_route_needs_a_receiver_and_no_matchers() -> None:
    found = errors_of({"route": {"match": {"team": "risk"}, "continue": True}})

    assert found == [
        ("route.receiver", "the root route needs a receiver"),
        ("route.match", "the root route takes every alert; put matchers on its child routes"),
        ("route.continue", "the root route takes every alert; put matchers on its child routes"),
    ]


def test_a_receiver_has_exactly_one_kind() -> None:
    both = {"name": "x", "log": {}, "webhook": {"url": "https://a.example.com"}}

    assert errors_of({"receivers": [both]}) == [
        ("receivers.0", "set exactly one of webhook, slack, pagerduty, email, log")
    ]
    assert errors_of({"receivers": [{"name": "x"}]}) == [
        ("receivers.0", "set exactly one of webhook, slack, pagerduty, email, log")
    ]


def test_receiver_fields_are_checked() -> None:
    found = errors_of(
        {
            "receivers": [
                {"name": "a", "pagerduty": {}},
                {"name": "b", "slack": {"url": "hooks.slack.com/x"}},
                {"name": "c", "webhook": {"url": "https://a.example.com", "retries": 3}},
                {"name": "d d", "log": {}},
                {"name": "a", "log": {}},
            ]
        }
    )
    assert found == [
        ("receivers.0.pagerduty", "set exactly one of routing_key and routing_key_env"),
        ("receivers.1.slack.url", "expected an http:// or https:// URL, got 'hooks.slack.com/x'"),
        ("receivers.2.webhook.retries", "Extra inputs are not permitted"),
        (
            "receivers.3.name",
            "receiver name 'd d' must start with a letter or digit and hold only letters, "
            "digits and _ . @ -",
        ),
    ]
    assert errors_of({"receivers": [{"name": "a", "log": {}}, {"name": "a", "log": {}}]}) == [
        ("receivers.1.name", "receiver 'a' is defined twice; first at receivers[0]")
    ]


def test_group_by_all_labels_stands_alone() -> None:
    found = errors_of({"route": {"receiver": "log", "group_by": ["...", "team"]}})

    assert found == [("route.group_by", '"..." must be alone')]


def test_email_needs_recipients_and_a_sender() -> None:
    found = errors_of(
        {"receivers": [{"name": "e", "email": {"to": [], "smtp_host": "mail.example.com"}}]}
    )

    assert [where for where, _ in found] == ["receivers.0.email.to", "receivers.0.email.from"]

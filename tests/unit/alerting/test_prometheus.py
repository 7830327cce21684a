"""Exported Prometheus rules: valid PromQL over the metrics the server exposes."""

from __future__ import annotations

import promql_parser
import pytest
import yaml

from modelport.alerting.prometheus import expression, prometheus_rules
from modelport.alerting.rules import SIGNALS, AlertRule, effective_rules


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_every_signal_exports_valid_promql(signal: str) -> None:
    extra = {"metric": "accuracy"} if signal.startswith("performance") else {}
    for kw in ({}, {"endpoints": ["fraud", "churn"], "column": "amount"}):
        rule = AlertRule.model_validate(
            {"name": "r", "signal": signal, "threshold": 0.2} | extra | kw
        )
        promql_parser.parse(expression(rule))


def test_rules_file_carries_for_labels_and_annotations() -> None:
    mine = AlertRule.model_validate(
        {
            "name": "FraudDrift",
            "signal": "drift_score",
            "threshold": 0.1,
            "for": "10m",
            "column": "amount",
            "endpoints": ["fraud"],
            "severity": "critical",
            "labels": {"team": "risk"},
        }
    )
    doc = yaml.safe_load(prometheus_rules(effective_rules([mine])))
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    fraud = rules["FraudDrift"]
    assert fraud["for"] == "10m"
    assert fraud["labels"] == {"severity": "critical", "signal": "drift_score", "team": "risk"}
    assert 'column="amount"' in fraud["expr"] and 'endpoint=~"fraud"' in fraud["expr"]
    assert fraud["expr"].endswith("> 0.1")
    assert "for" not in rules["InputDrift"]
    assert set(rules) >= {"HighErrorRate", "HighLatency", "TrafficStopped", "PerformanceDrop"}

"""Alert rules: validation, defaults, and each signal's value from its sources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from modelport.alerting.rules import (
    DEFAULT_RULES,
    AlertRule,
    EndpointSignals,
    effective_rules,
    signal_value,
)


def rule(signal: str, threshold: float = 0.1, **kw: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "r", "signal": signal, "threshold": threshold} | kw)


def traffic_source(windows: dict[float, Mapping[str, Any]]) -> Any:
    return lambda seconds: windows.get(seconds, {"requests": 0})


MONITOR = {
    "drift": {
        "rows": 500,
        "columns": [
            {
                "column": "amount",
                "psi": 0.4,
                "drifted": True,
                "missing_rate": 0.3,
                "reference_missing_rate": 0.05,
                "out_of_range_rate": 0.2,
            },
            {
                "column": "age",
                "psi": 0.01,
                "drifted": False,
                "missing_rate": 0.0,
                "reference_missing_rate": 0.0,
                "out_of_range_rate": 0.0,
            },
        ],
        "outputs": [{"column": "label", "psi": 0.3, "drifted": True}],
    },
    "performance": {"n_labelled": 200, "accuracy": 0.81, "rmse": None},
}


def signals(**kw: Any) -> EndpointSignals:
    base: dict[str, Any] = {"endpoint": "fraud", "traffic": traffic_source({}), "monitor": MONITOR}
    return EndpointSignals(**(base | kw))


def test_rule_fields_are_validated() -> None:
    with pytest.raises(ValidationError, match="not a duration"):
        rule("error_rate", **{"for": "5 minutes"})
    with pytest.raises(ValidationError, match="signal"):
        rule("latency")
    with pytest.raises(ValidationError, match="metric 'f1'"):
        rule("performance", metric="f1")
    with pytest.raises(ValidationError, match="Extra inputs"):
        rule("error_rate", treshold=1)
    assert rule("error_rate", **{"for": "1h30m"}).for_seconds == 5400


def test_user_rules_replace_defaults_of_the_same_name() -> None:
    mine = AlertRule(name="InputDrift", signal="drift_score", threshold=0.5)
    rules = effective_rules([mine])
    assert [r for r in rules if r.name == "InputDrift"] == [mine]
    assert len(rules) == len(DEFAULT_RULES)
    assert effective_rules([mine], default_rules=False) == [mine]


def test_drift_and_quality_signals_read_the_latest_monitor_run() -> None:
    s = signals()
    assert signal_value(rule("drift_score"), s) == 0.4
    assert signal_value(rule("drift_score", column="age"), s) == 0.01
    assert signal_value(rule("output_drift"), s) == 0.3
    assert signal_value(rule("drifted_columns"), s) == 1.0
    assert signal_value(rule("missing_rate"), s) == pytest.approx(0.25)
    assert signal_value(rule("out_of_range_rate"), s) == 0.2
    assert signal_value(rule("drift_score", min_samples=1000), s) is None
    assert signal_value(rule("drift_score"), signals(monitor=None)) is None


def test_performance_signals_compare_with_training_metrics() -> None:
    s = signals(training={"accuracy": 0.9, "rmse": 1.0})
    assert signal_value(rule("performance", metric="accuracy"), s) == 0.81
    assert signal_value(rule("performance_drop", metric="accuracy"), s) == pytest.approx(0.09)
    assert signal_value(rule("performance_drop", metric="rmse"), s) is None
    assert signal_value(rule("performance_drop", metric="accuracy", min_samples=500), s) is None
    assert signal_value(rule("performance_drop", metric="accuracy"), signals()) is None


def test_traffic_signals_need_enough_requests() -> None:
    window = {
        "requests": 100,
        "errors": 7,
        "error_rate": 0.07,
        "p99_s": 0.3,
        "p50_s": 0.01,
        "requests_per_s": 0.33,
    }
    s = signals(traffic=traffic_source({300.0: window}))
    assert signal_value(rule("error_rate"), s) == 0.07
    assert signal_value(rule("latency_p99"), s) == 0.3
    assert signal_value(rule("latency_p50"), s) == 0.01
    assert signal_value(rule("request_rate"), s) == 0.33
    assert signal_value(rule("error_rate", min_samples=500), s) is None


def test_traffic_drop_compares_with_the_windows_before() -> None:
    stopped = traffic_source({600.0: {"requests": 0}, 4200.0: {"requests": 600}})
    assert signal_value(rule("traffic_drop", window="10m"), signals(traffic=stopped)) == 1.0
    halved = traffic_source({600.0: {"requests": 50}, 4200.0: {"requests": 650}})
    value = signal_value(rule("traffic_drop", window="10m"), signals(traffic=halved))
    assert value == pytest.approx(0.5)
    idle = traffic_source({600.0: {"requests": 0}, 4200.0: {"requests": 3}})
    assert signal_value(rule("traffic_drop", window="10m"), signals(traffic=idle)) is None


def test_breach_and_description() -> None:
    r = rule("latency_p99", 0.25, op=">=", summary="p99 of {endpoint} is {value}s")
    assert r.breached(0.25) and not r.breached(0.2)
    assert r.describe("fraud", 0.31) == "p99 of fraud is 0.31s"
    assert "no data" in rule("error_rate").describe("fraud", None)
    assert r.applies_to("production", "any")
    assert not rule("error_rate", endpoints=["churn"]).applies_to("production", "fraud")
    assert not rule("error_rate", environments=["staging"]).applies_to("production", "fraud")

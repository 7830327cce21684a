"""The same alert rules, as Prometheus alerting rules over Modelport's ``/metrics``.

For teams that run Prometheus and Alertmanager: ``modelport alerts export-prometheus``
writes a rules file whose expressions read the metrics every worker exposes (request
counters and latency histograms) and the gauges the built-in monitor sets (PSI, drift
tests, missing and out-of-range ratios, performance and the training metrics it is
compared with). Labels and annotations match what the built-in engine sends, so
Alertmanager routes the exported alerts the same way.

Example::

    print(prometheus_rules(effective_rules([])))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from modelport.alerting.rules import LOWER_IS_BETTER, SIGNALS, AlertRule
from modelport.durations import format_duration, parse_duration

_BY = "endpoint, model, version"


def _selector(rule: AlertRule, *raw: str, **extra: str) -> str:
    """``{k="v", ...}`` for ``extra``, the rule's endpoints and ``raw`` matchers."""
    matchers = [f'{k}="{v}"' for k, v in extra.items()] + list(raw)
    if rule.endpoints:
        matchers.append('endpoint=~"' + "|".join(rule.endpoints) + '"')
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def _column(rule: AlertRule, outputs: bool) -> dict[str, str]:
    if rule.column:
        return {"column": f"output:{rule.column}" if outputs else rule.column}
    return {}


def expression(rule: AlertRule) -> str:
    """The PromQL expression that is true (non-empty) when ``rule`` breaches."""
    w = format_duration(rule.window_seconds)
    sel = _selector(rule)
    cond = f"{rule.op} {rule.threshold:g}"
    rate = f"sum by (endpoint) (rate(modelport_requests_total{sel}[{w}]))"
    if rule.signal == "error_rate":
        errors = f"sum by (endpoint) (rate(modelport_request_errors_total{sel}[{w}]))"
        return f"({errors} / {rate}) {cond} and {rate} > 0"
    if rule.signal in ("latency_p99", "latency_p50"):
        q = "0.99" if rule.signal == "latency_p99" else "0.5"
        buckets = f"rate(modelport_request_duration_seconds_bucket{sel}[{w}])"
        return f"histogram_quantile({q}, sum by (endpoint, le) ({buckets})) {cond}"
    if rule.signal == "request_rate":
        return f"{rate} {cond}"
    if rule.signal == "traffic_drop":
        before = format_duration(rule.window_seconds * 6)
        earlier = f"sum by (endpoint) (rate(modelport_requests_total{sel}[{before}] offset {w}))"
        return f"(1 - {rate} / {earlier}) {cond}"
    return _monitor_expression(rule, cond)


def _monitor_expression(rule: AlertRule, cond: str) -> str:
    labelled = f"modelport_labelled_predictions{_selector(rule)} >= {rule.min_samples}"
    if rule.signal == "drift_score":
        sel = _selector(rule, 'column!~"output:.*"', **_column(rule, False))
        return f"max by ({_BY}) (modelport_psi{sel}) {cond}"
    if rule.signal == "output_drift":
        sel = _selector(rule, 'column=~"output:.*"', **_column(rule, True))
        return f"max by ({_BY}) (modelport_psi{sel}) {cond}"
    if rule.signal == "drifted_columns":
        sel = _selector(rule, **_column(rule, False))
        return f"sum by ({_BY}) (modelport_drift_detected{sel}) {cond}"
    if rule.signal == "missing_rate":
        sel = _selector(rule, **_column(rule, False))
        live = f"modelport_missing_ratio{sel}"
        ref = f"modelport_reference_missing_ratio{sel}"
        return f"max by ({_BY}) ({live} - {ref}) {cond}"
    if rule.signal == "out_of_range_rate":
        sel = _selector(rule, **_column(rule, False))
        return f"max by ({_BY}) (modelport_out_of_range_ratio{sel}) {cond}"
    metric = rule.metric or "accuracy"
    sel = _selector(rule, metric=metric)
    live = f"max by ({_BY}) (modelport_model_performance{sel})"
    if rule.signal == "performance":
        return f"({live} {cond}) and on ({_BY}) ({labelled})"
    trained = f"max by ({_BY}) (modelport_training_metric{sel})"
    drop = f"({live} - {trained})" if metric in LOWER_IS_BETTER else f"({trained} - {live})"
    return f"({drop} {cond}) and on ({_BY}) ({labelled})"


def prometheus_rule(rule: AlertRule) -> dict[str, Any]:
    out: dict[str, Any] = {"alert": rule.name, "expr": expression(rule)}
    if parse_duration(rule.for_) > 0:
        out["for"] = format_duration(rule.for_seconds)
    out["labels"] = {"severity": rule.severity, "signal": rule.signal} | rule.labels
    out["annotations"] = {
        "summary": rule.summary
        or f"{rule.signal} on {{{{ $labels.endpoint }}}} is "
        f"{{{{ $value }}}} ({rule.op} {rule.threshold:g})",
        "description": SIGNALS[rule.signal],
    }
    return out


def prometheus_rules(rules: Iterable[AlertRule], *, group: str = "modelport") -> str:
    """A Prometheus rules file (YAML) with one alerting rule per Modelport rule."""
    body = {"groups": [{"name": group, "rules": [prometheus_rule(r) for r in rules]}]}
    return yaml.safe_dump(body, sort_keys=False, width=200)

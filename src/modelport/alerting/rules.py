"""Alert rules: a condition on a monitoring signal, held for a duration.

A rule names a signal, a comparison and a threshold; it is evaluated per endpoint
(every endpoint of the environment unless ``endpoints`` narrows it). The signals come
from the prediction log (traffic, errors, latency), from the latest monitor run
(drift, data quality, performance once labels arrive) and from the registry (the
version's training metrics, for ``performance_drop``). A signal with too little data
behind it (fewer than ``min_samples`` requests or labels) has no value, and a rule
without a value does not fire.

Every deployment gets `DEFAULT_RULES` unless the alerting document says
``default_rules: false``; a rule of the same name replaces a default.

Example (``modelport.yaml``)::

    alerting:
      rules:
        - name: fraud-amount-drift
          signal: drift_score
          column: amount
          threshold: 0.1
          for: 10m
          severity: critical
          endpoints: [fraud]
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelport.durations import parse_duration
from modelport.errors import InvalidInput

Signal = Literal[
    "error_rate",
    "latency_p99",
    "latency_p50",
    "request_rate",
    "traffic_drop",
    "drift_score",
    "drifted_columns",
    "output_drift",
    "missing_rate",
    "out_of_range_rate",
    "performance",
    "performance_drop",
    "feature_staleness",
]
Severity = Literal["info", "warning", "error", "critical"]

#: What each signal measures, in words (for docs, `modelport alerts list` and alerts).
SIGNALS: dict[str, str] = {
    "error_rate": "share of requests that failed over the window",
    "latency_p99": "99th percentile request latency over the window, seconds",
    "latency_p50": "median request latency over the window, seconds",
    "request_rate": "requests per second over the window",
    "traffic_drop": "1 - request rate over the window / request rate over the 6 windows "
    "before it (1.0: traffic stopped)",
    "drift_score": "PSI of the most drifted input column (or of `column`)",
    "drifted_columns": "input columns whose drift test flags drift",
    "output_drift": "PSI of the model's output",
    "missing_rate": "missing-value rate above the reference's, worst column (or `column`)",
    "out_of_range_rate": "share of values outside the reference range, worst column (or `column`)",
    "performance": "a live metric (`metric`) on labelled predictions",
    "performance_drop": "training metric minus live metric (`metric`; for error metrics "
    "such as rmse, live minus training)",
    "feature_staleness": "share of enriched rows whose feature values were missing or past "
    "the view's TTL, worst view (or the view named by `column`)",
}

#: Signals read from the prediction log's traffic over the rule's window.
TRAFFIC_SIGNALS = {"error_rate", "latency_p99", "latency_p50", "request_rate", "traffic_drop"}

#: Metrics where lower is better: a drop in quality is a rise in value.
LOWER_IS_BETTER = {"log_loss", "mae", "rmse"}

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


class AlertRule(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=128, description="Alert name (alertname label).")
    signal: Signal = Field(description="What is measured; see the signal table.")
    op: Literal[">", ">=", "<", "<=", "=="] = Field(
        default=">", description="How the signal compares to the threshold to fire."
    )
    threshold: float = Field(description="The value the signal is compared to.")
    for_: str = Field(
        default="0s",
        alias="for",
        description="How long the condition must hold before the alert fires.",
    )
    window: str = Field(
        default="5m", description="Traffic signals: the window the rate or latency covers."
    )
    column: str | None = Field(
        default=None, description="Drift and quality signals: this column instead of the worst."
    )
    metric: str | None = Field(
        default=None,
        description="performance, performance_drop: accuracy, precision, recall, roc_auc, "
        "log_loss, mae or rmse.",
    )
    min_samples: int = Field(
        default=20, ge=0, description="Fewest requests (or labels) the signal needs to count."
    )
    endpoints: list[str] = Field(
        default_factory=list, description="Endpoints the rule covers; empty means all."
    )
    environments: list[str] = Field(
        default_factory=list, description="Environments the rule covers; empty means all."
    )
    severity: Severity = Field(default="warning", description="info, warning, error, critical.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels, used by routes (e.g. team: risk)."
    )
    summary: str | None = Field(
        default=None,
        description="One line for humans; {endpoint}, {value}, {threshold}, {column} are "
        "filled in.",
    )

    @field_validator("for_", "window")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        known = {"accuracy", "precision", "recall", "roc_auc", "log_loss", "mae", "rmse"}
        if value is not None and value not in known:
            raise ValueError(f"metric {value!r} is not one of {sorted(known)}")
        return value

    @property
    def for_seconds(self) -> float:
        return parse_duration(self.for_)

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)

    def applies_to(self, environment: str, endpoint: str) -> bool:
        return (not self.environments or environment in self.environments) and (
            not self.endpoints or endpoint in self.endpoints
        )

    def breached(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def describe(self, endpoint: str, value: float | None) -> str:
        shown = "no data" if value is None else f"{value:.4g}"
        if self.summary:
            return self.summary.format(
                endpoint=endpoint, value=shown, threshold=self.threshold, column=self.column or ""
            )
        what = self.signal + (f"[{self.column}]" if self.column else "")
        what += f"({self.metric})" if self.metric else ""
        return f"{what} on {endpoint} is {shown} ({self.op} {self.threshold:g})"


def _rule(name: str, signal: Signal, threshold: float, **kw: Any) -> AlertRule:
    return AlertRule(name=name, signal=signal, threshold=threshold, **kw)


#: The rules every deployment gets (see the module docstring).
DEFAULT_RULES: tuple[AlertRule, ...] = (
    _rule("HighErrorRate", "error_rate", 0.05, window="5m", **{"for": "2m"}, severity="critical"),
    _rule("HighLatency", "latency_p99", 0.5, window="5m", **{"for": "5m"}),
    _rule("TrafficStopped", "traffic_drop", 1.0, op=">=", window="10m", **{"for": "10m"}),
    _rule("InputDrift", "drift_score", 0.2, min_samples=500),
    _rule("OutputDrift", "output_drift", 0.2, min_samples=500),
    _rule("MissingValues", "missing_rate", 0.1, min_samples=100),
    _rule("PerformanceDrop", "performance_drop", 0.05, metric="accuracy", min_samples=50),
    _rule("StaleFeatures", "feature_staleness", 0.1, min_samples=100),
)


def effective_rules(rules: list[AlertRule], *, default_rules: bool = True) -> list[AlertRule]:
    """The user's rules, plus the defaults they do not replace by name."""
    if not default_rules:
        return list(rules)
    named = {r.name for r in rules}
    return [r for r in DEFAULT_RULES if r.name not in named] + list(rules)


@dataclass
class EndpointSignals:
    """What rule evaluation reads for one endpoint.

    ``traffic(window_s)`` answers the prediction log's traffic figures over the last
    ``window_s`` seconds (requests, errors, error_rate, p50_s, p99_s,
    requests_per_s); ``monitor`` is the latest monitor run's report; ``training``
    the serving version's offline metrics.
    """

    endpoint: str
    traffic: Callable[[float], Mapping[str, Any]]
    monitor: Mapping[str, Any] | None = None
    training: Mapping[str, float] = field(default_factory=dict)
    _cache: dict[float, Mapping[str, Any]] = field(default_factory=dict)

    def traffic_over(self, seconds: float) -> Mapping[str, Any]:
        if seconds not in self._cache:
            self._cache[seconds] = self.traffic(seconds)
        return self._cache[seconds]


def signal_value(rule: AlertRule, signals: EndpointSignals) -> float | None:
    """The rule's signal for one endpoint now, or None when there is too little data."""
    if rule.signal in TRAFFIC_SIGNALS:
        return _traffic_value(rule, signals)
    report = signals.monitor
    if not report:
        return None
    if rule.signal in ("performance", "performance_drop"):
        return _performance_value(rule, report, signals.training)
    if rule.signal == "feature_staleness":
        features = report.get("features") or {}
        if int(features.get("rows") or 0) < max(rule.min_samples, 1):
            return None
        views = [v for v in features.get("views") or [] if rule.column in (None, v.get("view"))]
        return _worst(v.get("stale_ratio") for v in views)
    drift = report.get("drift") or {}
    if int(drift.get("rows") or 0) < rule.min_samples:
        return None
    columns = _columns(drift.get("columns") or [], rule.column)
    if rule.signal == "output_drift":
        columns = _columns(drift.get("outputs") or [], rule.column)
        return _worst(c.get("psi") for c in columns)
    if rule.signal == "drift_score":
        return _worst(c.get("psi") for c in columns)
    if rule.signal == "drifted_columns":
        return float(sum(1 for c in columns if c.get("drifted")))
    if rule.signal == "missing_rate":
        return _worst(
            (c.get("missing_rate") or 0.0) - (c.get("reference_missing_rate") or 0.0)
            for c in columns
        )
    return _worst(c.get("out_of_range_rate") for c in columns)


def _traffic_value(rule: AlertRule, signals: EndpointSignals) -> float | None:
    window = rule.window_seconds
    now = signals.traffic_over(window)
    requests = int(now.get("requests") or 0)
    if rule.signal == "request_rate":
        return float(now.get("requests_per_s") or 0.0)
    if rule.signal == "traffic_drop":
        before = signals.traffic_over(window * 7)
        earlier = int(before.get("requests") or 0) - requests
        if earlier < rule.min_samples:
            return None  # never had traffic worth watching
        rate_before = earlier / (window * 6)
        rate_now = requests / window
        return max(0.0, 1.0 - rate_now / rate_before)
    if requests < max(rule.min_samples, 1):
        return None
    key = {"error_rate": "error_rate", "latency_p99": "p99_s", "latency_p50": "p50_s"}
    value = now.get(key[rule.signal])
    return float(value) if value is not None else None


def _performance_value(
    rule: AlertRule, report: Mapping[str, Any], training: Mapping[str, float]
) -> float | None:
    metric = rule.metric or "accuracy"
    live = report.get("performance") or {}
    if int(live.get("n_labelled") or 0) < max(rule.min_samples, 1):
        return None
    value = live.get(metric)
    if value is None:
        return None
    if rule.signal == "performance":
        return float(value)
    trained = training.get(metric)
    if trained is None:
        return None
    drop = float(value) - float(trained)
    return drop if metric in LOWER_IS_BETTER else -drop


def _columns(columns: list[Mapping[str, Any]], name: str | None) -> list[Mapping[str, Any]]:
    return [c for c in columns if c.get("column") == name] if name else columns


def _worst(values: Any) -> float | None:
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None

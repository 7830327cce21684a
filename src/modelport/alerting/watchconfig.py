"""The ``alerting:`` document: receivers and routes, alert rules, drift thresholds.

Written in ``modelport.yaml`` and stored in the registry by ``modelport apply``, so
every server and replica reads the same one. Left out, every deployment gets the
default rules (`modelport.alerting.rules.DEFAULT_RULES`) and alerts go to the
``log`` receiver.

Example (``modelport.yaml``)::

    alerting:
      receivers:
        - name: risk-oncall
          slack: {url: https://hooks.slack.com/services/T000/B000/XXX}
      route:
        receiver: log
        routes:
          - match: {team: risk}
            receiver: risk-oncall
      rules:
        - {name: FraudAmountDrift, signal: drift_score, column: amount, threshold: 0.1}
      drift:
        amount: {method: ks, threshold: 0.01, psi_threshold: 0.1}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelport.alerting.routing import AlertingConfig, ReceiverConfig
from modelport.alerting.rules import SIGNALS, AlertRule, effective_rules
from modelport.errors import InvalidConfig, NotFound
from modelport.registry.watching import WatchStore

if TYPE_CHECKING:
    from modelport.monitoring.drift import ColumnThreshold

#: The registry document that holds the applied ``alerting:`` section.
DOCUMENT = "alerting"


class DriftThreshold(BaseModel):
    """One column's drift test and thresholds (left out: Evidently's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["ks", "wasserstein", "chisquare", "jensenshannon", "z"] | None = Field(
        default=None, description="The drift test; default by column type and sample size."
    )
    threshold: float | None = Field(
        default=None, ge=0, description="The test's threshold (p-value or distance)."
    )
    psi_threshold: float | None = Field(
        default=None, ge=0, description="PSI above which the column counts as drifted."
    )


class AlertingSpec(AlertingConfig):
    """The whole ``alerting:`` section."""

    default_rules: bool = Field(
        default=True, description="Give every deployment the default rules too."
    )
    rules: list[AlertRule] = Field(default_factory=list, description="Alert rules.")
    drift: dict[str, DriftThreshold] = Field(
        default_factory=dict, description="Per input column: drift test and thresholds."
    )

    @model_validator(mode="after")
    def _unique_rules(self) -> AlertingSpec:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule {rule.name!r} is defined twice")
            seen.add(rule.name)
        return self


class WatchConfig:
    """The applied alerting document, with what the engine asks of it."""

    def __init__(self, spec: AlertingSpec, revision: int = 0) -> None:
        self.spec = spec
        self.revision = revision

    @property
    def routing(self) -> AlertingConfig:
        return self.spec

    def rules(self) -> list[AlertRule]:
        return effective_rules(self.spec.rules, default_rules=self.spec.default_rules)

    def receiver(self, name: str) -> ReceiverConfig:
        receivers = self.spec.receiver_map()
        if name not in receivers:
            raise NotFound(f"no receiver named {name!r}", hint=f"defined: {sorted(receivers)}")
        return receivers[name]

    def thresholds(self) -> dict[str, ColumnThreshold]:
        from modelport.monitoring.drift import ColumnThreshold

        return {
            column: ColumnThreshold(
                method=t.method, threshold=t.threshold, psi_threshold=t.psi_threshold
            )
            for column, t in self.spec.drift.items()
        }

    @staticmethod
    def signal_help(signal: str) -> str:
        return SIGNALS.get(signal, signal)


def parse_alerting(body: dict[str, Any] | None) -> AlertingSpec:
    """Validate an ``alerting:`` mapping (errors name each bad field)."""
    try:
        return AlertingSpec.model_validate(body or {})
    except ValidationError as exc:
        lines = [f"alerting.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise InvalidConfig("\n".join(lines)) from None


def load_watch_config(store: WatchStore) -> WatchConfig:
    """The applied document, or the defaults when none was applied."""
    found = store.get_document(DOCUMENT)
    if found is None:
        return WatchConfig(AlertingSpec())
    body, revision = found
    return WatchConfig(parse_alerting(body), revision)

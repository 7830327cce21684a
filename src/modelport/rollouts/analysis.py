"""The analysis between two rollout steps: the candidate against the live version, on
what both answered over the last interval.

Checks (each passes, fails, or is skipped for lack of data; thresholds are the
policy's):

- ``traffic``: the candidate answered at least ``min_requests`` requests (shadow
  copies in a shadow step). Fewer: the verdict is ``wait``, not a failure.
- ``error_rate``: the candidate's error rate exceeds the live one by at most
  ``max_error_rate`` (so bad input that fails everywhere does not count against it).
- ``p99_latency``: candidate p99 / live p99 at most ``max_p99_ratio``.
- ``disagreement`` (a shadow step): the share of shadow answers that differ from the
  live answer to the same request, at most ``max_disagreement``.
- ``prediction_drift``: PSI of the candidate's primary output against the live one's
  (labels as categories, numbers in the live answers' deciles), at most
  ``max_prediction_psi``; skipped until each side has `MIN_DRIFT_ANSWERS` answers.
- ``performance``: on labelled predictions (at least ``min_labels`` each), the drop of
  accuracy (classifiers) or the relative rise of MAE (regressors), at most
  ``max_performance_drop``.

Example::

    analysis = analyze(logs, labels, rollout, since=start, until=now)
    analysis.verdict  # "pass", "fail" or "wait"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from modelport.monitoring.comparison import compare_logged
from modelport.monitoring.labels import LabelStore
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.stattests import psi
from modelport.registry.rollouts import Rollout

PASS, FAIL, WAIT = "pass", "fail", "wait"
#: Live requests needed before latency is compared at all.
MIN_LIVE_REQUESTS = 20
#: Answers each side needs before their distributions are compared: PSI over ten bins
#: of fewer answers is mostly sampling noise (about 0.1 at 100 answers of one
#: distribution), and would fail good candidates.
MIN_DRIFT_ANSWERS = 200


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: skipped (no data to judge on)
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "result": "skipped" if self.passed is None else "pass" if self.passed else "fail",
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Analysis:
    """What one interval showed, and the verdict."""

    step: int
    percent: float
    since: datetime
    until: datetime
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        traffic = next((c for c in self.checks if c.name == "traffic"), None)
        if any(c.passed is False for c in self.checks if c.name != "traffic"):
            return FAIL
        if traffic is not None and traffic.passed is False:
            return WAIT
        return PASS

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False and c.name != "traffic"]

    def summary(self) -> str:
        if self.verdict == FAIL:
            return "; ".join(f"{c.name}: {c.detail}" for c in self.failed)
        if self.verdict == WAIT:
            return next(c.detail for c in self.checks if c.name == "traffic")
        return "every check passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "percent": self.percent,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "verdict": self.verdict,
            "summary": self.summary(),
            "checks": [c.to_dict() for c in self.checks],
        }


def analyze(
    logs: LogStore,
    labels: LabelStore | None,
    rollout: Rollout,
    *,
    since: datetime,
    until: datetime,
) -> Analysis:
    """Judge the candidate of ``rollout`` on ``[since, until)`` at its current step."""
    policy, endpoint = rollout.policy, rollout.endpoint
    candidate = rollout.candidate.name
    shadow_step = rollout.percent == 0
    env = rollout.environment
    stats = logs.by_variant(endpoint, since=since, until=until, environment=env)
    mine = stats.get((candidate, shadow_step), _EMPTY)
    live_names = [v.name for v in rollout.spec_at(rollout.step).live if v.name != candidate]
    live = _pooled([stats.get((name, False), _EMPTY) for name in live_names])
    analysis = Analysis(rollout.step, rollout.percent, since, until)
    checks = analysis.checks
    n = mine["requests"]
    checks.append(
        Check(
            "traffic",
            n >= policy.min_requests,
            float(n),
            float(policy.min_requests),
            f"the candidate answered {n} request(s) in the interval; "
            f"{policy.min_requests} are needed to judge it",
        )
    )
    if n == 0:
        return analysis
    checks.append(_error_rate(mine, live, policy.max_error_rate))
    checks.append(_latency(mine, live, policy.max_p99_ratio))
    if shadow_step:
        comparison = compare_logged(
            logs, endpoint, candidate, since=since, until=until, environment=rollout.environment
        )
        checks.append(
            _at_most(
                "disagreement",
                comparison.disagreement if comparison.pairs else None,
                policy.max_disagreement,
                f"over {comparison.pairs} shadowed row(s)",
            )
        )
    else:
        checks.append(_drift(logs, rollout, live_names, since, until))
    checks.append(_performance(labels, rollout, live_names, since, until))
    return analysis


_EMPTY: dict[str, Any] = {"requests": 0, "errors": 0, "error_rate": None, "p99_s": None}


def _pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The live variants together (p99: the largest, a conservative bound)."""
    requests = sum(p["requests"] for p in parts)
    errors = sum(p["errors"] for p in parts)
    p99s = [p["p99_s"] for p in parts if p.get("p99_s") is not None]
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p99_s": max(p99s) if p99s else None,
    }


def _at_most(name: str, value: float | None, threshold: float, context: str) -> Check:
    if value is None:
        return Check(name, None, None, threshold, f"no data {context}".strip())
    passed = value <= threshold
    verb = "within" if passed else "above"
    return Check(name, passed, value, threshold, f"{value:.4g} is {verb} {threshold:g} {context}")


def _error_rate(mine: dict[str, Any], live: dict[str, Any], allowed: float) -> Check:
    rate = mine["error_rate"] or 0.0
    base = live["error_rate"] if live["requests"] else 0.0
    check = _at_most(
        "error_rate",
        rate - (base or 0.0),
        allowed,
        f"(candidate {rate:.2%} of {mine['requests']} vs live {base or 0.0:.2%})",
    )
    return (
        check
        if check.passed is not False
        else _replace_detail(
            check,
            f"the candidate failed {rate:.2%} of {mine['requests']} requests against "
            f"{base or 0.0:.2%} for the live version (at most {allowed:.2%} more allowed)",
        )
    )


def _latency(mine: dict[str, Any], live: dict[str, Any], ratio: float) -> Check:
    if live["requests"] < MIN_LIVE_REQUESTS or not live["p99_s"] or mine["p99_s"] is None:
        return Check("p99_latency", None, None, ratio, "too few live requests to compare")
    value = mine["p99_s"] / live["p99_s"]
    detail = (
        f"candidate p99 {mine['p99_s'] * 1000:.1f} ms vs live {live['p99_s'] * 1000:.1f} ms "
        f"(x{value:.2f}, at most x{ratio:g})"
    )
    return Check("p99_latency", value <= ratio, value, ratio, detail)


def _drift(
    logs: LogStore, rollout: Rollout, live_names: list[str], since: datetime, until: datetime
) -> Check:
    threshold = rollout.policy.max_prediction_psi
    for column in ("out_label", "out_prediction"):
        endpoint, env = rollout.endpoint, rollout.environment
        mine = logs.outputs(
            endpoint, rollout.candidate.name, column, since=since, until=until, environment=env
        )
        if mine.empty:
            continue
        theirs = [
            logs.outputs(endpoint, other, column, since=since, until=until, environment=env)
            for other in live_names
        ]
        live = np.concatenate([t.to_numpy() for t in theirs]) if theirs else np.array([])
        if len(live) < MIN_DRIFT_ANSWERS or len(mine) < MIN_DRIFT_ANSWERS:
            break
        value = _output_psi(live, mine.to_numpy())
        return _at_most(
            "prediction_drift", value, threshold, f"(PSI of {column}, candidate vs live)"
        )
    return Check("prediction_drift", None, None, threshold, "too few answers to compare")


def _output_psi(live: np.ndarray, mine: np.ndarray) -> float:
    if live.dtype.kind in "fiu" and mine.dtype.kind in "fiu" and len(np.unique(live)) > 10:
        edges = np.unique(np.quantile(live, np.linspace(0, 1, 11)))
        inner = edges[1:-1]
        expected = np.bincount(np.searchsorted(inner, live, side="right"), minlength=len(edges) - 1)
        actual = np.bincount(np.searchsorted(inner, mine, side="right"), minlength=len(edges) - 1)
        return psi(expected, actual)
    categories = sorted({*map(str, live), *map(str, mine)})
    index = {c: i for i, c in enumerate(categories)}
    expected = np.bincount([index[str(v)] for v in live], minlength=len(categories))
    actual = np.bincount([index[str(v)] for v in mine], minlength=len(categories))
    return psi(expected, actual)


def _performance(
    labels: LabelStore | None,
    rollout: Rollout,
    live_names: list[str],
    since: datetime,
    until: datetime,
) -> Check:
    threshold = rollout.policy.max_performance_drop
    if labels is None:
        return Check("performance", None, None, threshold, "no labels")
    rows = labels.performance(rollout.endpoint, since=since, until=until)
    by_name = {f"{r['model']}-v{r['version']}": r for r in rows}
    mine = by_name.get(rollout.candidate.name)
    theirs = [by_name[n] for n in live_names if n in by_name]
    need = rollout.policy.min_labels
    if mine is None or not theirs or mine["n_labelled"] < need:
        return Check("performance", None, None, threshold, f"fewer than {need} labelled answers")
    base = max(theirs, key=lambda r: r["n_labelled"])
    if base["n_labelled"] < need:
        return Check("performance", None, None, threshold, f"fewer than {need} labelled answers")
    if mine.get("accuracy") is not None and base.get("accuracy") is not None:
        drop = base["accuracy"] - mine["accuracy"]
        detail = f"accuracy {mine['accuracy']:.3f} vs live {base['accuracy']:.3f}"
    elif mine.get("mae") is not None and base.get("mae"):
        drop = (mine["mae"] - base["mae"]) / base["mae"]
        detail = f"MAE {mine['mae']:.4g} vs live {base['mae']:.4g}"
    else:
        return Check("performance", None, None, threshold, "no comparable metric")
    return _at_most("performance", drop, threshold, f"({detail})")


def _replace_detail(check: Check, detail: str) -> Check:
    return Check(check.name, check.passed, check.value, check.threshold, detail)

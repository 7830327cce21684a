"""Monitor history routes: the monitor runs the server kept, one column's live
histogram beside its reference, and model performance over time from delayed labels.

Read-only and off the hot path; each parses its parameters and calls the store that
owns the data:

- ``GET /v1/endpoints/{e}/monitor/history``: the runs the monitor loop stored
  (`modelport.registry.watching.WatchStore.monitor_runs`, the last 500 per endpoint);
- ``GET /v1/endpoints/{e}/monitor/histogram?column=``: the reference profile's bins
  and the live rows of the window counted on them;
- ``GET /v1/endpoints/{e}/monitor/performance?window=&bucket=``: per model version and
  time bucket, the metrics of `modelport.monitoring.performance` over the labelled
  predictions (`modelport.monitoring.labels.LabelStore.performance`), laid out as
  series for a chart.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from modelport.errors import InvalidInput, NotFound, Unavailable
from modelport.registry.watching import WatchStore
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    from modelport.client import Client
    from modelport.monitoring.labels import LabelStore

router = APIRouter(prefix="/v1", tags=["monitoring"])

#: What a run keeps of its report: drift per column, data quality, traffic, performance.
RUN_FIELDS = ("model", "version", "window", "since", "until", "rows", "drift", "traffic")
#: Default window of the performance chart: labels arrive late, so look back a week.
PERFORMANCE_WINDOW = "7d"


def column_histogram(
    client: Client, environment: str, endpoint: str, column: str, window: str
) -> dict[str, Any]:
    """One input or output column of the served version: the reference profile's
    histogram and the live rows of ``window`` counted on the same bin edges."""
    import numpy as np

    from modelport.durations import parse_duration
    from modelport.monitoring.logstore import LogStore

    deployment = client.registry.get_deployment(environment, endpoint)
    primary = deployment.spec.primary
    mv = client.registry.get_version(primary.model, primary.version)
    profile = mv.profile or {}
    side, prof = "in", (profile.get("columns") or {}).get(column)
    if prof is None:
        side, prof = "out", (profile.get("outputs") or {}).get(column)
    if prof is None:
        raise NotFound(
            f"{mv.uri} has no reference profile for column {column!r}",
            hint="pick a column of the version's signature; the model page lists them",
        )
    hist = prof.get("histogram")
    if not hist or len(hist.get("edges") or ()) < 2:
        raise InvalidInput(
            f"column {column!r} of {mv.uri} has no histogram in its profile ({prof.get('kind')})",
            hint="histograms are kept for numeric columns",
        )
    since = datetime.now(UTC) - timedelta(seconds=parse_duration(window))
    name = f"{side}_{column}"
    live = LogStore(client.settings).window(
        endpoint,
        since=since,
        last=client.settings.monitor_max_rows,
        columns=[name],
        version=mv.version,
    )
    values = np.asarray(live[name], dtype=np.float64) if name in live.columns else np.empty(0)
    values = values[np.isfinite(values)]
    edges = np.asarray(hist["edges"], dtype=np.float64)
    # Same bins as the profile: the last one closed on the right, as numpy's.
    counts = np.histogram(values[(values >= edges[0]) & (values <= edges[-1])], edges)[0]
    return {
        "environment": environment,
        "endpoint": endpoint,
        "model": mv.name,
        "version": mv.version,
        "column": column,
        "window": window,
        "since": since.isoformat(),
        "edges": [float(e) for e in edges],
        "reference": {"counts": [int(c) for c in hist["counts"]], "rows": int(sum(hist["counts"]))},
        "current": {
            "counts": [int(c) for c in counts],
            "rows": int(values.size),
            "below": int((values < edges[0]).sum()),
            "above": int((values > edges[-1]).sum()),
        },
    }


@router.get("/endpoints/{endpoint}/monitor/history")
async def monitor_history(
    request: Request,
    endpoint: str,
    limit: Annotated[int, Query(ge=1, le=500, description="The newest N runs.")] = 48,
) -> Response:
    """The monitor runs the server kept for an endpoint, oldest first."""
    state = app_state(request)
    env = state.settings.env
    store = WatchStore(state.client.registry.engine)
    runs = await asyncio.to_thread(
        store.monitor_runs, env, endpoint, limit=limit, fields=RUN_FIELDS
    )
    return json_response({"environment": env, "endpoint": endpoint, "runs": runs})


@router.get("/endpoints/{endpoint}/monitor/histogram")
async def monitor_histogram(
    request: Request,
    endpoint: str,
    column: Annotated[str, Query(description="An input or output column.")],
    window: Annotated[str | None, Query(description="e.g. 5m, 1h (the monitor window)")] = None,
) -> Response:
    """A column's reference histogram and its live one over ``window``, on the same bins."""
    state = app_state(request)
    body = await asyncio.to_thread(
        column_histogram,
        state.client,
        state.settings.env,
        endpoint,
        column,
        window or state.settings.monitor_window,
    )
    return json_response(body)


def performance_series(
    client: Client,
    labels: LabelStore,
    endpoint: str,
    window: str,
    bucket: str | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Each model version's metrics over ``window`` (totals) and per ``bucket`` (series
    on the bucket starts ``times``, null where no labelled prediction fell); a binary
    classifier's F1 beside them, from its precision and recall of the positive class."""
    from modelport.monitoring.timeseries import Grid, default_step

    window_s = _duration("window", window)
    step_s = _duration("bucket", bucket) if bucket else default_step(window_s)
    if step_s < 1:
        raise InvalidInput(f"bucket {bucket!r} is under a second", hint="e.g. bucket=1h")
    since = now - timedelta(seconds=window_s)
    grid = Grid.covering(since, now, step_s)
    totals = labels.performance(endpoint, since=since, until=now)
    rows = labels.performance(endpoint, since=since, until=now, bucket=f"{step_s:g}s")
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    binary = {(r["model"], r["version"]): _binary(client, r["model"], r["version"]) for r in totals}
    for row in (*totals, *rows):
        if binary[(row["model"], row["version"])]:
            row["f1"] = f1_score(row.get("precision"), row.get("recall"))
    for row in totals:
        metrics = _metric_names(row["task"])
        if binary[(row["model"], row["version"])]:  # F1 beside precision and recall
            metrics = (*metrics[:3], "f1", *metrics[3:])
        versions[(row["model"], row["version"])] = {
            "model": row["model"],
            "version": row["version"],
            "task": row["task"],
            "metrics": list(metrics),
            "totals": {name: row.get(name) for name in ("n_labelled", *metrics)},
            "series": {name: [None] * grid.buckets for name in ("n_labelled", *metrics)},
        }
    for row in rows:
        entry = versions.get((row["model"], row["version"]))
        start = datetime.fromisoformat(row["bucket"]).timestamp()
        i = round(start / grid.step_s) - grid.first
        if entry is None or not 0 <= i < grid.buckets:
            continue
        for name, values in entry["series"].items():
            values[i] = row.get(name)
    return grid.to_dict() | {
        "endpoint": endpoint,
        "window": window,
        "versions": [versions[key] for key in sorted(versions)],
    }


def f1_score(precision: float | None, recall: float | None) -> float | None:
    """The harmonic mean of precision and recall (0 when both are 0; None when either
    is undefined), as scikit-learn's ``f1_score`` of a binary classifier."""
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _binary(client: Client, model: str, version: int) -> bool:
    """Whether a version is a classifier of two classes (precision and recall are then
    the positive class's, and give F1)."""
    try:
        mv = client.registry.get_version(model, version)
    except NotFound:
        return False
    return mv.task == "classification" and len(mv.classes or ()) == 2


def _duration(name: str, text: str) -> float:
    from modelport.durations import parse_duration

    try:
        seconds = parse_duration(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc.message}", hint=exc.hint) from None
    if seconds <= 0:
        raise InvalidInput(f"{name} {text!r} must be above 0", hint=f"e.g. {name}=1h")
    return seconds


def _metric_names(task: str) -> tuple[str, ...]:
    # Imported here: the metrics module brings scipy, which a serving worker never needs.
    from modelport.monitoring.performance import CLASSIFICATION_METRICS, REGRESSION_METRICS

    if task == "classification":
        return CLASSIFICATION_METRICS
    if task == "regression":
        return REGRESSION_METRICS
    return ()


@router.get("/endpoints/{endpoint}/monitor/performance")
async def monitor_performance(
    request: Request,
    endpoint: str,
    window: Annotated[
        str, Query(description="How far back from now, e.g. 1d, 7d.")
    ] = PERFORMANCE_WINDOW,
    bucket: Annotated[
        str | None, Query(description="Bucket size, e.g. 1h (default: about 60 buckets).")
    ] = None,
) -> Response:
    """Each served version's metrics on its labelled predictions, per time bucket."""
    state = app_state(request)
    labels = state.label_store()
    if labels is None:
        raise Unavailable(
            "this server does not read labels",
            hint="ask the server started by `modelport serve`, or run "
            f"modelport performance {endpoint} --bucket 1d where the log lives",
        )
    body = await asyncio.to_thread(
        performance_series,
        state.client,
        labels,
        endpoint,
        window,
        bucket,
        now=datetime.now(UTC),
    )
    return json_response({"environment": state.settings.env} | body)

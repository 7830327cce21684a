"""Watching commands: ``monitor run``, ``alerts list|evaluate|export-prometheus``,
``incidents list|show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.cli.common import Ctx, emit, handled, out, table

monitor_app = typer.Typer(help="Drift, data quality, traffic and performance reports.")
alerts_app = typer.Typer(help="Alert rules: list, evaluate now, export for Prometheus.")
incidents_app = typer.Typer(help="Incidents: what fired, its diagnosis, who was notified.")

EnvOption = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment (default: MODELPORT_ENV).")
]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _drift_rows(columns: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            c.get("column"),
            c.get("method"),
            _fmt(c.get("score")),
            _fmt(c.get("threshold")),
            _fmt(c.get("psi")),
            "DRIFT" if c.get("drifted") or c.get("psi_drifted") else "ok",
            _fmt(c.get("missing_rate")),
            _fmt(c.get("out_of_range_rate")),
        ]
        for c in columns
    ]


_DRIFT_COLUMNS = ["column", "test", "score", "threshold", "psi", "drift", "missing", "out of range"]


def render_report(report: dict[str, Any]) -> None:
    """A monitor report as tables."""
    drift = report.get("drift") or {}
    out.print(
        f"[bold]{report['endpoint']}[/bold] ({report['environment']}) serving "
        f"models:/{report['model']}/{report['version']}: {report['rows']} predictions "
        f"since {report['since']} ({report['seconds']} s)"
    )
    if drift.get("note"):
        out.print(drift["note"])
    if drift.get("columns"):
        out.print(table("input drift", _DRIFT_COLUMNS, _drift_rows(drift["columns"])))
    if drift.get("outputs"):
        out.print(table("output drift", _DRIFT_COLUMNS, _drift_rows(drift["outputs"])))
    traffic = report.get("traffic") or {}
    if traffic:
        out.print(table("traffic", list(traffic), [[_fmt(v) for v in traffic.values()]]))
    perf = {k: v for k, v in (report.get("performance") or {}).items() if k != "since"}
    if perf.get("n_labelled"):
        out.print(table("performance (labelled)", list(perf), [[_fmt(v) for v in perf.values()]]))
    else:
        out.print("performance: no labelled predictions yet (modelport feedback ...)")


@monitor_app.command("run")
def monitor_run(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint to report on.")],
    window: Annotated[
        str | None, typer.Option(help="Predictions from the last 1h, 30m, 7d ...")
    ] = None,
    last: Annotated[int | None, typer.Option(help="Only the last N predictions.")] = None,
    env: EnvOption = None,
) -> None:
    """Compute drift, data quality, traffic and performance for ENDPOINT now."""
    from modelport.watching import Watching

    c: Ctx = ctx.obj
    with handled():
        report = Watching(c.client).monitor(endpoint, environment=env, window=window, last=last)
    emit(c, report, lambda: render_report(report))


@alerts_app.command("list")
def alerts_list(ctx: typer.Context) -> None:
    """The rules in force (yours and the defaults) and the receivers."""
    from modelport.watching import Watching

    c: Ctx = ctx.obj
    with handled():
        config = Watching(c.client).config()
        rules = config.rules()
    rows = [
        [
            r.name,
            r.signal
            + (f"[{r.column}]" if r.column else "")
            + (f"({r.metric})" if r.metric else ""),
            f"{r.op} {r.threshold:g}",
            r.for_,
            r.window,
            r.severity,
            ", ".join(r.endpoints) or "all",
        ]
        for r in rules
    ]
    receivers = sorted(config.spec.receiver_map())
    data = {
        "revision": config.revision,
        "rules": [r.model_dump(by_alias=True) for r in rules],
        "receivers": receivers,
    }

    def render() -> None:
        columns = ["rule", "signal", "fires when", "for", "window", "severity", "endpoints"]
        out.print(table(f"alert rules (revision {config.revision})", columns, rows))
        out.print("receivers: " + ", ".join(receivers))

    emit(c, data, render)


@alerts_app.command("evaluate")
def alerts_evaluate(ctx: typer.Context, env: EnvOption = None) -> None:
    """Monitor every endpoint and evaluate the rules once now; notify what changed."""
    from modelport.watching import Watching

    c: Ctx = ctx.obj
    with handled():
        evaluation = Watching(c.client).evaluate(environment=env)
    if evaluation is None:
        data: dict[str, Any] = {"evaluated": False, "reason": "a server holds the watch lease"}
        emit(c, data, lambda: out.print("a running server evaluates this environment; skipped"))
        return
    firing = [a.labels | {"value": a.value} for a in evaluation.firing]
    data = {
        "evaluated": True,
        "firing": firing,
        "pending": [a.labels for a in evaluation.pending],
        "notified": [{"receiver": n.receiver, "status": n.status} for n in evaluation.notified],
    }

    def render() -> None:
        rows = [
            [a["alertname"], a.get("endpoint"), a["severity"], _fmt(a["value"])] for a in firing
        ]
        out.print(table("firing", ["alert", "endpoint", "severity", "value"], rows))
        for n in evaluation.notified:
            out.print(f"notified {n.receiver}: {n.status} {n.group_key}")

    emit(c, data, render)


@alerts_app.command("export-prometheus")
def alerts_export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the rules as Prometheus alerting rules (for Prometheus + Alertmanager)."""
    from modelport.watching import Watching

    c: Ctx = ctx.obj
    with handled():
        text = Watching(c.client).export_prometheus()
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    out.print(f"wrote {output}")


@incidents_app.command("list")
def incidents_list(
    ctx: typer.Context,
    env: EnvOption = None,
    status: Annotated[str | None, typer.Option(help="firing or resolved.")] = None,
    limit: Annotated[int, typer.Option(help="Most incidents shown, newest first.")] = 50,
) -> None:
    """Incidents, newest first."""
    from modelport.watching import Watching

    c: Ctx = ctx.obj
    with handled():
        incidents = Watching(c.client).incidents(environment=env, status=status, limit=limit)
    rows = [
        [
            i.id,
            i.status,
            i.severity,
            i.environment,
            i.title,
            i.started_at.isoformat(timespec="seconds"),
        ]
        for i in incidents
    ]
    emit(
        c,
        [i.to_dict() for i in incidents],
        lambda: out.print(
            table("incidents", ["id", "status", "severity", "env", "title", "started"], rows)
        ),
    )


@incidents_app.command("show")
def incidents_show(
    ctx: typer.Context, incident_id: Annotated[int, typer.Argument(help="Incident id.")]
) -> None:
    """An incident with its diagnosis and every notification attempt."""
    from modelport.watching import Watching

    c: Ctx = ctx.obj
    with handled():
        data = Watching(c.client).incident(incident_id)
    emit(c, data, lambda: render_incident(data))


def render_incident(data: dict[str, Any]) -> None:
    d = data.get("diagnosis") or {}
    signal = d.get("signal") or {}
    out.print(
        f"[bold]#{data['id']} {data['title']}[/bold]  {data['status']}  {data['severity']}  "
        f"since {data['started_at']}"
        + (f", resolved {data['resolved_at']}" if data["resolved_at"] else "")
    )
    if signal:
        recent = ", ".join(_fmt(v) for _, v in signal.get("values") or [])
        out.print(f"signal: {signal.get('summary') or signal.get('name')}; recent: {recent}")
    for change in d.get("changes") or []:
        out.print(
            f"changed: {change['time']} {change['kind']}: {change['summary']}"
            f" by {change.get('actor')}"
        )
    if d.get("drifted_columns"):
        rows = [
            [c["column"], c.get("method"), _fmt(c.get("score")), _fmt(c.get("psi"))]
            for c in d["drifted_columns"]
        ]
        out.print(table("most drifted columns", ["column", "test", "score", "psi"], rows))
    for failure in d.get("failing_requests") or []:
        out.print(f"failed: {failure['time']} {failure['status']}: {failure['error']}")
    if d.get("stale_features"):
        out.print("stale features: " + json.dumps(d["stale_features"]))
    if d.get("rollback_command"):
        out.print(f"roll back: [bold]{d['rollback_command']}[/bold]")
    if d.get("link"):
        out.print(f"link: {d['link']}")
    attempts = [
        [n["at"], n["receiver"], n["status"], n["attempt"], "ok" if n["ok"] else n.get("error")]
        for n in data.get("notifications") or []
    ]
    if attempts:
        out.print(
            table("notifications", ["at", "receiver", "status", "attempt", "result"], attempts)
        )

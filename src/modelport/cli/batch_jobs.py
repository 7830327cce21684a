"""``modelport batch run|jobs|runs|show``: the jobs declared under ``batch:`` in
modelport.yaml, run by name, and the history of their runs.

``batch run JOB`` is what an external scheduler (cron, Airflow, a Kubernetes CronJob)
calls: it runs the job in this process, records the run, and exits 0 when it succeeded
and non-zero when it failed (the error is in the history too). A server runs the same
jobs on their ``schedule`` (`modelport.batch.jobs.Scheduler`). Each command calls
`modelport.batch.jobs` and `modelport.registry.batch.BatchStore`, as the HTTP routes do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, handled, out, table
from modelport.cli.deployments import EnvOption

if TYPE_CHECKING:
    from modelport.registry.batch import BatchStore

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
JobArgument = Annotated[str, typer.Argument(help="Job name, as declared under `batch:`.")]


def _store(c: Ctx) -> BatchStore:
    from modelport.registry.batch import BatchStore

    return BatchStore(c.client.registry.engine)


def _when(iso: str | None) -> str:
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _version(run: dict[str, Any]) -> str:
    return f"{run['model']} v{run['version']}" if run.get("model") else run["spec"]["model"]


def _counts(run: dict[str, Any]) -> str:
    if run.get("rows_in") is None:
        return "-"
    return f"{run['rows_in']} / {run['rows_out']} / {run['rows_rejected']}"


def run(
    ctx: typer.Context,
    job: JobArgument,
    env: EnvOption = "production",
    resume: Annotated[
        bool, typer.Option(help="Continue the job's interrupted run from its last chunk.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a job now, in this process, and record it; exits non-zero if it fails."""
    from modelport.batch.jobs import run_job, run_view
    from modelport.batch.progress import for_stream
    from modelport.registry.batch import new_run_id

    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    run_id = new_run_id()
    with handled():
        try:
            run_job(
                c.client,
                job,
                env=env,
                resume=resume,
                trigger="cli",
                run_id=run_id,
                progress=for_stream(),
            )
        except errors.ModelportError as exc:
            raise _with_run(exc, c, run_id) from exc
        data = run_view(_store(c).get_run(run_id))
    note = f" ({data['note']})" if data["note"] else ""
    emit(
        c,
        data,
        lambda: out.print(
            f"{env}/{job}: succeeded, run {run_id}; {_version(data)}; rows in/out/rejected "
            f"{_counts(data)}; {_duration(data['duration_s'])} -> {data['output']}{note}",
            highlight=False,
            markup=False,
        ),
    )


def _with_run(exc: errors.ModelportError, c: Ctx, run_id: str) -> errors.ModelportError:
    """``exc`` naming the run it failed, when it got as far as being recorded."""
    try:
        recorded = _store(c).get_run(run_id)
    except errors.NotFound:
        return exc
    return type(exc)(
        f"{recorded.environment}/{recorded.job}: run {run_id} failed: {exc.message}",
        hint=exc.hint or f"the run is in the history: `modelport batch show {run_id}`",
    )


def jobs(ctx: typer.Context, env: EnvOption = "production", as_json: JsonOption = False) -> None:
    """The jobs of an environment: schedule, next run, last run."""
    from modelport.batch.jobs import job_view

    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        store = _store(c)
        now = datetime.now(UTC)
        data = [job_view(j, now, store) for j in store.list_jobs(env)]
    rows = []
    for j in data:
        last = j["last_run"]
        rows.append(
            [
                j["name"],
                j["schedule"] or "on demand",
                _when(j["next_run"]) if j["schedule"] else "-",
                f"{last['status']} {_when(last['started_at'])}" if last else "never run",
                j["spec"]["model"],
                j["spec"]["output"],
            ]
        )
    columns = ["job", "schedule (UTC)", "next run", "last run", "model", "output"]
    emit(c, data, lambda: out.print(table(f"batch jobs ({env})", columns, rows)))


def runs(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Argument(help="Only this job's runs.")] = None,
    env: EnvOption = "production",
    limit: Annotated[int, typer.Option(min=1, help="Most runs shown, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The history of runs, newest first: trigger, status, model, counts, error."""
    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        found = _store(c).list_runs(job, environment=env, limit=limit)
    data = [r.to_dict() for r in found]
    rows = [
        [
            r["run_id"],
            r["job"] or "-",
            r["trigger"],
            r["status"],
            _version(r),
            _counts(r),
            _when(r["started_at"]),
            _duration(r["duration_s"]),
            _short(r["error"] or r["note"] or "", 60),
        ]
        for r in data
    ]
    columns = ["run", "job", "trigger", "status", "model", "rows in/out/rejected"]
    columns += ["started (UTC)", "took", "error / note"]
    emit(c, data, lambda: out.print(table(f"batch runs ({env})", columns, rows)))


def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id, from `modelport batch runs`.")],
    as_json: JsonOption = False,
) -> None:
    """One run: what ran, how it ended, and its manifest's chunk counts."""
    from modelport.batch.jobs import run_view

    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        data = run_view(_store(c).get_run(run_id))
    emit(c, data, lambda: _render(data))


def _render(run: dict[str, Any]) -> None:
    name = f"{run['environment']}/{run['job']}" if run["job"] else run["environment"]
    lines = [
        f"run {run['run_id']} of {name}: {run['status']} ({run['trigger']})",
        f"  model     {_version(run)}",
        f"  input     {run['spec']['input']}",
        f"  output    {run['output']}",
        f"  rows      in/out/rejected {_counts(run)}",
        f"  started   {_when(run['started_at'])} UTC by {run['started_by'] or '-'}",
        f"  finished  {_when(run['finished_at'])} ({_duration(run['duration_s'])})",
    ]
    if run["scheduled_for"]:
        lines.append(f"  slot      {_when(run['scheduled_for'])} UTC")
    manifest = run["manifest"]
    if manifest is None:
        lines.append("  manifest  none in the output folder")
    elif "other_run" in manifest:
        lines.append(f"  manifest  the output folder holds run {manifest['other_run']}'s")
    else:
        lines.append(
            f"  manifest  {manifest['status']}; {manifest['chunks']} chunks "
            f"({manifest['chunks_with_rejects']} with rejected rows) from "
            f"{manifest['inputs']} input file(s); {manifest['runtime']} on {manifest['engine']}"
        )
    if run["error"]:
        lines.append(f"  error     {run['error']}")
    if run["note"]:
        lines.append(f"  note      {run['note']}")
    out.print("\n".join(lines), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``jobs``, ``runs`` and ``show`` to the ``modelport batch`` app."""
    app.command("run")(run)
    app.command("jobs")(jobs)
    app.command("runs")(runs)
    app.command("show")(show)


__all__ = ["jobs", "register", "run", "runs", "show"]

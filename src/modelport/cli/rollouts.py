"""Rollout commands: ``rollout start|status|list|pause|resume|promote|abort`` and the
top-level ``rollback``.

Each calls `modelport.rollouts.Rollouts` (through `Client.rollouts`), as the HTTP
control API and the Python API do. A rollout's steps are taken and judged by a
running server (``modelport serve``); these commands start, inspect and steer it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, handled, out, table
from modelport.cli.deployments import EnvOption, describe_variants

if TYPE_CHECKING:
    from modelport.registry.rollouts import Rollout

rollout_app = typer.Typer(
    help="Progressive rollouts: start, status, list, pause, resume, promote, abort.",
    no_args_is_help=True,
)

EndpointArg = Annotated[str, typer.Argument(help="Endpoint the rollout changes.")]


def _percent(percent: float) -> str:
    return "shadow" if percent == 0 else f"{percent:g}%"


def _when(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _in(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "due now"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h"] if hours else []
    if minutes or hours:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return "in " + " ".join(parts)


def step_text(rollout: Rollout) -> str:
    """``step 2/4 at 25%`` (``not started`` before the first step)."""
    n = len(rollout.policy.steps)
    if rollout.step < 0:
        return f"not started (0/{n})"
    return f"step {rollout.step + 1}/{n} at {_percent(rollout.percent)}"


def next_judgement(rollout: Rollout) -> datetime | None:
    """When the driver judges the current step: its start plus the interval (None when
    nothing will be judged: paused, finished, not started)."""
    if rollout.state != "running" or rollout.step_started_at is None:
        return None
    return rollout.step_started_at + timedelta(seconds=rollout.policy.interval_s)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_rollout(rollout: Rollout) -> None:
    """A rollout for people: where it is, what is compared, when it is judged next, and
    the checks of its last analysis."""
    baseline = ", ".join(v.uri for v in rollout.baseline.live)
    out.print(
        f"[bold]{rollout.environment}/{rollout.endpoint}[/bold]: rollout {rollout.id} "
        f"[bold]{rollout.state}[/bold], {step_text(rollout)}",
        highlight=False,
    )
    out.print(f"  candidate {rollout.candidate.uri} vs baseline {baseline}", highlight=False)
    steps = ", ".join(_percent(s) for s in rollout.policy.steps)
    out.print(f"  steps {steps}; each judged after {rollout.policy.interval_s:g}s", highlight=False)
    due = next_judgement(rollout)
    if due is not None:
        out.print(
            f"  next judgement {_when(due)} ({_in(due - datetime.now(UTC))})", highlight=False
        )
    elif rollout.state == "paused":
        out.print("  paused: nothing is judged; resume restarts the step's interval")
    else:
        out.print(f"  finished {_when(rollout.finished_at)}", highlight=False)
    started = f"  started {_when(rollout.created_at)} by {rollout.created_by or '-'}"
    out.print(started + (f": {rollout.reason}" if rollout.reason else ""), highlight=False)
    if rollout.message:
        out.print(f"  {rollout.message}", highlight=False, markup=False)
    if rollout.incident_id is not None:
        out.print(
            f"  incident {rollout.incident_id}: modelport incidents show {rollout.incident_id}"
        )
    if not rollout.analyses:
        out.print("  no analysis yet")
        return
    last = rollout.analyses[-1]
    rows = [
        [c.get("check"), c.get("result"), _fmt(c.get("value")), _fmt(c.get("threshold")),
         c.get("detail")]
        for c in last.get("checks", [])
    ]  # fmt: skip
    title = (
        f"last analysis: step {int(last.get('step', 0)) + 1} "
        f"({_percent(float(last.get('percent', 0)))}), {last.get('verdict')}"
    )
    out.print(table(title, ["check", "result", "value", "threshold", "detail"], rows))


def _steps(text: str | None) -> list[float] | None:
    from modelport.rollouts import parse_steps

    if text is None:
        return None
    try:
        return parse_steps(text)
    except ValueError as exc:
        raise errors.InvalidInput(f"invalid --steps {text!r}: {exc}") from None


@rollout_app.command("start")
def rollout_start(
    ctx: typer.Context,
    endpoint: EndpointArg,
    to: Annotated[
        str, typer.Option("--to", help="The candidate: models:/NAME/VERSION or models:/NAME@ALIAS.")
    ],
    steps: Annotated[
        str | None,
        typer.Option(help="Candidate's share per step, e.g. shadow,5,25,50,100 (must end at 100)."),
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="How long each step runs before it is judged, e.g. 5m.")
    ] = None,
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option(help="Why, kept with the rollout.")] = None,
) -> None:
    """Move ENDPOINT to a new version step by step (the first step is taken now)."""
    c: Ctx = ctx.obj
    with handled():
        rollout = c.client.rollouts(env).start(
            endpoint, to, steps=_steps(steps), interval=interval, reason=reason
        )
    emit(c, rollout.to_dict(), lambda: render_rollout(rollout))


@rollout_app.command("status")
def rollout_status(
    ctx: typer.Context, endpoint: EndpointArg, env: EnvOption = "production"
) -> None:
    """ENDPOINT's active rollout, else its latest: step, candidate, next judgement, checks."""
    c: Ctx = ctx.obj
    with handled():
        rollout = c.client.rollouts(env).status(endpoint)
    emit(c, rollout.to_dict(), lambda: render_rollout(rollout))


@rollout_app.command("list")
def rollout_list(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Argument(help="Only this endpoint.")] = None,
    env: EnvOption = "production",
    limit: Annotated[int, typer.Option(help="Most rollouts shown, newest first.")] = 50,
) -> None:
    """Rollouts of an environment (or one endpoint), newest first."""
    c: Ctx = ctx.obj
    with handled():
        rollouts = c.client.rollouts(env).recent(endpoint, limit=limit)
    rows = [
        [
            r.id,
            r.endpoint,
            r.state,
            r.candidate.uri,
            step_text(r),
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.created_by,
            r.message,
        ]
        for r in rollouts
    ]
    emit(
        c,
        [r.to_dict() for r in rollouts],
        lambda: out.print(
            table(
                f"{env} rollouts",
                ["id", "endpoint", "state", "candidate", "step", "started", "by", "message"],
                rows,
            )
        ),
    )


def _steer(ctx: typer.Context, endpoint: str, env: str, action: str, **kwargs: Any) -> None:
    c: Ctx = ctx.obj
    with handled():
        rollout = getattr(c.client.rollouts(env), action)(endpoint, **kwargs)
    emit(c, rollout.to_dict(), lambda: render_rollout(rollout))


@rollout_app.command("pause")
def rollout_pause(ctx: typer.Context, endpoint: EndpointArg, env: EnvOption = "production") -> None:
    """Hold the rollout at its step: nothing is judged or taken until resume."""
    _steer(ctx, endpoint, env, "pause")


@rollout_app.command("resume")
def rollout_resume(
    ctx: typer.Context, endpoint: EndpointArg, env: EnvOption = "production"
) -> None:
    """Resume a paused rollout; its step's interval starts again."""
    _steer(ctx, endpoint, env, "resume")


@rollout_app.command("promote")
def rollout_promote(
    ctx: typer.Context,
    endpoint: EndpointArg,
    full: Annotated[bool, typer.Option("--full", help="Go straight to 100%.")] = False,
    env: EnvOption = "production",
) -> None:
    """Take the next step now, without judging (--full: finish at 100%)."""
    _steer(ctx, endpoint, env, "promote", full=full)


@rollout_app.command("abort")
def rollout_abort(
    ctx: typer.Context,
    endpoint: EndpointArg,
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option(help="Why, kept with the rollout.")] = None,
) -> None:
    """Stop the rollout and restore the deployment it started from."""
    _steer(ctx, endpoint, env, "abort", reason=reason)


def rollback(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint to roll back.")],
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option(help="Why, kept in the history.")] = None,
) -> None:
    """Return ENDPOINT to what it served before its last change, now (an active
    rollout is aborted back to where it started)."""
    c: Ctx = ctx.obj
    with handled():
        d = c.client.rollback(endpoint, env=env, reason=reason)
    emit(
        c,
        d.to_dict(),
        lambda: out.print(
            f"{env}/{endpoint} rolled back -> {describe_variants(d.spec.to_dict())} "
            f"(revision {d.revision})",
            highlight=False,
        ),
    )

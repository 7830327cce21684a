"""Deployment commands: deploy, undeploy, deployments, history, promote.

Plain functions, registered on the top-level app by `modelport.cli.main`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, handled, out, table

EnvOption = Annotated[
    str, typer.Option("--env", "-e", help="Environment, e.g. staging or production.")
]


def deploy(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name clients call.")],
    uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS.")],
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option(help="Why, kept in the history.")] = None,
    runtime: Annotated[
        str, typer.Option(help="auto, native or compiled (the verified ONNX form).")
    ] = "auto",
    batching: Annotated[bool, typer.Option(help="Coalesce concurrent requests.")] = True,
    max_batch_size: Annotated[int, typer.Option(help="Most rows per model call.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for company, ms.")] = 0.0,
) -> None:
    """Serve a model version at ENDPOINT in an environment."""
    from modelport.config.schema import ServingSpec

    c: Ctx = ctx.obj
    with handled():
        try:
            serving = ServingSpec(
                runtime=runtime,  # type: ignore[arg-type]
                batching=batching,
                max_batch_size=max_batch_size,
                max_wait_ms=max_wait_ms,
            ).options()
        except ValueError as exc:
            raise errors.InvalidInput(f"invalid serving option: {exc}") from exc
        d = c.client.deploy(endpoint, uri, env=env, reason=reason, serving=serving)
    emit(
        c,
        d.to_dict(),
        lambda: out.print(
            f"{env}/{endpoint} -> models:/{d.spec.primary.model}/{d.spec.primary.version} "
            f"(revision {d.revision})"
        ),
    )


def undeploy(ctx: typer.Context, endpoint: str, env: EnvOption = "production") -> None:
    """Stop serving ENDPOINT in an environment."""
    c: Ctx = ctx.obj
    with handled():
        c.client.undeploy(endpoint, env=env)
    emit(
        c,
        {"endpoint": endpoint, "environment": env, "deleted": True},
        lambda: out.print(f"undeployed {env}/{endpoint}"),
    )


def deployments(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
) -> None:
    """List what every endpoint serves."""
    c: Ctx = ctx.obj
    with handled():
        items = c.client.deployments(env)
    rows = [
        [
            d.environment,
            d.endpoint,
            f"models:/{d.spec.primary.model}/{d.spec.primary.version}",
            d.spec.primary.source,
            d.revision,
            d.updated_by,
            d.updated_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for d in items
    ]
    emit(
        c,
        [d.to_dict() for d in items],
        lambda: out.print(
            table(
                "deployments",
                ["environment", "endpoint", "serves", "from", "revision", "by", "updated"],
                rows,
            )
        ),
    )


def history(ctx: typer.Context, endpoint: str, env: EnvOption = "production") -> None:
    """Every change of ENDPOINT's deployment: who, when, from what, to what, why."""
    c: Ctx = ctx.obj
    with handled():
        events = c.client.history(endpoint, env=env)

    def serves(spec: dict[str, Any] | None) -> str:
        if not spec:
            return "-"
        return ", ".join(f"{v['model']}/{v['version']}" for v in spec["variants"])

    rows = [
        [
            e.revision,
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.action,
            serves(e.previous),
            serves(e.spec),
            e.actor,
            e.reason,
        ]
        for e in events
    ]
    emit(
        c,
        [e.to_dict() for e in events],
        lambda: out.print(
            table(
                f"{env}/{endpoint} history",
                ["rev", "time", "action", "from", "to", "by", "reason"],
                rows,
            )
        ),
    )


def promote(
    ctx: typer.Context,
    endpoint: str,
    source: Annotated[str, typer.Option("--from", help="Environment to copy from.")] = "staging",
    target: Annotated[str, typer.Option("--to", help="Environment to copy to.")] = "production",
) -> None:
    """Make --to serve exactly what --from serves for ENDPOINT."""
    c: Ctx = ctx.obj
    with handled():
        d = c.client.promote(endpoint, source=source, target=target)
    emit(
        c,
        d.to_dict(),
        lambda: out.print(
            f"{target}/{endpoint} -> models:/{d.spec.primary.model}/{d.spec.primary.version} "
            f"(revision {d.revision}, from {source})"
        ),
    )

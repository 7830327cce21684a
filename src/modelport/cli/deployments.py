"""Deployment commands: deploy, undeploy, deployments, history, promote.

Plain functions, registered on the top-level app by `modelport.cli.main`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, handled, out, table
from modelport.registry.entities import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from modelport.registry.entities import Precomputed

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
    max_batch_size: Annotated[int, typer.Option(help="Most rows per model call.")] = MAX_BATCH_SIZE,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for company, ms.")] = 0.0,
    features: Annotated[
        str | None,
        typer.Option(help="Feature views joined onto requests by entity key: a,b ('' none)."),
    ] = None,
    precomputed: Annotated[
        bool | None,
        typer.Option(
            "--precomputed/--no-precomputed",
            help="Answer keys from the batch run published for ENDPOINT (default: as before).",
        ),
    ] = None,
    fallback: Annotated[
        str | None,
        typer.Option(help="With --precomputed, a key the run lacks: online or none (404)."),
    ] = None,
    precomputed_keys: Annotated[
        str | None,
        typer.Option(help="With --precomputed, the request fields holding the key: a,b."),
    ] = None,
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
        views = None if features is None else [v for v in features.split(",") if v.strip()]
        mode = _precomputed(precomputed, fallback, precomputed_keys)
        d = c.client.deploy(
            endpoint,
            uri,
            env=env,
            reason=reason,
            serving=serving,
            features=views,
            precomputed=mode,
        )
    emit(
        c,
        d.to_dict(),
        lambda: out.print(
            f"{env}/{endpoint} -> models:/{d.spec.primary.model}/{d.spec.primary.version} "
            f"(revision {d.revision})"
        ),
    )


def _precomputed(
    on: bool | None, fallback: str | None, keys: str | None
) -> Precomputed | bool | None:
    """The precomputed mode the deploy options ask for (None: keep the deployment's)."""
    from modelport.registry.entities import Precomputed

    if fallback is None and keys is None:
        return on
    if on is False:
        raise errors.InvalidInput("--fallback and --precomputed-keys go with --precomputed")
    try:
        return Precomputed(
            fallback=fallback or "none",  # type: ignore[arg-type]
            keys=tuple(k.strip() for k in (keys or "").split(",") if k.strip()),
        )
    except ValueError as exc:
        raise errors.InvalidInput(str(exc), hint="--fallback online or --fallback none") from exc


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

    rows = [
        [
            e.revision,
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.action,
            describe_variants(e.previous),
            describe_variants(e.spec),
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
    now: Annotated[
        bool, typer.Option("--now", help="Copy at once instead of rolling out step by step.")
    ] = False,
) -> None:
    """Make --to serve what --from serves for ENDPOINT: as a rollout (with --to's rollout
    policy) when --to already serves ENDPOINT, else (or with --now) as an immediate copy."""
    c: Ctx = ctx.obj
    with handled():
        if not now and _deployed(c, endpoint, target):
            rollout = c.client.promote_rollout(endpoint, source=source, target=target)
            data = rollout.to_dict() | {"mode": "rollout"}

            def render() -> None:
                from modelport.cli.rollouts import render_rollout

                out.print(
                    f"promoting {rollout.candidate.uri} from {source} to {target}/{endpoint} "
                    f"as rollout {rollout.id} (--now copies at once)",
                    highlight=False,
                )
                render_rollout(rollout)

        else:
            d = c.client.promote(endpoint, source=source, target=target)
            data = d.to_dict() | {"mode": "copy"}
            why = "--now" if now else f"{target}/{endpoint} was not deployed"

            def render() -> None:
                out.print(
                    f"{target}/{endpoint} -> {describe_variants(d.spec.to_dict())} "
                    f"(revision {d.revision}, copied from {source} at once: {why})",
                    highlight=False,
                )

    emit(c, data, render)


def _deployed(c: Ctx, endpoint: str, env: str) -> bool:
    try:
        c.client.get_deployment(endpoint, env=env)
    except errors.NotFound:
        return False
    return True


def describe_variants(spec: dict[str, Any] | None) -> str:
    """What a deployment spec serves, readably: ``fraud/1`` alone, ``fraud/1 95%,
    fraud/2 5%`` in a split, ``fraud/2 shadow`` for a shadow."""
    if not spec:
        return "-"
    variants = spec.get("variants", [])
    live = [v for v in variants if not v.get("shadow") and float(v.get("weight", 100)) > 0]
    total = sum(float(v.get("weight", 100)) for v in live) or 1.0
    parts = []
    for v in variants:
        name = f"{v['model']}/{v['version']}"
        if v.get("shadow"):
            parts.append(f"{name} shadow")
        elif len(live) > 1 and v in live:
            parts.append(f"{name} {float(v.get('weight', 100)) / total * 100:.4g}%")
        else:
            parts.append(name)
    return ", ".join(parts)

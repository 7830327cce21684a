"""``modelport models ...``: register and inspect models, versions and aliases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.cli.common import Ctx, emit, handled, kv, out, read_frame, table

models_app = typer.Typer(help="Register and inspect models and versions.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Move aliases (models:/NAME@ALIAS) between versions.", no_args_is_help=True
)
models_app.add_typer(alias_app, name="alias")


def _version_rows(versions: list[Any]) -> list[list[Any]]:
    return [
        [
            v.version,
            v.flavor,
            ",".join(v.aliases),
            v.task,
            v.owner,
            v.artifact.sha256[:12],
            json.dumps(v.metrics) if v.metrics else "",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for v in versions
    ]


_VERSION_COLUMNS = ["version", "flavor", "aliases", "task", "owner", "sha256", "metrics", "created"]


@models_app.command("register")
def models_register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name, e.g. fraud.")],
    path: Annotated[Path, typer.Argument(help="Artifact file (or folder for custom models).")],
    flavor: Annotated[
        str | None, typer.Option(help="sklearn, xgboost, lightgbm, onnx, custom.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Who gets paged about it.")] = None,
    team: Annotated[str | None, typer.Option(help="Team that owns it.")] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="CSV/Parquet training rows: signature and reference profile."),
    ] = None,
    signature: Annotated[Path | None, typer.Option(help="Signature as a JSON file.")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Training metric KEY=VALUE.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag KEY=VALUE.")] = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    trust: Annotated[
        bool, typer.Option(help="Accept that loading runs code (pickle, custom models).")
    ] = False,
    alias: Annotated[
        list[str] | None, typer.Option(help="Alias to point at the new version.")
    ] = None,
) -> None:
    """Register a new version of a model."""
    c: Ctx = ctx.obj
    with handled():
        frame = read_frame(sample) if sample else None
        sig = json.loads(signature.read_text()) if signature else None
        metrics = {k: float(v) for k, v in kv(metric, "metric").items()}
        mv = c.client.register_model(
            name,
            path,
            flavor=flavor,
            owner=owner,
            team=team,
            sample_input=frame,
            signature=sig,
            metrics=metrics,
            tags=kv(tag, "tag"),
            description=description,
            trust=trust,
        )
        for a in alias or []:
            c.client.set_alias(name, a, mv.version)
        mv = c.client.registry.get_version(name, mv.version)
    emit(
        c,
        mv.to_dict(),
        lambda: out.print(f"registered {mv.uri} ({mv.flavor}, sha256 {mv.artifact.sha256[:12]})"),
    )


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """List registered models."""
    c: Ctx = ctx.obj
    with handled():
        models = c.client.list_models()
    rows = [[m.name, m.latest_version, m.owner, m.team, json.dumps(m.aliases)] for m in models]
    emit(
        c,
        [m.to_dict() for m in models],
        lambda: out.print(table("models", ["name", "latest", "owner", "team", "aliases"], rows)),
    )


@models_app.command("show")
def models_show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Name or URI.")]
) -> None:
    """Show a model (or one version, given a URI such as models:/fraud/2)."""
    c: Ctx = ctx.obj
    with handled():
        if "/" in name or "@" in name:
            mv = c.client.get_version(name)
            emit(
                c,
                mv.to_dict(with_profile=True),
                lambda: out.print_json(json.dumps(mv.to_dict(), default=str)),
            )
            return
        model = c.client.get_model(name)
        versions = c.client.list_versions(name)
    data = model.to_dict() | {"versions": [v.to_dict() for v in versions]}

    def render() -> None:
        out.print(f"[bold]{model.name}[/bold]  owner={model.owner}  team={model.team}")
        if model.description:
            out.print(model.description)
        out.print(table("versions", _VERSION_COLUMNS, _version_rows(versions)))

    emit(c, data, render)


@models_app.command("versions")
def models_versions(ctx: typer.Context, name: str) -> None:
    """List the versions of a model."""
    c: Ctx = ctx.obj
    with handled():
        versions = c.client.list_versions(name)
    emit(
        c,
        [v.to_dict() for v in versions],
        lambda: out.print(table(f"{name} versions", _VERSION_COLUMNS, _version_rows(versions))),
    )


@alias_app.command("set")
def alias_set(ctx: typer.Context, name: str, alias: str, version: int) -> None:
    """Point ALIAS of model NAME at VERSION."""
    c: Ctx = ctx.obj
    with handled():
        c.client.set_alias(name, alias, version)
    emit(
        c,
        {"model": name, "alias": alias, "version": version},
        lambda: out.print(f"models:/{name}@{alias} -> version {version}"),
    )


@alias_app.command("delete")
def alias_delete(ctx: typer.Context, name: str, alias: str) -> None:
    """Remove ALIAS from model NAME."""
    c: Ctx = ctx.obj
    with handled():
        c.client.delete_alias(name, alias)
    emit(
        c,
        {"model": name, "alias": alias, "deleted": True},
        lambda: out.print(f"deleted {name}@{alias}"),
    )


@models_app.command("trust")
def models_trust(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name, e.g. fraud.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
    revoke: Annotated[
        bool, typer.Option(help="Withdraw trust: the version no longer loads.")
    ] = False,
) -> None:
    """Accept that loading VERSION of NAME runs code (pickle, custom model); recorded
    with who and when. The artifact's SHA-256 is checked first."""
    from modelport.client import TRUSTED_AT_TAG

    c: Ctx = ctx.obj
    with handled():
        mv = c.client.trust_version(f"models:/{name}/{version}", revoke=revoke)
    emit(
        c,
        mv.to_dict(),
        lambda: out.print(
            f"{mv.uri} is no longer trusted"
            if revoke
            else f"{mv.uri} trusted by {mv.trusted_by} at {mv.tags.get(TRUSTED_AT_TAG)}"
        ),
    )

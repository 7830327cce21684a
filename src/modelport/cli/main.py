"""The ``modelport`` command: register, deploy, apply, serve.

Every command accepts ``--json`` for scripts and exits with a code that says what
went wrong (see `EXIT_CODES`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelport import __version__, errors
from modelport.settings import Settings

if TYPE_CHECKING:
    from modelport.client import Client

EXIT_CODES: dict[type[errors.ModelportError], int] = {
    errors.InvalidInput: 3,
    errors.UntrustedArtifact: 3,
    errors.UnknownFlavor: 3,
    errors.ArtifactError: 3,
    errors.NotFound: 4,
    errors.Conflict: 5,
    errors.Unavailable: 6,
}

app = typer.Typer(help="Deploy trained models, serve predictions, roll back.", no_args_is_help=True)
models_app = typer.Typer(help="Register and inspect models and versions.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Move aliases (models:/NAME@ALIAS) between versions.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
models_app.add_typer(alias_app, name="alias")

out = Console()
err = Console(stderr=True)


class Ctx:
    """Options every command shares, set by the top-level callback."""

    def __init__(self, settings: Settings, as_json: bool) -> None:
        self.settings = settings
        self.as_json = as_json
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from modelport.client import Client

            self._client = Client(self.settings)
        return self._client


def exit_code(exc: errors.ModelportError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


@contextmanager
def handled() -> Iterator[None]:
    """Print a Modelport error as one clear line and exit with its code."""
    try:
        yield
    except errors.ModelportError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
        if exc.hint:
            err.print(f"[dim]hint:[/dim] {exc.hint}", highlight=False)
        raise typer.Exit(exit_code(exc)) from exc


def emit(ctx: Ctx, data: Any, render: Callable[[], None]) -> None:
    if ctx.as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        render()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def _kv(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise errors.InvalidInput(f"{what} {pair!r} is not KEY=VALUE")
        key, value = pair.split("=", 1)
        result[key] = value
    return result


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(help="State folder (default ./.modelport).", envvar="MODELPORT_HOME"),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            help="Registry database URL (SQLite default).", envvar="MODELPORT_REGISTRY_URL"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = home
    if registry_url is not None:
        overrides["registry_url"] = registry_url
    ctx.obj = Ctx(Settings(**overrides), as_json)


@app.command()
def version() -> None:
    """Print Modelport's version."""
    out.print(__version__)


# -- models --------------------------------------------------------------------


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
        frame = _read_frame(sample) if sample else None
        sig = json.loads(signature.read_text()) if signature else None
        metrics = {k: float(v) for k, v in _kv(metric, "metric").items()}
        mv = c.client.register_model(
            name,
            path,
            flavor=flavor,
            owner=owner,
            team=team,
            sample_input=frame,
            signature=sig,
            metrics=metrics,
            tags=_kv(tag, "tag"),
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


def _read_frame(path: Path) -> Any:
    import pandas as pd

    if not path.exists():
        raise errors.InvalidInput(f"sample file {path} does not exist")
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise errors.InvalidInput(f"could not read {path}: {exc}") from exc


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


# -- deployments ---------------------------------------------------------------

EnvOption = Annotated[
    str, typer.Option("--env", "-e", help="Environment, e.g. staging or production.")
]


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("-f", "--file", help="modelport.yaml to apply.")],
    dry_run: Annotated[bool, typer.Option(help="Show the plan, change nothing.")] = False,
) -> None:
    """Create or update models, versions, aliases and deployments from a YAML file."""
    from dataclasses import asdict

    from modelport.config import apply as apply_plan
    from modelport.config import plan_file

    c: Ctx = ctx.obj
    with handled():
        plan = plan_file(c.client, file)
        if not c.as_json:
            out.print(plan.render(), highlight=False, markup=False)
        changes = plan.changes
        if not dry_run and plan.has_changes:
            changes = apply_plan(c.client, plan).changes
    data = {
        "changes": [asdict(ch) for ch in changes],
        "applied": not dry_run and plan.has_changes,
    }
    emit(
        c,
        data,
        lambda: out.print(
            "nothing to change"
            if not plan.has_changes
            else ("plan only (--dry-run)" if dry_run else "applied")
        ),
    )


@app.command()
def predict(
    ctx: typer.Context,
    uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or Parquet rows.")],
) -> None:
    """Predict in this process with a registered version (no server needed)."""
    c: Ctx = ctx.obj
    with handled():
        prediction = c.client.predict(uri, _read_frame(input))
    data = {k: v.tolist() for k, v in prediction.outputs.items()}
    if prediction.classes is not None:
        data["classes"] = prediction.classes
    emit(c, data, lambda: out.print_json(json.dumps(data, default=str)))


@app.command()
def serve(
    ctx: typer.Context,
    env: EnvOption = "production",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    load: Annotated[str, typer.Option(help="eager (at start) or lazy (first request).")] = "eager",
    workers: Annotated[
        int | None, typer.Option(help="Server processes behind the port (default: CPU cores).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve every endpoint of an environment over HTTP."""
    from modelport.serving.server import run_server

    c: Ctx = ctx.obj
    with handled():
        if load not in ("eager", "lazy"):
            raise errors.InvalidInput(f"--load must be eager or lazy, not {load!r}")
        update: dict[str, Any] = {"env": env, "host": host, "port": port, "load_mode": load}
        if workers is not None:
            update["workers"] = workers
        run_server(c.settings.model_copy(update=update), log_level=log_level)


@app.command()
def demo(
    ctx: typer.Context,
    workdir: Annotated[Path, typer.Option(help="Where example data and models go.")] = Path("demo"),
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Set up only, do not serve.")
    ] = False,
) -> None:
    """Train example models, register and deploy them, and serve them."""
    from modelport.examples.demo import prepare

    c: Ctx = ctx.obj
    with handled():
        yaml_path = prepare(workdir)
        out.print(f"wrote example models and {yaml_path}")
        ctx.invoke(apply, ctx=ctx, file=yaml_path, dry_run=False)
    from modelport.examples.demo import curl_examples

    typer.echo(curl_examples(port))
    if not no_serve:
        ctx.invoke(
            serve,
            ctx=ctx,
            env="production",
            host="127.0.0.1",
            port=port,
            load="eager",
            workers=None,
            log_level="info",
        )
    del c


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The ``modelport`` command: register, deploy, apply, serve.

Subcommands live beside this module (`models`, `deployments`); what they share is in
`common`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport import __version__, errors
from modelport.cli import compare, deployments, feedback, rollouts
from modelport.cli.batch import batch_app
from modelport.cli.common import Ctx, emit, handled, out, read_frame
from modelport.cli.deployments import EnvOption
from modelport.cli.features import features_app
from modelport.cli.keys import keys_app
from modelport.cli.logs import logs_app
from modelport.cli.models import models_app
from modelport.cli.stream import stream_app
from modelport.cli.watch import alerts_app, incidents_app, monitor_app
from modelport.settings import Settings

app = typer.Typer(help="Deploy trained models, serve predictions, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(logs_app, name="logs")
app.add_typer(monitor_app, name="monitor")
app.add_typer(alerts_app, name="alerts")
app.add_typer(incidents_app, name="incidents")
app.add_typer(rollouts.rollout_app, name="rollout")
app.add_typer(features_app, name="features")
app.add_typer(stream_app, name="stream")
app.add_typer(batch_app, name="batch")
app.add_typer(keys_app, name="keys")
for command in (
    deployments.deploy,
    deployments.undeploy,
    deployments.deployments,
    deployments.history,
    deployments.promote,
    rollouts.rollback,
    feedback.feedback,
    feedback.feedback_import,
    feedback.performance,
    compare.shadow,
    compare.replay,
):
    app.command()(command)


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
        prediction = c.client.predict(uri, read_frame(input))
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
    auth: Annotated[
        str | None,
        typer.Option(help="Ask for API keys: on, off, or auto (on unless host is loopback)."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate to serve HTTPS with (needs --tls-key).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key of --tls-cert (needs --tls-cert).")
    ] = None,
) -> None:
    """Serve every endpoint of an environment over HTTP (HTTPS with --tls-cert/--tls-key)."""
    from modelport.serving.server import run_server

    c: Ctx = ctx.obj
    with handled():
        if load not in ("eager", "lazy"):
            raise errors.InvalidInput(f"--load must be eager or lazy, not {load!r}")
        update: dict[str, Any] = {"env": env, "host": host, "port": port, "load_mode": load}
        if workers is not None:
            update["workers"] = workers
        if auth is not None:
            if auth not in ("auto", "on", "off"):
                raise errors.InvalidInput(f"--auth must be on, off or auto, not {auth!r}")
            update["auth"] = auth
        if tls_cert is not None or tls_key is not None:
            update["tls_certfile"], update["tls_keyfile"] = tls_cert, tls_key
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
            auth=None,
        )
    del c


def main() -> None:
    app()


if __name__ == "__main__":
    main()

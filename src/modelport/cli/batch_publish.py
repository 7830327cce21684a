"""``modelport batch publish|lookup``: serve a finished run's predictions by key.

``batch publish OUTPUT_DIR --endpoint E`` loads the run the folder holds into the online
store and makes it what endpoint E's precomputed predictions come from (replacing the
run published before, atomically); ``batch predict ... --publish E`` does the same when
the run succeeds. ``batch lookup E KEY`` reads a key's published prediction the way a
server answers it, without one. Both call `modelport.batch.publish`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, handled, out
from modelport.cli.deployments import EnvOption


def register(app: typer.Typer) -> None:
    """Add ``publish`` and ``lookup`` to the ``batch`` command group."""
    app.command("publish")(publish)
    app.command("lookup")(lookup)


def publish(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Argument(help="The run's output folder (it holds _manifest.json).")
    ],
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="Endpoint whose precomputed predictions it becomes.")
    ],
    env: EnvOption = "production",
) -> None:
    """Publish a succeeded run's predictions for an endpoint to look up by key."""
    from modelport.batch.publish import publish as publish_run
    from modelport.batch.publish import read_manifest

    c: Ctx = ctx.obj
    with handled():
        manifest = read_manifest(output)
        before = _current(c, endpoint, env)
        publication = publish_run(c.client, manifest, output=output, endpoint=endpoint, env=env)
        notes = _notes(c, endpoint, env, publication.version)
    data = publication.to_dict() | {"replaced": before, "notes": notes}

    def render() -> None:
        replaced = f"; replaced run {before}" if before and before != manifest.run_id else ""
        out.print(
            f"published run {publication.run_id} ({publication.uri}, computed "
            f"{publication.computed_at:%Y-%m-%d %H:%M:%S} UTC): {publication.rows} rows -> "
            f"{env}/{endpoint}, keyed by {', '.join(publication.id_columns)}{replaced}",
            highlight=False,
        )
        for note in notes:
            out.print(f"note: {note}", highlight=False)

    emit(c, data, render)


def lookup(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    key: Annotated[str, typer.Argument(help="Key (several id columns: values joined by '|').")],
    env: EnvOption = "production",
) -> None:
    """The published prediction for KEY, as the server answers it."""
    from modelport.batch.publish import lookup as look_up

    c: Ctx = ctx.obj
    with handled():
        found = look_up(c.client, endpoint, [key], env=env)[key]
        if found is None:
            raise errors.NotFound(
                f"the run published for {env}/{endpoint} has no prediction for key {key!r}",
                hint="check the key's text (several id columns: values joined by '|')",
            )
    emit(c, found, lambda: out.print_json(data=found))


def _current(c: Ctx, endpoint: str, env: str) -> str | None:
    from modelport.batch.publish import current

    held = current(c.client, endpoint, env=env)
    return held.run_id if held is not None else None


def _notes(c: Ctx, endpoint: str, env: str, version: int) -> list[str]:
    """What a user publishing for ``endpoint`` should know about its deployment."""
    try:
        deployment = c.client.registry.get_deployment(env, endpoint)
    except errors.NotFound:
        return [f"{env}/{endpoint} is not deployed; deploy it with --precomputed to serve these"]
    notes = []
    if deployment.spec.precomputed is None:
        notes.append(
            f"{env}/{endpoint} is not deployed with --precomputed: it predicts online and "
            "does not answer from these yet"
        )
    primary = deployment.spec.primary
    if primary.version != version:
        notes.append(
            f"the run used version {version}, {env}/{endpoint} serves {primary.version}: "
            f"answers say which version computed them"
        )
    return notes

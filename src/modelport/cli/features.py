"""``modelport features``: list and show views, materialize them online, push rows,
read an entity's online values, build point-in-time training sets.

Views are declared in modelport.yaml (``modelport apply``); these commands call
`modelport.features.api.Features`, as the Python API and the HTTP routes do.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, handled, out, table

features_app = typer.Typer(
    help="Feature views: materialize, push, read online values, point-in-time history.",
    no_args_is_help=True,
)

ViewArgument = Annotated[str, typer.Argument(help="Feature view name.")]
START_HELP = "ISO time or duration back from now (7d); default: the beginning."
END_HELP = "ISO time or duration back from now (1h); default: now."


@features_app.command("list")
def list_views(ctx: typer.Context) -> None:
    """The registered feature views."""
    c: Ctx = ctx.obj
    with handled():
        views = c.client.features.list_views()
    rows = [
        [v.name, v.kind, v.entity, len(v.columns), v.ttl_s, v.owner or "", v.description]
        for v in views
    ]
    emit(
        c,
        [v.to_dict() for v in views],
        lambda: out.print(
            table(
                "feature views",
                ["view", "kind", "entity", "features", "ttl_s", "owner", "description"],
                rows,
            )
        ),
    )


@features_app.command()
def show(ctx: typer.Context, view: ViewArgument) -> None:
    """A view's entity, features, source, ttl and policies."""
    c: Ctx = ctx.obj
    with handled():
        data = c.client.features.get_view(view).to_dict()
    emit(c, data, lambda: out.print_json(json.dumps(data, default=str)))


@features_app.command()
def materialize(
    ctx: typer.Context,
    view: ViewArgument,
    start: Annotated[str | None, typer.Option(help=START_HELP)] = None,
    end: Annotated[str | None, typer.Option(help=END_HELP)] = None,
) -> None:
    """Write the latest values per entity in [start, end) to the online store."""
    c: Ctx = ctx.obj
    with handled():
        result = c.client.features.materialize(view, start, end)
    emit(c, result, lambda: _report(result))


@features_app.command("materialize-incremental")
def materialize_incremental(
    ctx: typer.Context,
    view: ViewArgument,
    end: Annotated[str | None, typer.Option(help=END_HELP)] = None,
) -> None:
    """Materialize from where the last run stopped up to END, and remember END."""
    c: Ctx = ctx.obj
    with handled():
        result = c.client.features.materialize_incremental(view, end)
    emit(c, result, lambda: _report(result))


def _report(result: dict[str, Any]) -> None:
    out.print(
        f"{result['view']}: {result['entities']} entities in "
        f"[{result['start'] or 'beginning'}, {result['end']}), {result['written']} written",
        highlight=False,
    )


@features_app.command()
def push(
    ctx: typer.Context,
    view: ViewArgument,
    file: Annotated[Path, typer.Option("--file", "-f", help="Rows: CSV, Parquet or JSONL.")],
    to: Annotated[str, typer.Option(help="online, offline or both.")] = "online",
) -> None:
    """Check rows from FILE against the view and write them online, offline or both."""
    c: Ctx = ctx.obj
    with handled():
        result = c.client.features.push(view, read_rows(file), to=to)  # type: ignore[arg-type]
    emit(
        c,
        result,
        lambda: out.print(
            f"pushed {result['rows']} rows to {view} ({to})"
            + (f", {result['online']} written online" if result["online"] is not None else ""),
            highlight=False,
        ),
    )


@features_app.command()
def get(
    ctx: typer.Context,
    view: ViewArgument,
    key: Annotated[str, typer.Argument(help="Entity key.")],
) -> None:
    """The values the online store holds for KEY (exit 4 when it holds none)."""
    c: Ctx = ctx.obj
    with handled():
        found = c.client.features.online(view, [key])[key]
        if found is None:
            raise errors.NotFound(
                f"feature view {view!r} holds nothing for key {key!r}",
                hint=f"materialize it: modelport features materialize {view}",
            )
    data = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in found.items()}
    data = {"view": view, "key": key, **data}
    emit(c, data, lambda: out.print_json(json.dumps(data, default=str)))


@features_app.command()
def history(
    ctx: typer.Context,
    view: ViewArgument,
    entities: Annotated[
        Path, typer.Option(help="Entity rows (key and time): CSV, Parquet or JSONL.")
    ],
    at_column: Annotated[str, typer.Option(help="The entity rows' time column.")] = "ts",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the rows here (.parquet, .csv).")
    ] = None,
) -> None:
    """The entity rows with the view's features as they were at each row's time."""
    c: Ctx = ctx.obj
    with handled():
        frame = c.client.features.history(view, read_rows(entities), at_column)
        if output is not None:
            _write(frame, output)
    if output is not None:
        emit(
            c,
            {"rows": len(frame), "output": str(output)},
            lambda: out.print(f"wrote {len(frame)} rows to {output}", highlight=False),
        )
        return
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    emit(c, records, lambda: out.print(frame.to_string(index=False), highlight=False))


def read_rows(path: Path) -> Any:
    """A CSV, Parquet or JSON-lines file as a DataFrame."""
    import pandas as pd

    if not path.exists():
        raise errors.InvalidInput(f"file {path} does not exist")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".jsonl", ".ndjson"):
            lines = path.read_text().splitlines()
            return pd.DataFrame([json.loads(line) for line in lines if line.strip()])
        return pd.read_csv(path)
    except Exception as exc:
        raise errors.InvalidInput(f"could not read {path}: {exc}") from exc


def _write(frame: Any, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise errors.InvalidInput(
            f"cannot write {path}: give a .parquet or .csv name", hint="-o train.parquet"
        )

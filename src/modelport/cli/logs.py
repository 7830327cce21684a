"""``modelport logs ...``: the prediction log, read with SQL or followed like ``tail -f``.

The log is read straight from its Parquet segments (``--home``, or
``MODELPORT_LOG_DIR``); no server is needed.

Example::

    modelport logs query "SELECT variant, status, count(*) FROM predictions GROUP BY ALL"
    modelport logs tail fraud -n 5 --follow
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.cli.common import Ctx, emit, err, handled, out, table

if TYPE_CHECKING:
    import pandas as pd

logs_app = typer.Typer(
    help="Query the prediction log with SQL (DuckDB), follow an endpoint's predictions.",
    no_args_is_help=True,
)

#: Rows a table shows; --json prints every row.
SHOWN_ROWS = 1000
#: How far back --follow looks for rows written late (by another worker's flush).
LOOKBACK_SECONDS = 30.0


@logs_app.command("query")
def logs_query(
    ctx: typer.Context,
    sql: Annotated[
        str,
        typer.Argument(help="DuckDB SQL over the views predictions and labels."),
    ],
) -> None:
    """Run SQL over the prediction log (views ``predictions`` and ``labels``)."""
    from modelport.monitoring.logstore import LogStore

    c: Ctx = ctx.obj
    with handled():
        result = LogStore(c.settings).query(sql)
    names = result.column_names
    rows = [list(row) for row in zip(*(col.to_pylist() for col in result.columns), strict=True)]

    def render() -> None:
        title = f"{len(rows)} row(s)"
        if len(rows) > SHOWN_ROWS:
            title += f", the first {SHOWN_ROWS} shown (add LIMIT, or use --json for all)"
        out.print(table(title, names, rows[:SHOWN_ROWS]))

    emit(c, [dict(zip(names, row, strict=True)) for row in rows], render)


@logs_app.command("tail")
def logs_tail(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose predictions to show.")],
    n: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many of the last rows.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new rows as they are written.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between checks with --follow.")] = 1.0,
) -> None:
    """Show the last rows logged for an endpoint, oldest first (one line each)."""
    from modelport.monitoring.logstore import LogStore

    c: Ctx = ctx.obj
    store = LogStore(c.settings)
    with handled():
        rows = records(store.tail(endpoint, n))
    if not rows and n and not c.as_json:
        err.print(f"no rows logged for endpoint {endpoint!r} yet", highlight=False)
    if not follow:
        emit(c, rows, lambda: show(c, rows))
        return
    show(c, rows)
    seen = {r["prediction_id"]: _time(r) for r in rows}
    floor = max(seen.values()) if seen else datetime.now(UTC)  # older rows were history
    try:
        while True:
            time.sleep(interval)
            # Look back a little: another worker's flush may land rows older than ours.
            since = max([floor, *seen.values()]) - timedelta(seconds=LOOKBACK_SECONDS)
            with handled():
                frame = store.window(endpoint, since=since, only_ok=False)
            fresh = [
                r for r in records(frame) if r["prediction_id"] not in seen and _time(r) > floor
            ]
            show(c, fresh)
            seen.update((r["prediction_id"], _time(r)) for r in fresh)
            seen = {k: t for k, t in seen.items() if t >= since}
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: ISO times, nulls for missing values, lists as lists."""
    if frame.empty:
        return []
    rows: list[dict[str, Any]] = json.loads(
        frame.to_json(orient="records", date_format="iso", date_unit="us", double_precision=15)
    )
    return rows


def show(c: Ctx, rows: list[dict[str, Any]]) -> None:
    """Rows as lines (JSON lines with --json), flushed at once for a pipe."""
    for row in rows:
        if c.as_json:
            sys.stdout.write(json.dumps(row) + "\n")
        else:
            out.print(line(row), highlight=False, markup=False, soft_wrap=True)
    sys.stdout.flush()


def line(row: dict[str, Any]) -> str:
    """One row: time, id, variant, status, latency, outputs (or the error)."""
    latency = row.get("latency_s")
    took = f"{latency * 1000:.2f}ms" if isinstance(latency, int | float) else "-"
    parts = [
        str(row.get("ts")),
        str(row.get("prediction_id")),
        str(row.get("variant") or "-"),
        str(row.get("status")),
        took,
    ]
    if row.get("status") != "ok":
        parts.append(str(row.get("error")))
    else:
        parts += [f"{k[4:]}={_short(v)}" for k, v in row.items() if k.startswith("out_")]
    return "  ".join(parts)


def _time(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(row["ts"]))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)

"""Delayed-label commands: feedback, feedback-import, performance.

Plain functions, registered on the top-level app by `modelport.cli.main`. They write
and read the labels beside the prediction log in ``MODELPORT_HOME`` (or
``MODELPORT_LOG_DIR``), as the server's ``POST /v1/feedback`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.cli.common import Ctx, emit, handled, out, table

METRIC_COLUMNS = ("accuracy", "precision", "recall", "roc_auc", "log_loss", "mae", "rmse")


def parse_label(text: str) -> Any:
    """A label typed on the command line: numbers and true/false as such, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool) else text


def feedback(
    ctx: typer.Context,
    prediction_id: Annotated[str, typer.Argument(help="An id from a predict response.")],
    label: Annotated[str, typer.Argument(help="The true class or value, e.g. 1 or fraud.")],
) -> None:
    """Record the true LABEL of one prediction (ground truth that arrived later)."""
    c: Ctx = ctx.obj
    with handled():
        accepted = c.client.feedback([prediction_id], [parse_label(label)], source="cli")
    emit(
        c,
        {"accepted": accepted, "prediction_id": prediction_id, "label": label},
        lambda: out.print(f"recorded label {label} for {prediction_id}", highlight=False),
    )


def feedback_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file of labels.")],
    id_column: Annotated[
        str, typer.Option(help="Column holding the prediction ids.")
    ] = "prediction_id",
    label_column: Annotated[str, typer.Option(help="Column holding the labels.")] = "label",
) -> None:
    """Import labels in bulk from FILE (all rows, or none if one is bad)."""
    c: Ctx = ctx.obj
    with handled():
        accepted = c.client.import_labels(file, id_column=id_column, label_column=label_column)
    emit(
        c,
        {"accepted": accepted, "file": str(file)},
        lambda: out.print(f"imported {accepted} labels from {file}", highlight=False),
    )


def performance(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose predictions were labelled.")],
    since: Annotated[
        str | None, typer.Option(help="Duration back from now (7d) or ISO time; default all.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Duration back or ISO time.")] = None,
    bucket: Annotated[str | None, typer.Option(help="Group by time, e.g. 1h or 1d.")] = None,
) -> None:
    """Accuracy (classifiers) or error (regressors) of each model version, from labels."""
    c: Ctx = ctx.obj
    with handled():
        rows = c.client.performance(endpoint, since=since, until=until, bucket=bucket)
    emit(c, rows, lambda: _render(endpoint, rows, bucket is not None))


def _render(endpoint: str, rows: list[dict[str, Any]], bucketed: bool) -> None:
    if not rows:
        out.print(f"no labelled predictions for {endpoint}", highlight=False)
        return
    metrics = [m for m in METRIC_COLUMNS if any(m in r for r in rows)]
    columns = ["model", "version", *(["bucket"] if bucketed else []), "task", "labelled"]
    lines = [
        [
            r["model"],
            r["version"],
            *([r["bucket"]] if bucketed else []),
            r["task"],
            r["n_labelled"],
            *(_figure(r.get(m)) for m in metrics),
        ]
        for r in rows
    ]
    out.print(table(f"{endpoint} performance", columns + metrics, lines))


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"

"""``modelport batch``: score files of rows with a registered model.

``modelport batch predict`` builds a `JobSpec` from its options and calls
`modelport.batch.predict`, as the Python API does. Progress goes to stderr (a bar on a
terminal, JSON lines otherwise); the summary, or the manifest with ``--json``, to
stdout.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from modelport.batch.spec import DEFAULT_CHUNK_ROWS, MANIFEST, JobSpec, Manifest
from modelport.cli import batch_jobs, batch_publish
from modelport.cli.common import Ctx, emit, handled, out

batch_app = typer.Typer(
    help="Batch prediction over Parquet and CSV files, in bounded memory.",
    no_args_is_help=True,
)


@batch_app.command("predict")
def predict_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option("--model", "-m", help="models:/NAME/VERSION or models:/NAME@ALIAS.")
    ],
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="Parquet or CSV: a file, a folder, a glob (quote it) or a URL (s3://...).",
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Folder (or URL) for the Parquet output.")
    ],
    features: Annotated[
        list[str] | None,
        typer.Option("--features", help="Feature view to join by its entity column (repeat)."),
    ] = None,
    id_columns: Annotated[
        list[str] | None,
        typer.Option("--id-column", help="Input column copied to the output (repeat)."),
    ] = None,
    at_column: Annotated[
        str | None,
        typer.Option(help="Time column: join features point-in-time as of each row's time."),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option(help="Rows per chunk (memory is a few chunks per worker).")
    ] = DEFAULT_CHUNK_ROWS,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per CPU core).")
    ] = None,
    on_bad_rows: Annotated[
        str,
        typer.Option(
            help="fail: stop at the first bad row; skip: set bad rows aside in _rejects/."
        ),
    ] = "fail",
    engine: Annotated[str, typer.Option(help="local (processes here) or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (engine ray; default: local Ray).")
    ] = None,
    runtime: Annotated[
        str, typer.Option(help="auto (compiled when there is one), native or compiled.")
    ] = "auto",
    publish: Annotated[
        str | None,
        typer.Option(help="Endpoint whose precomputed predictions this run replaces."),
    ] = None,
    env: Annotated[str, typer.Option(help="Environment of --publish.")] = "production",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its last chunk.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the run already in --output.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Score every row of INPUT with MODEL; write Parquet parts and a manifest to OUTPUT."""
    from modelport.batch import predict, reused
    from modelport.batch.progress import for_stream

    c: Ctx = ctx.obj
    started = datetime.now(UTC)
    with handled():
        spec = JobSpec(
            model=model,
            input=input,
            output=output,
            id_columns=tuple(id_columns or ()),
            features=tuple(features or ()),
            at_column=at_column,
            chunk_rows=chunk_rows,
            workers=workers,
            on_bad_rows=on_bad_rows,  # type: ignore[arg-type]  # checked by predict
            engine=engine,  # type: ignore[arg-type]
            ray_address=ray_address,
            runtime=runtime,  # type: ignore[arg-type]
            publish=publish,
            env=env,
        )
        manifest = predict(
            c.client, spec, resume=resume, overwrite=overwrite, progress=for_stream()
        )
    found = reused(manifest, started)
    emit(
        Ctx(c.settings, c.as_json or as_json),
        manifest.to_dict(),
        lambda: _summary(manifest, output, found),
    )


def _summary(manifest: Manifest, output: str, found: bool) -> None:
    where = f"{output.rstrip('/')}/{MANIFEST}"
    if found:
        out.print(
            f"{output} already holds this job's output (run {manifest.run_id}, finished "
            f"{manifest.finished_at}): nothing to do; --overwrite runs it again",
            highlight=False,
            soft_wrap=True,
        )
        return
    start = datetime.fromisoformat(manifest.started_at)
    end = datetime.fromisoformat(manifest.finished_at or manifest.started_at)
    seconds = max((end - start).total_seconds(), 1e-9)
    parts = sum(1 for c in manifest.chunks if c.file)
    rejected = (
        f", {manifest.rows_rejected:,} rejected (see _rejects/)" if manifest.rows_rejected else ""
    )
    out.print(
        f"scored {manifest.rows_out:,} of {manifest.rows_in:,} rows{rejected} with "
        f"{manifest.model} v{manifest.version} ({manifest.runtime}) in {seconds:.1f} s "
        f"({manifest.rows_in / seconds:,.0f} rows/s): {parts} parts, manifest {where}",
        highlight=False,
        soft_wrap=True,
    )


batch_publish.register(batch_app)
batch_jobs.register(batch_app)

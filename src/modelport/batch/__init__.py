"""Batch prediction: score files of rows with a registered model, in bounded memory.

`predict` reads Parquet or CSV (a file, a folder, a glob, an object-store URL) in
chunks, joins feature views, checks every chunk against the model's signature, scores
it on every core and writes Parquet parts plus a manifest (``_manifest.json``) into the
output folder. See docs/batch.md.

Example::

    from modelport.batch import JobSpec, predict

    spec = JobSpec(model="models:/fraud@champion", input="data/*.parquet", output="out/",
                   id_columns=("user_id",))
    manifest = predict(client, spec)
    print(manifest.rows_out, manifest.version)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modelport.batch.spec import ChunkRecord, JobSpec, Manifest
from modelport.errors import ModelportError, PredictionFailed

if TYPE_CHECKING:
    from modelport.batch.progress import Progress
    from modelport.client import Client


def predict(
    client: Client,
    spec: JobSpec,
    *,
    resume: bool = False,
    overwrite: bool = False,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Run the batch job ``spec``; the run's manifest.

    ``resume`` continues an interrupted run of the same job in ``spec.output`` from its
    last finished chunk; ``overwrite`` replaces whatever run is there. Without either,
    a finished run of the same job (same model version, inputs and options) is returned
    as it is, and anything else in the output folder is a `Conflict`.

    A failed run's manifest is written with status ``failed`` and the error, then the
    error (a `ModelportError`) is raised. A run that succeeds with ``spec.publish``
    set then replaces that endpoint's precomputed predictions.
    """
    from modelport.batch import runner
    from modelport.batch.output import Output, fail, finish, new_manifest, open_run
    from modelport.batch.source import resolve
    from modelport.runtimes.loading import runtime_kind

    runner.check_spec(spec)
    version = client.get_version(spec.model)
    inputs = resolve(spec.input)
    output = Output(spec.output)
    fresh = new_manifest(spec, version, runtime_kind(version, spec.runtime), inputs, run_id)
    manifest = open_run(output, fresh, resume=resume, overwrite=overwrite, run_id=run_id)
    if manifest.status == "succeeded":  # this job's output is already there: nothing to write
        if spec.publish:
            _publish(client, spec, spec.publish, manifest, unless_current=True)
        return manifest
    try:
        if spec.engine == "ray":
            from modelport.batch.ray_engine import run_ray

            manifest = run_ray(client, spec.with_(model=version.uri), manifest, progress)
        else:
            manifest = runner.run_local(client, spec, manifest, progress, inputs=inputs)
    except ModelportError as exc:
        fail(output, manifest, str(exc))
        raise
    except KeyboardInterrupt:
        fail(output, manifest, "interrupted")
        raise
    except Exception as exc:
        fail(output, manifest, f"{type(exc).__name__}: {exc}")
        raise PredictionFailed(
            f"the batch run {manifest.run_id} failed: {type(exc).__name__}: {exc}",
            hint="fix the cause, then rerun with --resume to continue from the last chunk",
        ) from exc
    manifest = finish(output, manifest)
    if spec.publish:
        _publish(client, spec, spec.publish, manifest, unless_current=False)
    return manifest


def _publish(
    client: Client, spec: JobSpec, endpoint: str, manifest: Manifest, *, unless_current: bool
) -> None:
    """Publish the run to ``endpoint``; a run found in place is published only when the
    endpoint serves another run (publishing is then what the rerun has left to do)."""
    from modelport.batch.publish import current, publish

    if unless_current:
        serving = current(client, endpoint, env=spec.env)
        if serving is not None and serving.run_id == manifest.run_id:
            return
    publish(client, manifest, output=spec.output, endpoint=endpoint, env=spec.env)


def reused(manifest: Manifest, since: datetime) -> bool:
    """Whether ``manifest`` is a finished run found in place rather than one that ran
    after ``since`` (what `predict` returns when the job's output was already there)."""
    finished = manifest.finished_at
    return finished is not None and datetime.fromisoformat(finished) < since.astimezone(UTC)


__all__ = ["ChunkRecord", "JobSpec", "Manifest", "predict", "reused"]

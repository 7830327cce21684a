"""A run's output folder: its parts, its rejects and its manifest, and a run's life there.

Chunk ``k`` writes ``part-{k:06d}.parquet`` (and ``_rejects/part-{k:06d}.parquet``);
``_manifest.json`` says what the run did. Every file is written under a temporary name
and renamed, locally or on an object store (fsspec URL), so no reader sees half a file.

`open_run` decides what a run does with the folder: start afresh, resume the interrupted
run of the same job (keeping the chunks whose part is there with the recorded SHA-256),
return a finished run of the same job untouched (a rerun writes nothing), or refuse
(another job's output, an unfinished run without ``resume``). `finish` and `fail` record
how the run ended.

Example::

    output = Output("out/fraud")
    manifest = open_run(output, new_manifest(spec, version, "compiled", inputs, None))
    ...
    finish(output, manifest)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from modelport.batch.source import Inputs, filesystem
from modelport.batch.spec import MANIFEST, REJECTS, ChunkRecord, JobSpec, Manifest
from modelport.errors import ArtifactError, Conflict, InvalidInput

if TYPE_CHECKING:
    from modelport.registry import ModelVersion
    from modelport.runtimes.loading import RuntimeKind

#: Output columns with few distinct values (the rest are not dictionary-encoded).
FEW_VALUES = ("label", "model", "model_version", "source", "column", "reason")
#: The options that shape a run's output: a resumed or repeated run must share them.
SHAPING = ("id_columns", "features", "at_column", "chunk_rows", "on_bad_rows")


def part_name(index: int) -> str:
    """The output part of chunk ``index``, relative to the output folder."""
    return f"part-{index:06d}.parquet"


def rejects_name(index: int) -> str:
    """The rejected rows of chunk ``index``, relative to the output folder."""
    return f"{REJECTS}/part-{index:06d}.parquet"


class Output:
    """A job's output folder, on local disk or on an object store (fsspec URL).

    Every file is written to a temporary name in the folder and then renamed, so a
    reader (or a resumed run) never sees half a file.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = filesystem(url)
        self.root = self.root.rstrip("/") or "/"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def write(self, name: str, data: bytes) -> None:
        target = self.path(name)
        folder, _, base = target.rpartition("/")
        self.fs.create_dir(folder, recursive=True)
        partial = f"{folder}/.{base}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(partial) as stream:
            stream.write(data)
        self.fs.move(partial, target)

    def read(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(name)) as stream:
                return bytes(stream.read())
        except (FileNotFoundError, pa.ArrowException, OSError):
            return None

    def names(self) -> list[str]:
        """Every file under the folder, relative to it (none when it does not exist)."""
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        return sorted(
            info.path[len(self.root) :].lstrip("/")
            for info in self.fs.get_file_info(selector)
            if info.is_file
        )

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError, pa.ArrowException):
            self.fs.delete_file(self.path(name))

    def read_manifest(self) -> Manifest | None:
        data = self.read(MANIFEST)
        if data is None:
            return None
        try:
            return Manifest.from_dict(json.loads(data))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"{self.path(MANIFEST)} is not a readable run manifest: {exc}",
                hint="rerun with --overwrite to start over",
            ) from None

    def write_manifest(self, manifest: Manifest) -> None:
        manifest.chunks.sort(key=lambda c: c.index)
        self.write(MANIFEST, json.dumps(manifest.to_dict(), indent=1).encode())

    def clear(self) -> None:
        """Remove what runs write here (parts, rejects, manifest, temporary files)."""
        for name in self.names():
            base = name.rsplit("/", 1)[-1]
            ours = name == MANIFEST or name.startswith(f"{REJECTS}/") or ".tmp-" in base
            if ours or (base.startswith("part-") and base.endswith(".parquet")):
                self.delete(name)

    def sweep(self) -> None:
        """Remove temporary files a killed run left behind."""
        for name in self.names():
            if ".tmp-" in name.rsplit("/", 1)[-1]:
                self.delete(name)


def write_table(output: Output, name: str, table: pa.Table, meta: dict[str, Any]) -> str:
    """Write ``table`` as Parquet to ``name`` in ``output``; its SHA-256.

    Only the columns of few distinct values are dictionary-encoded: trying it on
    probabilities or ids costs three times the rest of the write and saves nothing.
    """
    table = table.replace_schema_metadata({b"modelport": json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    few = [c for c in FEW_VALUES if c in table.column_names]
    pq.write_table(table, sink, use_dictionary=few)
    data = sink.getvalue().to_pybytes()
    output.write(name, data)
    return hashlib.sha256(data).hexdigest()


# -- a run's life: open, finish or fail ------------------------------------------------


def new_manifest(
    spec: JobSpec, version: ModelVersion, kind: RuntimeKind, inputs: Inputs, run_id: str | None
) -> Manifest:
    """The manifest of a run about to start."""
    from modelport.runtimes.loading import compiled_artifact

    compiled = compiled_artifact(version) if kind == "compiled" else None
    if kind == "compiled" and compiled is None:
        reason = (version.compiled or {}).get("reason", "it was registered before compiling")
        raise ArtifactError(
            f"{version.uri} has no compiled form: {reason}",
            hint="run with --runtime native (or auto)",
        )
    return Manifest(
        run_id=run_id or uuid.uuid4().hex[:16],
        job=spec.name,
        spec=spec.to_dict(),
        model=version.name,
        version=version.version,
        model_sha256=(compiled or version.artifact).sha256,
        runtime=kind,
        engine=spec.engine,
        inputs=inputs.to_list(),
        started_at=datetime.now(UTC).isoformat(),
    )


def open_run(
    output: Output,
    fresh: Manifest,
    *,
    resume: bool = False,
    overwrite: bool = False,
    run_id: str | None = None,
) -> Manifest:
    """The manifest to run with, written: ``fresh``, or the interrupted run to resume
    (under ``run_id`` when given, else its own).

    Returns the existing manifest, untouched, when the output already holds a finished
    run of the same job (the caller then has nothing to do: its ``run_id`` differs
    from ``fresh``'s); with ``resume``, only if every part is there and intact, else
    the missing parts are redone. Raises `Conflict` when the output holds another job's run, or an
    unfinished one and neither ``resume`` nor ``overwrite`` is given.
    """
    if overwrite:
        output.clear()
        output.write_manifest(fresh)
        return fresh
    existing = output.read_manifest()
    if existing is None:
        if output.names() and not resume:
            raise Conflict(
                f"the output folder {output.url} is not empty and holds no run manifest",
                hint="choose an empty or new --output, or add --overwrite to write there "
                "anyway (it removes part-*.parquet files and _rejects/)",
            )
        output.write_manifest(fresh)
        return fresh
    changes = differences(existing, fresh)
    if changes:
        what = "; ".join(changes)
        if resume:
            raise Conflict(
                f"cannot resume the run in {output.url}: the job changed ({what})",
                hint="resume with the same model version, inputs and options, or add "
                "--overwrite (without --resume) to start over",
            )
        raise Conflict(
            f"{output.url} holds the output of another job ({what})",
            hint="choose another --output, or add --overwrite to replace it",
        )
    kept = [c for c in existing.chunks if _intact(output, c)] if resume else existing.chunks
    if existing.status == "succeeded" and len(kept) == len(existing.chunks):
        return existing
    if not resume:
        raise Conflict(
            f"{output.url} holds an unfinished run ({existing.run_id}, {existing.status}, "
            f"{len(existing.chunks)} chunks done) of this job",
            hint="add --resume to continue it, or --overwrite to start over",
        )
    resumed = replace(
        existing,
        run_id=run_id or existing.run_id,
        status="running",
        error=None,
        finished_at=None,
        chunks=kept,
    )
    count(resumed)
    output.write_manifest(resumed)
    return resumed


def differences(old: Manifest, new: Manifest) -> list[str]:
    """What makes ``new`` another job than ``old``: model, inputs, engine, options."""
    changes: list[str] = []
    if (old.model, old.version, old.model_sha256) != (new.model, new.version, new.model_sha256):
        changes.append(f"model {old.model} v{old.version} -> {new.model} v{new.version}")
    if old.runtime != new.runtime or old.engine != new.engine:
        changes.append(f"runtime/engine {old.runtime}/{old.engine} -> {new.runtime}/{new.engine}")
    identity = ("path", "bytes", "mtime")
    before = [tuple(f.get(k) for k in identity) for f in old.inputs]
    after = [tuple(f.get(k) for k in identity) for f in new.inputs]
    if before != after:
        moved = sorted({str(a[0]) for a in after} ^ {str(b[0]) for b in before})
        changed = [str(a[0]) for a in after if a not in before and str(a[0]) not in moved]
        changes.append(f"inputs changed: {(moved + changed)[:3] or 'order'}")
    for key in SHAPING:
        was, now = old.spec.get(key), new.spec.get(key)
        if (list(was) if isinstance(was, tuple) else was) != now:
            changes.append(f"{key} {was!r} -> {now!r}")
    return changes


def fail(output: Output, manifest: Manifest, reason: str) -> None:
    """Record a failed run (best effort: the caller raises the error itself)."""
    manifest.status = "failed"
    manifest.error = reason
    manifest.finished_at = datetime.now(UTC).isoformat()
    count(manifest)
    with contextlib.suppress(OSError, pa.ArrowException):
        output.write_manifest(manifest)


def finish(output: Output, manifest: Manifest) -> Manifest:
    manifest.status = "succeeded"
    manifest.error = None
    manifest.finished_at = datetime.now(UTC).isoformat()
    count(manifest)
    output.write_manifest(manifest)
    output.sweep()
    return manifest


def count(manifest: Manifest) -> None:
    """Set the manifest's row counts from its chunks."""
    manifest.rows_in = sum(c.rows_in for c in manifest.chunks)
    manifest.rows_out = sum(c.rows_out for c in manifest.chunks)
    manifest.rows_rejected = sum(c.rows_rejected for c in manifest.chunks)


def _intact(output: Output, chunk: ChunkRecord) -> bool:
    """Whether a recorded chunk's part is there with the recorded SHA-256."""
    if not chunk.file:
        return True
    data = output.read(chunk.file)
    return data is not None and hashlib.sha256(data).hexdigest() == chunk.sha256

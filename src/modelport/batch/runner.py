"""The local engine: chunks scored by worker processes, recorded as they finish.

`run_local` resolves a `ScorerPlan` once and starts ``workers`` processes (one per core
by default; processes, because a model's Python code holds the GIL) as the job starts.
Each loads one `Scorer` from the plan (the model loaded once, no registry access),
scores the chunks it is given and writes their output itself,
``part-000123.parquet`` (to a temporary name, then renamed), so only a `ChunkRecord`
travels back. Who reads a chunk depends on the input: Parquet whose row groups can be
shared out (`IN_FLIGHT_PER_WORKER` spans a worker at least) is read by the workers, a
span (the chunks starting in one row group) at a time; otherwise (CSV, a few large row
groups) this process reads the chunks and hands them over as Arrow IPC files in
``/dev/shm``, memory-mapped by the worker (no pickling). At most two tasks per worker
are in flight: memory is a few chunks per process, whatever the input's size.

This process records each finished chunk in the manifest (`Book`: ``_manifest.json``
is rewritten atomically after each chunk, less often once writing it takes long) and
reports progress. Chunks finish out of order; the manifest lists those done, which is
what a resumed run skips (see `modelport.batch.output`). With one worker everything
runs in this process.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from modelport import errors
from modelport.batch.output import Output, count, part_name, rejects_name, write_table
from modelport.batch.progress import Progress, Silent
from modelport.batch.scoring import Scorer, ScorerPlan, input_columns, text_columns
from modelport.batch.source import Chunk, Inputs, Span, resolve
from modelport.batch.spec import ChunkRecord, JobSpec, Manifest
from modelport.errors import InvalidInput, ModelportError

if TYPE_CHECKING:
    from modelport.client import Client

#: Chunks waiting or being scored per worker process.
IN_FLIGHT_PER_WORKER = 2
#: The manifest is rewritten after a chunk unless its last write took more than this
#: share of the time since (a run of many chunks then writes it less often).
MANIFEST_SHARE = 0.05
#: Temporary folders of chunks in flight: ``modelport-batch-{pid}-{random}``.
SPOOL_PREFIX = "modelport-batch-"
#: What the fork server imports up front for a flavor's runtime.
PRELOAD = {
    "onnx": ("onnxruntime",),
    "sklearn": ("sklearn.ensemble", "skops.io"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
}


def check_spec(spec: JobSpec) -> None:
    """Raise `InvalidInput` for options no engine can run."""
    choices = {
        "on_bad_rows": ("fail", "skip"),
        "engine": ("local", "ray"),
        "runtime": ("auto", "native", "compiled"),
    }
    for name, allowed in choices.items():
        if getattr(spec, name) not in allowed:
            raise InvalidInput(
                f"{name} is {getattr(spec, name)!r}", hint=f"use one of {list(allowed)}"
            )
    if spec.chunk_rows < 1 or (spec.workers is not None and spec.workers < 1):
        raise InvalidInput(
            "chunk_rows and workers must be at least 1",
            hint=f"got chunk_rows={spec.chunk_rows}, workers={spec.workers}",
        )
    if spec.at_column and not spec.features:
        raise InvalidInput(
            "--at-column only applies with --features (it times the point-in-time join)",
            hint="name the feature views to join, or leave --at-column out",
        )
    if len(set(spec.id_columns)) != len(spec.id_columns):
        raise InvalidInput(f"id columns {list(spec.id_columns)} repeat a column")


def score_chunk(scorer: Scorer, output: Output, chunk: Chunk) -> ChunkRecord:
    """Score one chunk and write its part (and rejects); what the manifest records."""
    out, rejects = scorer.score(chunk.table, source=chunk.source, offset=chunk.offset)
    meta = {
        "model": scorer.version.name,
        "version": scorer.version.version,
        "classes": scorer.version.classes,
    }
    name, sha = "", ""
    if out.num_rows:
        name = part_name(chunk.index)
        sha = write_table(output, name, out, meta)
    if rejects is not None:
        write_table(output, rejects_name(chunk.index), rejects, meta)
    return ChunkRecord(
        index=chunk.index,
        source=chunk.source,
        offset=chunk.offset,
        rows_in=chunk.table.num_rows,
        rows_out=out.num_rows,
        rows_rejected=rejects.num_rows if rejects is not None else 0,
        file=name,
        sha256=sha,
    )


class Book:
    """Records finished chunks in the manifest, writes it, and reports progress."""

    def __init__(self, output: Output, manifest: Manifest, progress: Progress) -> None:
        self.output = output
        self.manifest = manifest
        self.progress = progress
        self._next_write = 0.0

    def add(self, record: ChunkRecord, size: int) -> None:
        self.manifest.chunks.append(record)
        count(self.manifest)
        self.progress.advance(rows=record.rows_in, bytes=size)
        now = time.monotonic()
        if now >= self._next_write:
            self.output.write_manifest(self.manifest)
            spent = time.monotonic() - now
            self._next_write = time.monotonic() + spent / MANIFEST_SHARE


def start_progress(progress: Progress, inputs: Inputs, manifest: Manifest) -> None:
    """Start ``progress`` at what ``manifest`` already records of ``inputs``."""
    total = inputs.rows_total
    progress.start(
        rows_total=total,
        bytes_total=inputs.bytes_total,
        rows_done=manifest.rows_in,
        bytes_done=int(inputs.bytes_total * manifest.rows_in / total) if total else 0,
    )


# -- the local engine ----------------------------------------------------------------


def run_local(
    client: Client,
    spec: JobSpec,
    manifest: Manifest,
    progress: Progress | None = None,
    *,
    inputs: Inputs | None = None,
) -> Manifest:
    """Score every chunk the manifest does not record yet; the manifest, with them.

    The version scored is the one the manifest names, whatever alias ``spec.model``
    uses. Raises the first error a chunk meets (the chunks already finished stay recorded).
    """
    inputs = inputs or resolve(spec.input)
    output = Output(spec.output)
    spec = spec.with_(model=f"models:/{manifest.model}/{manifest.version}")
    plan = ScorerPlan.make(client, spec, now=datetime.fromisoformat(manifest.started_at))
    done = {c.index for c in manifest.chunks}
    workers = spec.workers or os.cpu_count() or 1
    if inputs.rows_total is not None:
        left = sum(f.chunk_count(spec.chunk_rows) or 0 for f in inputs.files) - len(done)
        workers = max(1, min(workers, left))
    signature = plan.version.signature
    columns = input_columns(spec, signature, [view for view, _ in plan.views])
    # Worker processes start now: their imports and model loads overlap what follows.
    pool = _start_pool(plan, workers, Reader(inputs, columns)) if workers > 1 else None
    progress = progress or Silent()
    spool: str | None = None
    try:
        inputs.check_columns(columns, what="the model's signature and the job's options need")
        start_progress(progress, inputs, manifest)
        book = Book(output, manifest, progress)
        texts = text_columns(signature)
        chunks = inputs.chunks(spec.chunk_rows, columns, text_columns=texts, skip=done)
        spans = inputs.spans(spec.chunk_rows, done) if pool is not None else None
        if pool is None:
            _in_process(plan, output, chunks, book)
        elif spans is not None and len(spans) >= IN_FLIGHT_PER_WORKER * workers:
            # Row groups small enough to share out: each worker reads what it scores.
            _in_workers(pool, workers, _span_tasks(spans, done), book)
        else:
            spool = _spool_folder()
            _in_workers(pool, workers, _chunk_tasks(chunks, spool), book)
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if spool is not None:  # no worker reads it any more
            shutil.rmtree(spool, ignore_errors=True)
    return manifest


def _in_process(plan: ScorerPlan, output: Output, chunks: Iterable[Chunk], book: Book) -> None:
    scorer = plan.load()
    try:
        for chunk in chunks:
            book.add(score_chunk(scorer, output, chunk), chunk.bytes)
    finally:
        scorer.close()


def _start_pool(plan: ScorerPlan, workers: int, reader: Reader) -> cf.ProcessPoolExecutor:
    """A pool of ``workers`` processes, each loading ``plan``'s scorer as it starts.

    The processes are started on a thread of their own: the fork server's imports
    and the model loads then run while this process reads the first chunks.
    """
    flavor = "onnx" if plan.kind == "compiled" else plan.version.flavor
    pool = cf.ProcessPoolExecutor(
        workers, mp_context=_context(flavor), initializer=_start_worker, initargs=(plan, reader)
    )
    threading.Thread(
        target=_spawn, args=(pool, workers), name="modelport-batch-spawn", daemon=True
    ).start()
    return pool


def _spawn(pool: cf.ProcessPoolExecutor, workers: int) -> None:
    # The pool starts a process for each task it cannot hand to an idle one.
    with contextlib.suppress(RuntimeError, cf.process.BrokenProcessPool):
        for _ in range(workers):
            pool.submit(_ready)


def _ready() -> None:
    """A task that only makes the pool start a process."""


#: What `_in_workers` submits: a function of the worker module and its arguments.
Task = tuple[Callable[..., "Done"], tuple[Any, ...]]


def _span_tasks(spans: list[Span], done: set[int]) -> Iterator[Task]:
    for span in spans:
        yield _score_span, (span, {i for i in span.indices if i in done})


def _chunk_tasks(chunks: Iterable[Chunk], spool: str) -> Iterator[Task]:
    """Chunks read here, handed over as Arrow IPC files in ``spool`` that the worker
    memory-maps (and removes)."""
    for chunk in chunks:
        path = os.path.join(spool, f"chunk-{chunk.index:06d}.arrow")
        _spool(chunk.table, path)
        yield _score_spooled, (path, chunk.index, chunk.source, chunk.offset, chunk.bytes)


def _in_workers(
    pool: cf.ProcessPoolExecutor, workers: int, tasks: Iterator[Task], book: Book
) -> None:
    pending: set[cf.Future[Done]] = set()
    try:
        for function, args in tasks:
            pending.add(pool.submit(function, *args))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                _collect(pending, book, cf.FIRST_COMPLETED)
        while pending:
            _collect(pending, book, cf.FIRST_COMPLETED)
    except cf.process.BrokenProcessPool as exc:
        raise errors.PredictionFailed(
            f"a worker process died while scoring ({exc})",
            hint="it may have run out of memory: lower --chunk-rows or --workers, then "
            "rerun with --resume",
        ) from None


def _context(flavor: str) -> Any:
    """Workers start from a fork server (a clean process: this one's threads and open
    connections stay here) that has imported the scoring code and the flavor's library
    once; forked workers share those pages instead of importing them again.

    The server also imports the Modelport modules this process has loaded (those of
    the ``modelport`` command, for one): multiprocessing runs the main module again in
    every new process, and that is then a lookup, not an import of the whole CLI per
    worker.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    main = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    loaded = sorted(m for m in list(sys.modules) if m.startswith("modelport.") and m != main)
    context.set_forkserver_preload(["modelport.batch.runner", *loaded, *PRELOAD.get(flavor, ())])
    return context


def _collect(pending: set[cf.Future[Done]], book: Book, when: str) -> None:
    """Record the chunks that finished; then raise the first error among them (so the
    chunks that did finish are in the manifest for a resumed run)."""
    finished, _ = cf.wait(pending, return_when=when)
    failures: list[Failure | BaseException] = []
    for task in finished:
        pending.discard(task)
        error = task.exception()
        if error is not None:
            failures.append(error)
            continue
        done = task.result()
        for record, size in done.records:
            book.add(record, size)
        if done.failure is not None:
            failures.append(done.failure)
    if failures:
        first = failures[0]
        raise first.error() if isinstance(first, Failure) else first


def _spool_folder() -> str:
    """A new temporary folder for chunks on their way to the workers, named after this
    process, in memory where the system has a tmpfs (``/dev/shm``); folders of processes
    that are gone (killed runs) are removed first."""
    root = _spool_root()
    for name in os.listdir(root):
        owner = name.split("-")[2] if name.startswith(SPOOL_PREFIX) else ""
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=root)


def _spool_root() -> str:
    """``/dev/shm`` when it is a writable folder (a chunk there is never written to a
    disk), else the system's temporary folder. At most two chunks per worker wait."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spool(table: pa.Table, path: str) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


# -- in the worker processes ------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A Modelport error raised in a worker, carried back whole (hint included)."""

    kind: str
    message: str
    hint: str | None

    @classmethod
    def of(cls, exc: ModelportError) -> Failure:
        return cls(type(exc).__name__, exc.message, exc.hint)

    def error(self) -> ModelportError:
        kind = getattr(errors, self.kind, ModelportError)
        if not (isinstance(kind, type) and issubclass(kind, ModelportError)):
            kind = ModelportError
        return kind(self.message, hint=self.hint)


@dataclass
class Done:
    """What a worker's task gives back: the chunks it recorded (with the input bytes
    each accounts for), then the error that stopped it, if one did."""

    records: list[tuple[ChunkRecord, int]]
    failure: Failure | None = None


@dataclass(frozen=True)
class Reader:
    """What a worker needs to read spans itself: the resolved input and the columns."""

    inputs: Inputs
    columns: list[str]


@dataclass
class _Worker:
    scorer: Scorer | None = None
    output: Output | None = None
    reader: Reader | None = None
    failure: Failure | None = None


_WORKER = _Worker()


def _start_worker(plan: ScorerPlan, reader: Reader) -> None:
    """Load the process's scorer once; an error is kept and returned by every task."""
    _WORKER.reader = reader
    try:
        _WORKER.scorer = plan.load()
        _WORKER.output = Output(plan.spec.output)
    except ModelportError as exc:
        _WORKER.failure = Failure.of(exc)


def _score_span(span: Span, skip: set[int]) -> Done:
    """Read and score the chunks of ``span`` (those not in ``skip``)."""
    if _WORKER.failure is not None:
        return Done([], _WORKER.failure)
    scorer, output, reader = _WORKER.scorer, _WORKER.output, _WORKER.reader
    assert scorer is not None and output is not None and reader is not None
    done = Done([])
    try:
        for chunk in reader.inputs.read_span(span, scorer.spec.chunk_rows, reader.columns, skip):
            done.records.append((score_chunk(scorer, output, chunk), chunk.bytes))
    except ModelportError as exc:
        done.failure = Failure.of(exc)
    return done


def _score_spooled(path: str, index: int, source: str, offset: int, size: int) -> Done:
    try:
        if _WORKER.failure is not None:
            return Done([], _WORKER.failure)
        assert _WORKER.scorer is not None and _WORKER.output is not None
        with pa.memory_map(path) as source_file:
            table = pa.ipc.open_file(source_file).read_all()
            chunk = Chunk(index, source, offset, table)
            return Done([(score_chunk(_WORKER.scorer, _WORKER.output, chunk), size)])
    except ModelportError as exc:
        return Done([], Failure.of(exc))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


__all__ = [
    "Book",
    "Failure",
    "Output",
    "check_spec",
    "part_name",
    "rejects_name",
    "run_local",
    "score_chunk",
    "start_progress",
]

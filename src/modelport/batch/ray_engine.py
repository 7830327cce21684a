"""The Ray engine: the same batch job, run on a Ray cluster (``--engine ray``).

`run_ray` reads the input with Ray Data, scores it on a pool of Ray actors and leaves
the same output folder as the local engine: one ``part-NNNNNN.parquet`` per chunk
(``_rejects/part-NNNNNN.parquet`` for rows set aside) and a manifest recording every
chunk with its source file and offset. Ray is an optional extra
(``pip install 'modelport[ray]'``), imported only when a job asks for this engine.

How a run maps onto Ray Data:

- This process resolves the files with `modelport.batch.source.resolve`, as the local
  engine does, and splits them into read units: a CSV file, or up to `UNIT_CHUNKS`
  chunks of a Parquet file.
- Read tasks (``flat_map``, one unit each, anywhere on the cluster) cut their unit into
  the local engine's chunks with `Inputs.chunks` (the same rows per chunk, CSV columns
  read as text, hive partition columns) and emit each chunk as one row of the dataset:
  file, chunk number, offset, and the chunk's rows as an Arrow IPC buffer. A chunk
  travels as one row, not as a block, because Ray Data merges small blocks and splits
  large ones; a row stays whole.
- ``map_batches`` hands the chunks to a pool of actors (`ChunkScorer`). Every actor
  opens one `Scorer` when it starts, so the model is loaded once per actor, and writes
  each chunk's part itself with the local engine's `score_chunk`; only a small
  record comes back.
- This process records the chunks as they finish (`Book`: manifest, progress) and
  raises the first error a chunk met, as the local engine does.

A chunk's number is known before it is read when every file before its file is
Parquet (row counts are in the metadata); its actor then writes the part under its
final name. After a CSV file, parts wait in ``_ray-<run id>/`` in the output folder and
are renamed here once the files before are read through. Either way the parts, their
numbers and rows are the local engine's.

Example::

    spec = JobSpec(model="models:/fraud/3", input="s3://bucket/events/",
                   output="s3://bucket/scores/", engine="ray", ray_address="head:6379")
    manifest = predict(client, spec)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from modelport.batch.output import Output, part_name, rejects_name
from modelport.batch.progress import Progress, Silent
from modelport.batch.runner import Book, Failure, score_chunk, start_progress
from modelport.batch.scoring import Scorer, input_columns, text_columns
from modelport.batch.source import Chunk, Inputs, resolve
from modelport.batch.spec import ChunkRecord, JobSpec, Manifest
from modelport.errors import Conflict, ModelportError, PredictionFailed, Unavailable

if TYPE_CHECKING:
    from types import ModuleType

    from modelport.client import Client
    from modelport.settings import Settings

#: Chunks of a Parquet file one read task reads: several, so that a task's start is
#: paid once for a few chunks; few, so that one large file is read by many tasks.
UNIT_CHUNKS = 8
#: Where the parts of file ``number`` wait for their numbers, in the output folder.
STAGING = "_ray-{run_id}"
STAGED = "{staging}/file-{number:06d}"
NEEDS_RAY = "the ray engine needs Ray: pip install 'modelport[ray]'"
#: Seconds to wait for the head node's port to answer before giving up on a cluster.
REACH_SECONDS = 10
#: Ray Data's loggers for its own progress and execution banners; a job reports its
#: progress itself, so they are raised to these levels while it runs.
RAY_DATA_CHATTER = {
    "ray.data._internal.progress": logging.ERROR,
    "ray.data._internal.execution.streaming_executor": logging.WARNING,
}


def run_ray(
    client: Client, spec: JobSpec, manifest: Manifest, progress: Progress | None = None
) -> Manifest:
    """Score every chunk the manifest does not record yet, on Ray; the manifest, with them.

    Connects to the cluster at ``spec.ray_address`` (``host:port`` of its head node, or
    ``auto`` for a cluster started on this machine); without an address it starts Ray
    in this process, on every core, and stops it at the end. ``spec.workers`` is the
    most scoring actors (default: one per CPU of the cluster). The cluster's workers
    must reach the same registry, artifact store, input and output as this process
    (docs/batch.md, "The Ray engine").
    """
    ray = import_ray()
    spec = portable_spec(spec).with_(model=f"models:/{manifest.model}/{manifest.version}")
    inputs = resolve(spec.input)
    signature = client.get_version(spec.model).signature
    views = [client.features.get_view(name) for name in spec.features]
    columns = input_columns(spec, signature, views)
    inputs.check_columns(columns, what="the model's signature and the job's options need")
    reader = Reader(inputs, spec.chunk_rows, columns, sorted(text_columns(signature)))
    output = Output(spec.output)
    progress = progress or Silent()
    ledger = Ledger(inputs, spec.chunk_rows, Book(output, manifest, progress))
    units = ledger.units(manifest.chunks)
    scorer = {
        "settings": portable_settings(client.settings),
        "spec": spec,
        "now": datetime.fromisoformat(manifest.started_at),
        "staging": ledger.staging,
    }
    with SESSION.use(ray, spec.ray_address):
        start_progress(progress, inputs, manifest)
        try:
            if units:
                events = _events(ray, units, reader, scorer, pool_size(ray, spec))
                with quiet_ray_data(), contextlib.closing(events):
                    for event in events:
                        ledger.take(event)
            ledger.check_complete()
        finally:
            progress.close()
            ledger.sweep()
    return manifest


def _events(
    ray: ModuleType,
    units: list[dict[str, Any]],
    reader: Reader,
    scorer: dict[str, Any],
    pool: dict[str, int],
) -> Generator[dict[str, Any], None, None]:
    """The actors' events, as they come: the Ray Data pipeline of a run."""
    dataset = ray.data.from_items(units, override_num_blocks=len(units))
    # flat_map, then a batch size downstream: Ray Data keeps reading and scoring apart,
    # so a file's chunks spread over every actor.
    dataset = dataset.flat_map(reader)
    dataset = dataset.map_batches(
        ChunkScorer,
        fn_constructor_kwargs=scorer,
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(**pool),
    )
    dataset.context.enable_progress_bars = False
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        for batch in batches:
            for event in batch.column("event").to_pylist():
                yield json.loads(event)
    finally:
        # Stop Ray Data's executor now (its generator's own cleanup), not whenever the
        # generator is collected: after a failed chunk its thread would outlive Ray.
        if isinstance(batches, Generator):
            batches.close()


# -- Ray itself --------------------------------------------------------------------------


def import_ray() -> ModuleType:
    """The ``ray`` package (with Ray Data), or `Unavailable` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise Unavailable(NEEDS_RAY, hint="or run the job with --engine local") from exc
    return ray


class Session:
    """Ray as this process holds it for batch runs: joined by the first run, left by the
    last one.

    Runs on threads of one process (the server's job scheduler) share its one
    connection to Ray; the Ray this holder started or attached to is shut down only
    when no run uses it any more. A Ray initialised in this process by its owner (a
    notebook, an application) is used as it is and left running.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._address: str | None = None
        self._ours = False

    @contextlib.contextmanager
    def use(self, ray: ModuleType, address: str | None) -> Iterator[None]:
        with self._lock:
            if self._runs and self._ours and address != self._address:
                raise Conflict(
                    f"this process is attached to the Ray cluster at {self._address or 'local'}"
                    f" for another batch run; it cannot also use {address or 'a local Ray'}",
                    hint="run the jobs one after the other, or give them the same ray_address",
                )
            if not self._runs:
                self._ours = connect(ray, address)
                self._address = address
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if not self._runs and self._ours:
                    ray.shutdown()
                    self._ours = False


def connect(ray: ModuleType, address: str | None) -> bool:
    """Attach to the cluster at ``address``, or start Ray here (every core) without one;
    whether this call did either (False: Ray was initialised already)."""
    if ray.is_initialized():
        return False
    # No dashboard, Ray's warnings only, the workers' output left in their log files:
    # the job reports its progress and errors itself.
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        ray.init(num_cpus=os.cpu_count() or 1, **options)
        return True
    try:
        host, _, port = address.rpartition(":")
        if host and port.isdigit():  # fail fast: Ray retries an unreachable head for minutes
            head = (host.strip("[]"), int(port))
            socket.create_connection(head, timeout=REACH_SECONDS).close()
        ray.init(address=address, **options)
    except (OSError, RuntimeError, ValueError) as exc:
        raise Unavailable(
            f"cannot reach the Ray cluster at {address}: {exc}",
            hint="give the head node's address as host:port (the --port of `ray start "
            "--head`, 6379 by default), or auto for the cluster started on this machine",
        ) from None
    return True


#: The process's hold on Ray, shared by the batch runs of its threads.
SESSION = Session()


def pool_size(ray: ModuleType, spec: JobSpec) -> dict[str, int]:
    """The scoring actors: from 1 up to ``spec.workers``, else up to the cluster's CPUs.

    Ray Data adds actors while chunks wait and CPUs are free. A fixed pool would take
    its CPUs at once, and a pool as large as the cluster would leave none to read with.
    """
    most = spec.workers or int(ray.cluster_resources().get("CPU", 1))
    return {"min_size": 1, "max_size": max(1, most)}


@contextlib.contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Ray Data's progress and execution banners held back (`RAY_DATA_CHATTER`)."""
    loggers = {logging.getLogger(name): level for name, level in RAY_DATA_CHATTER.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)


def portable_settings(settings: Settings) -> Settings:
    """``settings`` with absolute folders: Ray workers run in another working directory."""
    folders = {
        name: Path(value).expanduser().resolve()
        for name in ("home", "artifact_root", "log_dir")
        if (value := getattr(settings, name)) is not None
    }
    return settings.model_copy(update=folders)


def portable_spec(spec: JobSpec) -> JobSpec:
    """``spec`` with an absolute input and output (URLs stay as they are)."""

    def absolute(path: str) -> str:
        return path if "://" in path else str(Path(path).expanduser().resolve())

    return spec.with_(input=absolute(spec.input), output=absolute(spec.output))


# -- the read tasks and the actors -------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """A read task: one unit of a file -> one dataset row per chunk.

    A chunk row holds ``file`` (its file's number), ``index`` (its number in the run,
    -1 while unknown), ``chunk`` (its number within its file), ``source``, ``offset``,
    ``bytes`` and ``data`` (its rows as an Arrow IPC stream). A unit of a file whose
    chunk count is unknown (CSV) ends with a row without data whose ``chunk`` is that
    count.
    """

    inputs: Inputs
    chunk_rows: int
    columns: list[str]
    text_columns: list[str]

    def __call__(self, unit: dict[str, Any]) -> Iterator[dict[str, Any]]:
        number, first, stop, start = unit["file"], unit["first"], unit["stop"], unit["start"]
        file = self.inputs.files[number]
        done = set(unit["done"] or ())
        known = file.rows is not None
        one = Inputs(input=self.inputs.input, fs=self.inputs.fs, files=[file])
        # Parquet seeks to its first chunk to do; CSV is read through, to count its chunks.
        skip = done | set(range(first)) if known else set()
        chunks = one.chunks(
            self.chunk_rows, self.columns, text_columns=set(self.text_columns), skip=skip
        )
        count = 0
        for chunk in chunks:
            if stop is not None and chunk.index >= stop:
                break
            count = chunk.index + 1
            if chunk.index not in done:
                index = -1 if start is None else start + chunk.index
                yield {"file": number, "index": index, **_chunk_fields(chunk)}
        if not known:
            end = {"chunk": count, "source": file.path, "offset": 0, "bytes": 0, "data": None}
            yield {"file": number, "index": -1, **end}


def _chunk_fields(chunk: Chunk) -> dict[str, Any]:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, chunk.table.schema) as writer:
        writer.write_table(chunk.table)
    data = sink.getvalue().to_pybytes()
    fields = {"chunk": chunk.index, "source": chunk.source, "offset": chunk.offset}
    return {**fields, "bytes": chunk.bytes, "data": data}


class ChunkScorer:
    """An actor of the scoring pool: one `Scorer`, opened once; a part per chunk.

    Each call gets chunk rows and returns one event per row (JSON text): the chunk's
    record, a file's end, or a Modelport error carried back whole (hint included).
    """

    def __init__(self, *, settings: Settings, spec: JobSpec, now: datetime, staging: str) -> None:
        self.spec = spec
        self.staging = staging
        self.output = Output(spec.output)
        self.waiting: dict[int, Output] = {}
        self.scorer: Scorer | None = None
        self.failure: Failure | None = None
        try:
            self.scorer = Scorer.open(settings, spec, now=now)
        except ModelportError as exc:
            self.failure = Failure.of(exc)

    def __call__(self, batch: pa.Table) -> pa.Table:
        events = [json.dumps(self._score(row)) for row in batch.to_pylist()]
        return pa.table({"event": pa.array(events, pa.string())})

    def _score(self, row: dict[str, Any]) -> dict[str, Any]:
        number = row["file"]
        if row["data"] is None:
            return {"event": "end", "file": number, "count": row["chunk"]}
        if self.failure is not None:
            return {"event": "failure", **asdict(self.failure)}
        assert self.scorer is not None
        staged = row["index"] < 0
        output = self._staging(number) if staged else self.output
        table = pa.ipc.open_stream(pa.py_buffer(row["data"])).read_all()
        index = row["chunk"] if staged else row["index"]
        chunk = Chunk(index, row["source"], row["offset"], table, row["bytes"])
        try:
            record = score_chunk(self.scorer, output, chunk)
        except ModelportError as exc:
            return {"event": "failure", **asdict(Failure.of(exc))}
        where = {"file": number, "chunk": row["chunk"], "staged": staged, "bytes": row["bytes"]}
        return {"event": "chunk", **where, "record": asdict(record)}

    def _staging(self, number: int) -> Output:
        if number not in self.waiting:
            folder = STAGED.format(staging=self.staging, number=number)
            self.waiting[number] = Output(f"{self.spec.output}/{folder}")
        return self.waiting[number]


# -- this process: the chunks' numbers and the manifest -----------------------------------


class Ledger:
    """Plans the read units, numbers the chunks and records them in the manifest.

    File ``i``'s first chunk number is the sum of the chunk counts of the files before
    it: known from the start while those are Parquet, else learned from each CSV
    file's end event. The chunks of a file whose first number is unknown wait here
    (their parts in the staging folder) until it is known.
    """

    def __init__(self, inputs: Inputs, chunk_rows: int, book: Book) -> None:
        self.files = inputs.files
        self.chunk_rows = chunk_rows
        self.book = book
        self.output = book.output
        self.staging = STAGING.format(run_id=book.manifest.run_id)
        self.counts = [f.chunk_count(chunk_rows) for f in self.files]
        self.starts: list[int | None] = [0] + [None] * (len(self.files) - 1)
        self.waiting: dict[int, list[dict[str, Any]]] = {}
        self._number()

    def units(self, recorded: list[ChunkRecord]) -> list[dict[str, Any]]:
        """The read units still to do, leaving out the chunks a resumed run recorded."""
        units: list[dict[str, Any]] = []
        for number, file in enumerate(self.files):
            done = sorted(c.offset // self.chunk_rows for c in recorded if c.source == file.path)
            count = self.counts[number]
            spans: list[tuple[int, int | None]] = [(0, None)]
            if count is not None:
                spans = [(k, min(k + UNIT_CHUNKS, count)) for k in range(0, count, UNIT_CHUNKS)]
            for first, stop in spans:
                if stop is not None and set(range(first, stop)) <= set(done):
                    continue
                start = self.starts[number]
                units.append(
                    {"file": number, "first": first, "stop": stop, "start": start, "done": done}
                )
        return units

    def take(self, event: dict[str, Any]) -> None:
        """Record one actor event; raise the error a failure event carries."""
        kind = event.pop("event")
        if kind == "failure":
            raise Failure(**event).error()
        number = event["file"]
        if kind == "end":
            self.counts[number] = event["count"]
            self._number()
        elif event["staged"]:
            self.waiting.setdefault(number, []).append(event)
        else:
            self.book.add(ChunkRecord(**event["record"]), event["bytes"])
        for known in [n for n in self.waiting if self.starts[n] is not None]:
            for waiting in self.waiting.pop(known):
                self._place(waiting)

    def check_complete(self) -> None:
        if self.waiting:
            files = [self.files[n].path for n in sorted(self.waiting)]
            raise PredictionFailed(
                f"the chunks of {files[:3]} got no numbers: a file before them was not read",
                hint="rerun with --resume",
            )

    def sweep(self) -> None:
        """Remove the staging folder (what is left there belongs to no recorded chunk)."""
        with contextlib.suppress(OSError, pa.ArrowException):
            self.output.fs.delete_dir(self.output.path(self.staging))

    def _number(self) -> None:
        for n in range(1, len(self.files)):
            before, count = self.starts[n - 1], self.counts[n - 1]
            if self.starts[n] is None and before is not None and count is not None:
                self.starts[n] = before + count

    def _place(self, event: dict[str, Any]) -> None:
        """Move a staged chunk's part (and rejects) to the names its number gives."""
        start = self.starts[event["file"]]
        assert start is not None
        index = start + event["chunk"]
        record = ChunkRecord(**event["record"])
        folder = STAGED.format(staging=self.staging, number=event["file"])
        if record.file:
            self._move(f"{folder}/{record.file}", part_name(index))
        self._move(f"{folder}/{rejects_name(record.index)}", rejects_name(index))
        part = part_name(index) if record.file else ""
        self.book.add(replace(record, index=index, file=part), event["bytes"])

    def _move(self, old: str, new: str) -> None:
        fs, source = self.output.fs, self.output.path(old)
        if fs.get_file_info(source).type == pafs.FileType.NotFound:
            return
        target = self.output.path(new)
        fs.create_dir(target.rpartition("/")[0], recursive=True)
        fs.move(source, target)

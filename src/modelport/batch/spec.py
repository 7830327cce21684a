"""What a batch prediction job is and what a run leaves behind.

A `JobSpec` says which model scores which dataset, with which feature views, where the
output goes and how bad rows are treated. The same spec comes from the CLI
(``modelport batch predict``), from ``modelport.yaml`` (``batch:`` jobs with a cron
schedule) and from Python (`modelport.batch.predict`). A run writes Parquet parts and a
`Manifest` (``_manifest.json``) into the output folder; the manifest is what makes a
run resumable and what the registry's run history points at.

Example::

    spec = JobSpec(model="models:/fraud@champion", input="data/*.parquet", output="out/")
    manifest = predict(client, spec)
    print(manifest.rows_out, manifest.version)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

BadRows = Literal["fail", "skip"]
Engine = Literal["local", "ray"]
RunStatus = Literal["running", "succeeded", "failed"]

#: The manifest's file name inside a job's output folder.
MANIFEST = "_manifest.json"
#: Rows skipped under ``on_bad_rows: skip``, with the reason, inside the output folder.
REJECTS = "_rejects"
#: Rows per chunk unless a job says otherwise: large enough that the model's call
#: dominates, small enough that a worker holds a few chunks in well under 1 GB.
DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class JobSpec:
    """One batch prediction job.

    ``input`` is a file, a folder (a partitioned dataset), a glob, or an object-store
    URL (``s3://...``) of Parquet or CSV. ``id_columns`` are copied to the output as
    they are (and key published predictions). ``features`` are feature views joined by
    their entity column; with ``at_column`` the join is point-in-time (each row gets the
    values as of its time), otherwise the latest values. ``workers`` is the number of
    processes (None: one per core). ``publish`` names an endpoint whose precomputed
    predictions this run replaces when it succeeds.
    """

    model: str
    input: str
    output: str
    id_columns: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    at_column: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    workers: int | None = None
    on_bad_rows: BadRows = "fail"
    engine: Engine = "local"
    ray_address: str | None = None
    runtime: Literal["auto", "native", "compiled"] = "auto"
    publish: str | None = None
    env: str = "production"
    #: the job's name when it is declared in modelport.yaml (None for one-off runs)
    name: str | None = None
    #: a cron expression (five fields) for jobs the server runs on a schedule
    schedule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["id_columns"] = list(self.id_columns)
        out["features"] = list(self.features)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("id_columns", "features"):
            if key in values:
                values[key] = tuple(values[key] or ())
        return cls(**values)

    def with_(self, **changes: Any) -> JobSpec:
        return replace(self, **changes)


@dataclass
class ChunkRecord:
    """One completed chunk: where its rows came from and where they went."""

    index: int
    source: str  # the input file the chunk was read from
    offset: int  # the chunk's first row within that file
    rows_in: int
    rows_out: int
    rows_rejected: int
    file: str  # the Parquet part, relative to the output folder
    sha256: str  # of that part, so a resumed run can trust what it keeps


@dataclass
class Manifest:
    """What a run did: inputs, model, chunks, counts, times and outcome.

    Written to ``{output}/_manifest.json`` after every chunk, so a killed run resumes
    from the last completed chunk (``--resume``) and a rerun of a finished job with the
    same inputs and model writes nothing new.
    """

    run_id: str
    job: str | None
    spec: dict[str, Any]
    model: str  # the model's name
    version: int
    model_sha256: str
    runtime: str  # "native" or "compiled"
    engine: str
    inputs: list[dict[str, Any]]  # {"path", "bytes", "mtime"} per input file
    started_at: str  # ISO 8601, UTC
    finished_at: str | None = None
    status: RunStatus = "running"
    error: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    chunks: list[ChunkRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        values = dict(data)
        values["chunks"] = [ChunkRecord(**c) for c in data.get("chunks", [])]
        return cls(**values)

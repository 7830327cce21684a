"""The ``batch:`` section of `modelport.yaml`: batch prediction jobs declared by name.

Each entry is the fields of a `modelport.batch.spec.JobSpec` (model URI, input, output,
id columns, feature views, chunking, workers, bad-row policy, engine, runtime,
publish) for one environment (``env``, default ``production``, the environment the
job's server schedules it in and ``modelport batch run --env`` names), and, optionally,
a cron ``schedule`` (five fields, UTC) on which that environment's server runs it.
Relative ``input`` and ``output`` paths are made absolute from the YAML file's folder
when planned. Every problem is reported at the field that has it.

Example::

    spec = BatchJobSpec.model_validate(
        {"model": "models:/fraud@champion", "input": "data/tx/", "output": "out/scores",
         "schedule": "0 2 * * *"}
    )
    spec.job("nightly_scores").schedule
    # '0 2 * * *'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from modelport.batch.jobs import check_schedule
from modelport.batch.spec import DEFAULT_CHUNK_ROWS, JobSpec
from modelport.config.features import ViewName
from modelport.errors import InvalidInput
from modelport.uri import check_name, parse_model_uri

#: Where a problem is, relative to the model checking it, and what it is.
Problem = tuple[tuple[str | int, ...], str]

#: The kind of error this section raises; its messages are written for people.
ERROR = "invalid_batch"


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError(ERROR, "{message}", {"message": message})


def _checked(check: Callable[[str], Any]) -> Any:
    """A validator running ``check`` (which raises `InvalidInput` or `ValueError`)."""

    def validate(value: str) -> str:
        try:
            check(value)
        except InvalidInput as exc:
            raise _error(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        except ValueError as exc:
            raise _error(str(exc)) from None
        return value

    return AfterValidator(validate)


def _refuse(model: str, problems: list[Problem]) -> None:
    if problems:
        raise ValidationError.from_exception_data(
            model, [InitErrorDetails(type=_error(m), loc=loc, input=None) for loc, m in problems]
        )


JobName = Annotated[str, _checked(lambda v: check_name("batch job", v))]
EnvironmentName = Annotated[str, _checked(lambda v: check_name("environment", v))]
EndpointName = Annotated[str, _checked(lambda v: check_name("endpoint", v))]
ModelUri = Annotated[str, _checked(parse_model_uri)]
Schedule = Annotated[str, _checked(check_schedule)]
Column = Annotated[str, Field(min_length=1)]


class BatchJobSpec(BaseModel):
    """One batch job: which model scores which data, where the output goes, and when."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)

    env: EnvironmentName = Field(
        default="production",
        description="Environment the job belongs to: its server schedules it, "
        "`modelport batch run --env` names it.",
    )
    model: ModelUri = Field(
        description="Model URI, resolved at each run: models:/NAME@ALIAS follows the alias."
    )
    input: str = Field(
        min_length=1,
        description="Parquet or CSV file, folder, glob or s3:// URL; relative to the YAML "
        "file's folder.",
    )
    output: str = Field(
        min_length=1,
        description="Folder of the Parquet parts and _manifest.json; relative "
        "to the YAML file's folder.",
    )
    id_columns: list[Column] = Field(
        default_factory=list, description="Input columns copied to the output as they are."
    )
    features: list[ViewName] = Field(
        default_factory=list, description="Feature views joined onto the rows by entity key."
    )
    at_column: str | None = Field(
        default=None,
        min_length=1,
        description="Each row's time: the feature join is point-in-time (default: latest).",
    )
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=1, description="Rows per chunk.")
    workers: int | None = Field(
        default=None, ge=1, description="Processes scoring chunks (default: one per core)."
    )
    on_bad_rows: Literal["fail", "skip"] = Field(
        default="fail", description="fail: the run fails; skip: rows go to _rejects."
    )
    engine: Literal["local", "ray"] = Field(default="local", description="local or ray.")
    ray_address: str | None = Field(
        default=None, min_length=1, description="The Ray cluster (engine ray only)."
    )
    runtime: Literal["auto", "native", "compiled"] = Field(
        default="auto", description="The model's form, as for an endpoint's serving.runtime."
    )
    publish: EndpointName | None = Field(
        default=None,
        description="Endpoint whose precomputed predictions a successful run replaces.",
    )
    schedule: Schedule | None = Field(
        default=None,
        description="Cron schedule, five fields, UTC ('0 2 * * *': 02:00 every day); "
        "the environment's server runs the job then. None: run on demand only.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BatchJobSpec:
        problems: list[Problem] = []
        if self.ray_address is not None and self.engine != "ray":
            problems.append((("ray_address",), "ray_address goes with `engine: ray`; drop it"))
        if self.at_column is not None and not self.features:
            problems.append(
                (("at_column",), "at_column times the feature join; list `features` or drop it")
            )
        for section in ("id_columns", "features"):
            listed: list[str] = getattr(self, section)
            problems.extend(
                ((section, i), f"{name} is listed twice; list it once")
                for i, name in enumerate(listed)
                if name in listed[:i]
            )
        _refuse(type(self).__name__, problems)
        return self

    def job(self, name: str) -> JobSpec:
        """The `JobSpec` this entry declares, paths as written."""
        return JobSpec(
            name=name,
            env=self.env,
            model=self.model,
            input=self.input,
            output=self.output,
            id_columns=tuple(self.id_columns),
            features=tuple(self.features),
            at_column=self.at_column,
            chunk_rows=self.chunk_rows,
            workers=self.workers,
            on_bad_rows=self.on_bad_rows,
            engine=self.engine,
            ray_address=self.ray_address,
            runtime=self.runtime,
            publish=self.publish,
            schedule=self.schedule,
        )


Jobs = dict[JobName, BatchJobSpec]


# -- planning --------------------------------------------------------------------

#: JobSpec fields a plan shows, in order, when they differ from the defaults.
_SHOWN = (
    "model",
    "input",
    "output",
    "id_columns",
    "features",
    "at_column",
    "chunk_rows",
    "workers",
    "on_bad_rows",
    "engine",
    "ray_address",
    "runtime",
    "publish",
)


def summary(job: JobSpec, shown_path: Callable[[str], str] = str) -> str:
    """What a new job is: ``models:/fraud@champion on data/tx/ -> out/; schedule 0 2 * * *``."""
    parts = [
        f"{job.model} on {shown_path(job.input)} -> {shown_path(job.output)}",
        f"schedule {job.schedule}" if job.schedule else "on demand",
    ]
    defaults = JobSpec(model="", input="", output="")
    parts += [
        f"{name} {_text(getattr(job, name))}"
        for name in _SHOWN[3:]
        if getattr(job, name) != getattr(defaults, name)
    ]
    return "; ".join(parts)


def differences(
    before: JobSpec, after: JobSpec, shown_path: Callable[[str], str] = str
) -> list[str]:
    """How ``after`` differs from ``before``: ``schedule 0 2 * * * -> 0 3 * * *``."""
    out = []
    for name in (*_SHOWN, "schedule"):
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if name in ("input", "output"):
            old, new = shown_path(old), shown_path(new)
        out.append(f"{name} {_text(old)} -> {_text(new)}")
    return out


def _text(value: object) -> str:
    if isinstance(value, tuple | list):
        return f"[{', '.join(map(str, value))}]"
    return "-" if value in (None, "") else str(value)


__all__ = ["ERROR", "BatchJobSpec", "JobName", "Jobs", "differences", "summary"]

"""The ``features:`` section of `modelport.yaml`: feature views declared by name.

Each entry becomes a `modelport.features.views.FeatureView`: typed ``features`` from a
batch ``source`` (a Parquet/CSV path or a PostgreSQL query) or pushed (no source), or
windowed ``aggregations`` of a ``stream``. The checks here put every problem at the
field that has it; the view's own checks (`FeatureView.__post_init__`) run last, and
what they refuse is reported at the view's, feature's or source's line.

Example::

    spec = FeatureViewSpec.model_validate(
        {"entity": "user_id", "features": {"age": "double"}, "ttl": "1d"}
    )
    spec.view("user_profile").ttl_s
    # 86400.0
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from modelport.alerting.routing import Duration
from modelport.durations import format_duration
from modelport.features.views import (
    Aggregation,
    BatchSource,
    Feature,
    FeatureType,
    FeatureView,
    Function,
    Policy,
    Source,
    StreamSource,
    check_identifier,
)

#: Where a problem is, relative to the model checking it, and what it is.
Problem = tuple[tuple[str | int, ...], str]

#: The source fields of each kind, to say which ones do not belong.
_BATCH_FIELDS = ("path", "query", "url", "timestamp_column")
_STREAM_FIELDS = ("timestamp_field", "id_field", "allowed_lateness")

#: The password in a URL like postgresql://user:secret@host/db, kept out of plans.
_PASSWORD = re.compile(r"(://[^:/@]+:)[^@/]*@")


def _identifier(what: str) -> Any:
    """A validator applying `check_identifier` rules for ``what`` names."""

    def check(value: str) -> str:
        try:
            return check_identifier(what, value)
        except ValueError as exc:
            raise PydanticCustomError("invalid_name", "{message}", {"message": str(exc)}) from None

    return AfterValidator(check)


def _feature_shorthand(value: Any) -> Any:
    """``age: double`` -> ``{type: double}``."""
    if isinstance(value, str):
        return {"type": value}
    if not isinstance(value, dict):
        raise _error(
            "a feature is a type (double, long, string, boolean) or a mapping like "
            f"{{type: vector, dim: 8}}, got {value!r}"
        )
    return value


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_feature", "{message}", {"message": message})


def _refuse(model: str, problems: list[Problem]) -> None:
    """Raise every problem at its field, as one error."""
    if problems:
        raise ValidationError.from_exception_data(
            model,
            [InitErrorDetails(type=_error(m), loc=loc, input=None) for loc, m in problems],
        )


ViewName = Annotated[str, _identifier("feature view")]
FeatureName = Annotated[str, _identifier("feature")]
EntityKey = Annotated[str, _identifier("entity key")]
PositiveDuration = Annotated[Duration, Field(gt=0)]


class _Strict(BaseModel):
    """Unknown fields are errors; numbers written where text is expected become text."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)


class FeatureSpec(_Strict):
    """A typed feature of a batch or push view; written ``age: double`` for short."""

    type: FeatureType = Field(
        default="double", description="double, long, string, boolean or vector."
    )
    dim: int | None = Field(default=None, ge=1, description="A vector's length; vectors only.")
    default: Any = Field(
        default=None, description="The value served for a missing or stale entity (`default`)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        problems: list[Problem] = []
        if self.type == "vector" and self.dim is None:
            problems.append((("dim",), "a vector needs `dim`, its length"))
        if self.type != "vector" and self.dim is not None:
            problems.append((("dim",), f"only a vector has a dim, not a {self.type}"))
        if self.default is not None and not _fits(self.type, self.dim, self.default):
            problems.append((("default",), f"{self.default!r} is not a {self.type}"))
        _refuse(type(self).__name__, problems)
        return self

    def feature(self, name: str) -> Feature:
        return Feature(name=name, type=self.type, dim=self.dim, default=self.default)


class AggregationSpec(_Strict):
    """A streaming feature: ``function`` of the events' ``field`` over a sliding window."""

    function: Function = Field(description="count, sum, mean, min, max, distinct_count or last.")
    field: str | None = Field(
        default=None, min_length=1, description="The event field aggregated; none for count."
    )
    window: PositiveDuration = Field(description="The sliding window: 1m, 1h, 1d.")
    default: Any = Field(default=None, description="The value served before any event.")

    @model_validator(mode="after")
    def _consistent(self) -> AggregationSpec:
        problems: list[Problem] = []
        if self.function == "count" and self.field is not None:
            problems.append((("field",), "count counts events and takes no field; drop it"))
        if self.function != "count" and self.field is None:
            problems.append((("field",), f"{self.function} needs the event `field` it reads"))
        kind = "long" if self.function in ("count", "distinct_count") else "double"
        if self.default is not None and not _fits(kind, None, self.default):
            problems.append((("default",), f"{self.default!r} is not a {kind}"))
        _refuse(type(self).__name__, problems)
        return self

    def aggregation(self, name: str) -> Aggregation:
        return Aggregation(name, self.function, self.field, self.window, self.default)


class SourceSpec(_Strict):
    """Where a view's data comes from: a batch ``path`` or ``query`` (with ``url``) and
    its ``timestamp_column``, or a ``stream`` of events."""

    path: str | None = Field(
        default=None,
        min_length=1,
        description="Parquet or CSV file, relative to the YAML file's folder, or a URL.",
    )
    query: str | None = Field(default=None, min_length=1, description="SQL giving the rows.")
    url: str | None = Field(
        default=None, min_length=1, description="The PostgreSQL a query runs on."
    )
    timestamp_column: str | None = Field(
        default=None, min_length=1, description="A batch row's event time."
    )
    stream: str | None = Field(default=None, min_length=1, description="The event stream.")
    timestamp_field: str | None = Field(
        default=None, min_length=1, description="An event's time (default ts)."
    )
    id_field: str | None = Field(
        default=None, min_length=1, description="An event's id (default: the message id)."
    )
    allowed_lateness: Duration | None = Field(
        default=None, ge=0, description="Events this far behind the newest still count (1m)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        _refuse(type(self).__name__, self._problems())
        return self

    def _problems(self) -> list[Problem]:
        given = self.model_fields_set - {n for n, v in self if v is None}
        if self.stream is not None:
            return [
                (
                    (f,),
                    "a stream source takes stream, timestamp_field, id_field and "
                    "allowed_lateness; drop it",
                )
                for f in _BATCH_FIELDS
                if f in given
            ]
        problems: list[Problem] = [
            ((f,), "only a stream source takes this (set `stream:`)")
            for f in _STREAM_FIELDS
            if f in given
        ]
        if self.path is None and self.query is None:
            problems.append(((), "say where the data is: `path`, `query` with `url`, or `stream`"))
        if self.path is not None and self.query is not None:
            problems.append((("query",), "set path or query, not both"))
        if self.query is not None and self.url is None:
            problems.append((("url",), "a query needs the `url` of the PostgreSQL it runs on"))
        if self.path is not None and self.url is not None:
            problems.append((("url",), "a url goes with a query; a path needs none"))
        if self.timestamp_column is None:
            problems.append((("timestamp_column",), "a batch source needs `timestamp_column`"))
        return problems

    def source(self) -> Source:
        if self.stream is not None:
            lateness = {}
            if self.allowed_lateness is not None:
                lateness["allowed_lateness_s"] = self.allowed_lateness
            return StreamSource(
                stream=self.stream,
                timestamp_field=self.timestamp_field or "ts",
                id_field=self.id_field,
                **lateness,
            )
        assert self.timestamp_column is not None, "validation makes sure a batch source has one"
        return BatchSource(
            timestamp_column=self.timestamp_column, path=self.path, query=self.query, url=self.url
        )


class FeatureViewSpec(_Strict):
    """One feature view: the whole spec comes from the file (nothing is kept from the
    registry's copy)."""

    entity: EntityKey = Field(description="The entity key requests carry: user_id.")
    source: SourceSpec | None = Field(
        default=None, description="Batch path or query, or a stream; none: values are pushed."
    )
    features: dict[FeatureName, Annotated[FeatureSpec, BeforeValidator(_feature_shorthand)]] = (
        Field(default_factory=dict, description="Typed features of a batch or push view.")
    )
    aggregations: dict[FeatureName, AggregationSpec] = Field(
        default_factory=dict, description="Windowed aggregations of a stream view."
    )
    ttl: PositiveDuration | None = Field(
        default=None, description="How long a value stays fresh: 1h, 1d; none: for ever."
    )
    on_missing: Policy = Field(
        default="null", description="An entity with no value: error, default or null."
    )
    on_stale: Policy = Field(
        default="null", description="A value older than ttl: error, default or null."
    )
    owner: str | None = Field(default=None, description="Who is responsible for the view.")
    description: str = Field(default="", description="What the view holds.")
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")

    @model_validator(mode="after")
    def _one_kind(self) -> FeatureViewSpec:
        _refuse(type(self).__name__, self._problems())
        return self

    def _problems(self) -> list[Problem]:
        streaming = self.source is not None and self.source.stream is not None
        if self.features and self.aggregations:
            return [
                (
                    ("aggregations",),
                    "a view has `features` (batch or push) or `aggregations` (stream), not both",
                )
            ]
        problems: list[Problem] = []
        if streaming and self.features:
            problems.append((("features",), "a stream view has `aggregations`, not `features`"))
        elif streaming and not self.aggregations:
            problems.append((("aggregations",), "a stream view needs `aggregations`"))
        if not streaming and self.aggregations:
            problems.append(
                (("aggregations",), "aggregations need a stream source (`source: {stream: ...}`)")
            )
        elif not streaming and not self.features:
            problems.append((("features",), "a batch or push view needs `features`"))
        for section in ("features", "aggregations"):
            if self.entity in getattr(self, section):
                problems.append(
                    ((section, self.entity), f"{self.entity} is the entity key, not a feature")
                )
        return problems

    def view(self, name: str) -> FeatureView:
        """The `FeatureView` this entry declares; `ValueError` if the view refuses it."""
        return FeatureView(
            name=name,
            entity=self.entity,
            features=tuple(spec.feature(n) for n, spec in self.features.items()),
            aggregations=tuple(spec.aggregation(n) for n, spec in self.aggregations.items()),
            source=self.source.source() if self.source is not None else None,
            ttl_s=self.ttl,
            on_missing=self.on_missing,
            on_stale=self.on_stale,
            owner=self.owner,
            description=self.description,
            tags=dict(self.tags),
        )


def _fits(kind: str, dim: int | None, value: Any) -> bool:
    """Whether ``value`` is a ``kind`` (a vector: ``dim`` numbers)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "vector":
        return (
            isinstance(value, list)
            and len(value) == dim
            and all(_fits("double", None, v) for v in value)
        )
    checks: dict[str, Callable[[Any], bool]] = {
        "double": lambda _: number,
        "long": lambda v: number and float(v).is_integer(),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
    }
    return checks[kind](value)


def check_views(views: dict[str, FeatureViewSpec]) -> dict[str, FeatureViewSpec]:
    """Put each view through the domain's own checks; a refusal is reported at the
    feature, aggregation, source or view it is about."""
    problems = [p for name, spec in views.items() for p in _refusals(name, spec)]
    _refuse("FeatureViews", problems)
    return views


def _refusals(name: str, spec: FeatureViewSpec) -> list[Problem]:
    """What the domain classes refuse of one view, each at its own field; the view as a
    whole is only built once its parts pass."""
    problems: list[Problem] = []
    for feature, given in spec.features.items():
        problems.extend(_attempt((name, "features", feature), given.feature, feature))
    for agg, aspec in spec.aggregations.items():
        problems.extend(_attempt((name, "aggregations", agg), aspec.aggregation, agg))
    if spec.source is not None:
        problems.extend(_attempt((name, "source"), spec.source.source))
    if not problems:
        problems.extend(_attempt((name,), spec.view, name))
    return problems


def _attempt(loc: tuple[str | int, ...], build: Callable[..., object], *args: str) -> list[Problem]:
    try:
        build(*args)
    except ValueError as exc:
        return [(loc, str(exc))]
    return []


Views = Annotated[dict[ViewName, FeatureViewSpec], AfterValidator(check_views)]


# -- planning --------------------------------------------------------------------


def summary(view: FeatureView, shown_path: Callable[[str], str] = str) -> str:
    """What a new view is: ``user_id; batch data/p.parquet; 4 features; ttl 1d``."""
    parts = [f"entity {view.entity}", _source(view.source, shown_path)]
    if view.features:
        parts.append(f"features {', '.join(view.columns)}")
    else:
        parts.append(f"aggregations {', '.join(view.columns)}")
    if view.ttl_s is not None:
        parts.append(f"ttl {format_duration(view.ttl_s)}")
    parts += [
        f"{p} {getattr(view, p)}" for p in ("on_missing", "on_stale") if getattr(view, p) != "null"
    ]
    return "; ".join(parts)


def differences(
    before: FeatureView, after: FeatureView, shown_path: Callable[[str], str] = str
) -> list[str]:
    """How ``after`` differs from ``before``: ``ttl 1d -> 2h``, ``features +score double``."""
    out: list[str] = []
    if before.entity != after.entity:
        out.append(f"entity {before.entity} -> {after.entity}")
    if before.source != after.source:
        out.append(
            f"source {_source(before.source, shown_path)} -> {_source(after.source, shown_path)}"
        )
    out += _listed("features", before.features, after.features)
    out += _listed("aggregations", before.aggregations, after.aggregations)
    if before.ttl_s != after.ttl_s:
        out.append(f"ttl {_ttl(before.ttl_s)} -> {_ttl(after.ttl_s)}")
    for name in ("on_missing", "on_stale", "owner", "description", "tags"):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            out.append(f"{name} {_text(old)} -> {_text(new)}")
    return out


def _listed(
    section: str,
    before: tuple[Feature | Aggregation, ...],
    after: tuple[Feature | Aggregation, ...],
) -> list[str]:
    old = {f.name: f for f in before}
    new = {f.name: f for f in after}
    out = [f"{section} -{name}" for name in old if name not in new]
    for name, item in new.items():
        if name not in old:
            out.append(f"{section} +{name} {_item(item)}")
        elif old[name] != item:
            out.append(f"{section}.{name} {_item(old[name])} -> {_item(item)}")
    if not out and [f.name for f in before] != [f.name for f in after]:
        out.append(f"{section} order {', '.join(new)}")
    return out


def _item(item: Feature | Aggregation) -> str:
    if isinstance(item, Feature):
        text = f"{item.type}[{item.dim}]" if item.dim is not None else item.type
    else:
        over = f"({item.field})" if item.field is not None else ""
        text = f"{item.function}{over} over {format_duration(item.window_s)}"
    return text if item.default is None else f"{text} default {item.default!r}"


def _source(source: Source | None, shown_path: Callable[[str], str]) -> str:
    if source is None:
        return "push"
    if isinstance(source, StreamSource):
        lateness = format_duration(source.allowed_lateness_s)
        return f"stream {source.stream} (time {source.timestamp_field}, lateness {lateness})"
    if source.path is not None:
        where = shown_path(source.path)
    else:
        where = "query on " + _PASSWORD.sub(r"\1***@", source.url or "")
    return f"batch {where} (time {source.timestamp_column})"


def _ttl(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _text(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return "-" if value in (None, "") else str(value)


__all__ = [
    "AggregationSpec",
    "FeatureSpec",
    "FeatureViewSpec",
    "SourceSpec",
    "ViewName",
    "Views",
    "check_views",
    "differences",
    "summary",
]

"""Feature views: what a model's features are, where they come from, when they go stale.

A view has an entity key (``user_id``), and either typed features loaded from a batch
source (a Parquet/CSV dataset or a PostgreSQL query) or pushed, or windowed
aggregations computed from an event stream. Every view has a TTL after which a value is
stale, and a policy for a missing entity or a stale value: ``error`` (the request fails
with a 4xx/5xx that names the view and key), ``default`` (the feature's default) or
``null``.

Example::

    view = FeatureView(
        name="user_stats",
        entity="user_id",
        aggregations=(Aggregation("tx_count_1h", "count", None, 3600.0),),
        source=StreamSource(stream="transactions", timestamp_field="ts"),
        ttl_s=86400.0,
    )
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

FeatureType = Literal["double", "long", "string", "boolean", "vector"]
Function = Literal["count", "sum", "mean", "min", "max", "distinct_count", "last"]
Policy = Literal["error", "default", "null"]

FEATURE_TYPES: tuple[str, ...] = ("double", "long", "string", "boolean", "vector")
FUNCTIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "distinct_count", "last")
POLICIES: tuple[str, ...] = ("error", "default", "null")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_identifier(what: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} must start with a letter or _ and hold only letters, digits, _"
        )
    return name


@dataclass(frozen=True)
class Feature:
    """A typed feature of a batch or push view; ``dim`` for vectors (embeddings)."""

    name: str
    type: FeatureType = "double"
    dim: int | None = None
    default: Any = None

    def __post_init__(self) -> None:
        check_identifier("feature", self.name)
        if self.type not in FEATURE_TYPES:
            raise ValueError(f"feature {self.name}: type must be one of {FEATURE_TYPES}")
        if (self.type == "vector") != (self.dim is not None):
            raise ValueError(f"feature {self.name}: a vector has a dim, other types none")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "dim": self.dim, "default": self.default}


@dataclass(frozen=True)
class Aggregation:
    """A streaming feature: ``function`` of the events' ``field`` (none for ``count``)
    per entity over the last ``window_s`` seconds, sliding."""

    name: str
    function: Function
    field: str | None
    window_s: float
    default: Any = None

    def __post_init__(self) -> None:
        check_identifier("aggregation", self.name)
        if self.function not in FUNCTIONS:
            raise ValueError(f"aggregation {self.name}: function must be one of {FUNCTIONS}")
        if (self.field is None) != (self.function == "count"):
            raise ValueError(f"aggregation {self.name}: {self.function} needs a field; count none")
        if self.window_s <= 0:
            raise ValueError(f"aggregation {self.name}: the window must be above 0")

    @property
    def type(self) -> FeatureType:
        return "long" if self.function in ("count", "distinct_count") else "double"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "function": self.function,
            "field": self.field,
            "window_s": self.window_s,
            "default": self.default,
        }


@dataclass(frozen=True)
class BatchSource:
    """A dataset with one row per (entity, event time): a Parquet or CSV ``path`` (local,
    or an object-store URL DuckDB reads), or a SQL ``query`` on the PostgreSQL at ``url``."""

    timestamp_column: str
    path: str | None = None
    query: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.query is None):
            raise ValueError("a batch source has either a path or a query")
        if self.query is not None and self.url is None:
            raise ValueError("a query source needs the PostgreSQL url to run it on")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "batch",
            "timestamp_column": self.timestamp_column,
            "path": self.path,
            "query": self.query,
            "url": self.url,
        }


@dataclass(frozen=True)
class StreamSource:
    """An event stream: a Redis Stream (``redis_url`` or the server's) or, embedded, an
    in-process queue of the same name. ``timestamp_field`` holds each event's time
    (seconds since the epoch, or ISO 8601); ``id_field`` its id (default: the stream's
    message id). An event counts in the window of its own event time; one older than
    its aggregation's window plus ``allowed_lateness_s`` (behind the newest event of its
    entity) no longer has a bucket and is dropped (see `modelport.features.aggregates`)."""

    stream: str
    timestamp_field: str = "ts"
    id_field: str | None = None
    allowed_lateness_s: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "stream",
            "stream": self.stream,
            "timestamp_field": self.timestamp_field,
            "id_field": self.id_field,
            "allowed_lateness_s": self.allowed_lateness_s,
        }


Source = BatchSource | StreamSource


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity, from one source (none: pushed), with a TTL and policies."""

    name: str
    entity: str
    features: tuple[Feature, ...] = ()
    aggregations: tuple[Aggregation, ...] = ()
    source: Source | None = None
    ttl_s: float | None = None
    on_missing: Policy = "null"
    on_stale: Policy = "null"
    owner: str | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_identifier("feature view", self.name)
        check_identifier("entity key", self.entity)
        streaming = isinstance(self.source, StreamSource)
        if streaming and (self.features or not self.aggregations):
            raise ValueError(f"view {self.name}: a stream view has aggregations, no features")
        if not streaming and (self.aggregations or not self.features):
            raise ValueError(f"view {self.name}: a batch or push view has features")
        names = [c for c in self.columns]
        if len(set(names)) != len(names) or self.entity in names:
            raise ValueError(f"view {self.name}: feature names must be unique and not the key")
        for policy in (self.on_missing, self.on_stale):
            if policy not in POLICIES:
                raise ValueError(f"view {self.name}: a policy is one of {POLICIES}")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ValueError(f"view {self.name}: the ttl must be above 0")

    @property
    def kind(self) -> Literal["batch", "stream", "push"]:
        if isinstance(self.source, StreamSource):
            return "stream"
        return "batch" if isinstance(self.source, BatchSource) else "push"

    @property
    def columns(self) -> tuple[str, ...]:
        """The feature columns the view provides, in order."""
        return tuple(f.name for f in self.features) + tuple(a.name for a in self.aggregations)

    def defaults(self) -> dict[str, Any]:
        out = {f.name: f.default for f in self.features}
        out.update((a.name, a.default) for a in self.aggregations)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entity": self.entity,
            "features": [f.to_dict() for f in self.features],
            "aggregations": [a.to_dict() for a in self.aggregations],
            "source": self.source.to_dict() if self.source is not None else None,
            "ttl_s": self.ttl_s,
            "on_missing": self.on_missing,
            "on_stale": self.on_stale,
            "owner": self.owner,
            "description": self.description,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureView:
        source: Source | None = None
        raw = data.get("source")
        if raw is not None:
            kind = raw.get("kind")
            body = {k: v for k, v in raw.items() if k != "kind"}
            source = StreamSource(**body) if kind == "stream" else BatchSource(**body)
        return cls(
            name=data["name"],
            entity=data["entity"],
            features=tuple(Feature(**f) for f in data.get("features", [])),
            aggregations=tuple(Aggregation(**a) for a in data.get("aggregations", [])),
            source=source,
            ttl_s=data.get("ttl_s"),
            on_missing=data.get("on_missing", "null"),
            on_stale=data.get("on_stale", "null"),
            owner=data.get("owner"),
            description=data.get("description", ""),
            tags=dict(data.get("tags") or {}),
        )

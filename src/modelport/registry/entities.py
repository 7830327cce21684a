"""What the registry holds: models, versions, deployments, and their history.

Plain frozen dataclasses: the store builds them from rows; the API, CLI and server
read them. ``to_dict`` gives the JSON shape every interface shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelport.artifacts import ArtifactRef
from modelport.signature import Signature


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    owner: str | None
    team: str | None
    tags: dict[str, str]
    latest_version: int
    aliases: dict[str, int]
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "owner": self.owner,
            "team": self.team,
            "tags": self.tags,
            "latest_version": self.latest_version,
            "aliases": self.aliases,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class ModelVersion:
    """One immutable, numbered version of a model."""

    name: str
    version: int
    flavor: str
    artifact: ArtifactRef
    signature: Signature
    task: str
    classes: list[Any] | None
    metrics: dict[str, float]
    tags: dict[str, str]
    description: str
    owner: str | None
    profile: dict[str, Any] | None
    sample_sha256: str | None
    trusted: bool
    trusted_by: str | None
    created_by: str | None
    created_at: datetime
    aliases: tuple[str, ...] = ()
    compiled: dict[str, Any] | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self, *, with_profile: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "flavor": self.flavor,
            "artifact": {
                "sha256": self.artifact.sha256,
                "name": self.artifact.name,
                "size": self.artifact.size,
            },
            "signature": self.signature.to_dict(),
            "task": self.task,
            "classes": self.classes,
            "metrics": self.metrics,
            "tags": self.tags,
            "description": self.description,
            "owner": self.owner,
            "trusted": self.trusted,
            "trusted_by": self.trusted_by,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "aliases": list(self.aliases),
            "compiled": self.compiled,
        }
        if with_profile:
            out["profile"] = self.profile
        return out


@dataclass(frozen=True)
class Variant:
    """One model version an endpoint serves, with its share of traffic (percent)."""

    model: str
    version: int
    weight: float = 100.0
    source: str | None = None  # the URI as the user wrote it, e.g. models:/fraud@champion

    @property
    def name(self) -> str:
        return f"{self.model}-v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "weight": self.weight,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(
            model=data["model"],
            version=int(data["version"]),
            weight=float(data.get("weight", 100.0)),
            source=data.get("source"),
        )


RuntimeChoice = Literal["auto", "native", "compiled"]


@dataclass(frozen=True)
class ServingOptions:
    """How an endpoint runs its model.

    ``runtime``: ``compiled`` serves the verified ONNX form (and fails to load without
    one), ``native`` the flavor's own library, ``auto`` the compiled form when the
    version has one. Batching coalesces concurrent requests into one model call of at
    most ``max_batch_size`` rows, waiting at most ``max_wait_ms`` for company.
    """

    runtime: RuntimeChoice = "auto"
    batching: bool = True
    max_batch_size: int = 64
    max_wait_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "batching": self.batching,
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ServingOptions:
        return cls(**(data or {}))


@dataclass(frozen=True)
class DeploymentSpec:
    """What an endpoint serves. Holds a list of variants so splits can be added later."""

    variants: tuple[Variant, ...]
    serving: ServingOptions = field(default_factory=ServingOptions)

    @property
    def primary(self) -> Variant:
        return max(self.variants, key=lambda v: v.weight)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": [v.to_dict() for v in self.variants],
            "serving": self.serving.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentSpec:
        return cls(
            variants=tuple(Variant.from_dict(v) for v in data["variants"]),
            serving=ServingOptions.from_dict(data.get("serving")),
        )

    @classmethod
    def single(
        cls,
        model: str,
        version: int,
        source: str | None = None,
        serving: ServingOptions | None = None,
    ) -> DeploymentSpec:
        return cls(
            variants=(Variant(model=model, version=version, source=source),),
            serving=serving or ServingOptions(),
        )


@dataclass(frozen=True)
class Deployment:
    environment: str
    endpoint: str
    spec: DeploymentSpec
    revision: int
    updated_at: datetime
    updated_by: str | None

    def to_dict(self) -> dict[str, Any]:
        primary = self.spec.primary
        return {
            "environment": self.environment,
            "endpoint": self.endpoint,
            "model": primary.model,
            "version": primary.version,
            "uri": f"models:/{primary.model}/{primary.version}",
            "spec": self.spec.to_dict(),
            "revision": self.revision,
            "updated_at": iso(self.updated_at),
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class DeploymentEvent:
    environment: str
    endpoint: str
    revision: int
    action: str
    spec: dict[str, Any] | None
    previous: dict[str, Any] | None
    actor: str | None
    reason: str | None
    created_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "endpoint": self.endpoint,
            "revision": self.revision,
            "action": self.action,
            "spec": self.spec,
            "previous": self.previous,
            "actor": self.actor,
            "reason": self.reason,
            "created_at": iso(self.created_at),
        }

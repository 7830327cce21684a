"""What the registry holds: models, versions, deployments, and their history.

Plain frozen dataclasses: the store builds them from rows; the API, CLI and server
read them. ``to_dict`` gives the JSON shape every interface shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, overload

from modelport.artifacts import ArtifactRef
from modelport.signature import Signature


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


@overload
def utc(ts: datetime) -> datetime: ...
@overload
def utc(ts: None) -> None: ...
def utc(ts: datetime | None) -> datetime | None:
    """``ts`` as UTC-aware (databases hand back naive UTC times); None stays None."""
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


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
    """One model version an endpoint serves, with its share of live traffic (a weight;
    shares are weights over their sum). A shadow variant gets a copy of live requests
    off the hot path, and its answers are only logged."""

    model: str
    version: int
    weight: float = 100.0
    source: str | None = None  # the URI as the user wrote it, e.g. models:/fraud@champion
    shadow: bool = False

    @property
    def name(self) -> str:
        return f"{self.model}-v{self.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "weight": self.weight,
            "source": self.source,
        }
        if self.shadow:
            out["shadow"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(
            model=data["model"],
            version=int(data["version"]),
            weight=float(data.get("weight", 100.0)),
            source=data.get("source"),
            shadow=bool(data.get("shadow", False)),
        )


@dataclass(frozen=True)
class Routing:
    """How a request picks among live variants: at random by weight, or sticky by a key
    taken from a request header or an input field (the first row's value)."""

    sticky_header: str | None = None
    sticky_field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sticky_header": self.sticky_header, "sticky_field": self.sticky_field}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Routing:
        return cls(**(data or {}))


#: A rollout step that sends the candidate a copy of traffic (shadow) before any share.
SHADOW_STEP = 0.0


@dataclass(frozen=True)
class RolloutPolicy:
    """How a rollout moves traffic to a candidate and judges it between steps.

    ``steps`` are the candidate's percent of live traffic, in order (``0`` is a shadow
    step: a copy of traffic, no live share); the last is 100. Each step lasts
    ``interval_s``, then the candidate is compared with the live version over that
    interval; every check that has data must pass, or the rollout rolls back.
    """

    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    interval_s: float = 300.0
    #: candidate requests an interval needs before it is judged (fewer: wait longer)
    min_requests: int = 100
    max_error_rate: float = 0.02
    max_p99_ratio: float = 1.5
    max_disagreement: float = 0.1
    max_prediction_psi: float = 0.25
    max_performance_drop: float = 0.05
    min_labels: int = 50

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps or steps[-1] != 100 or any(s < 0 or s > 100 for s in steps):
            raise ValueError(f"rollout steps must run from 0..100 and end at 100, not {steps}")
        if list(steps) != sorted(steps) or len(set(steps)) != len(steps):
            raise ValueError(f"rollout steps must increase, not {list(steps)}")
        if self.interval_s <= 0:
            raise ValueError("the rollout interval must be above 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "interval_s": self.interval_s,
            "min_requests": self.min_requests,
            "max_error_rate": self.max_error_rate,
            "max_p99_ratio": self.max_p99_ratio,
            "max_disagreement": self.max_disagreement,
            "max_prediction_psi": self.max_prediction_psi,
            "max_performance_drop": self.max_performance_drop,
            "min_labels": self.min_labels,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RolloutPolicy:
        data = dict(data or {})
        if "steps" in data:
            data["steps"] = tuple(float(s) for s in data["steps"])
        return cls(**data)


RuntimeChoice = Literal["auto", "native", "compiled"]


#: Most rows per model call unless a deployment says otherwise. Chosen by measurement
#: (bench/batching_sweep.py): single-row traffic is the same from 64 up, while 64-row
#: requests at concurrency 64 gain about a third at 1024 over 64 (their batches then
#: run off the event loop while it reads the next requests); 2048 and 4096 add nothing.
MAX_BATCH_SIZE = 1024


@dataclass(frozen=True)
class ServingOptions:
    """How an endpoint runs its model.

    ``runtime``: ``compiled`` serves the verified ONNX form (and fails to load without
    one), ``native`` the flavor's own library, ``auto`` the compiled form when the
    version has one. Batching coalesces concurrent requests into one model call of at
    most ``max_batch_size`` rows, waiting at most ``max_wait_ms`` for company. At most
    ``max_queue`` requests (default 16 x ``max_batch_size``) wait per worker; more are
    shed. ``max_rows_per_request`` (default: the server's setting) caps one request.
    """

    runtime: RuntimeChoice = "auto"
    batching: bool = True
    max_batch_size: int = MAX_BATCH_SIZE
    max_wait_ms: float = 0.0
    max_queue: int | None = None
    max_rows_per_request: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "batching": self.batching,
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
            "max_queue": self.max_queue,
            "max_rows_per_request": self.max_rows_per_request,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ServingOptions:
        return cls(**(data or {}))


Fallback = Literal["online", "none"]


@dataclass(frozen=True)
class Precomputed:
    """An endpoint that answers from a batch run's published predictions.

    A request carries the key (``keys``: its fields, in the run's id-column order;
    empty: the run's id columns) and gets the row the run computed for it, with the
    model version that computed it and when. A key the run did not score is predicted
    online by the deployed model with ``fallback: online``, or answered 404 with
    ``none``. Predictions published from another version of the model than the one
    deployed are still served, and say which version they came from.
    """

    fallback: Fallback = "none"
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.fallback not in ("online", "none"):
            raise ValueError(f"precomputed fallback is online or none, not {self.fallback!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"fallback": self.fallback, "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Precomputed:
        return cls(fallback=data.get("fallback", "none"), keys=tuple(data.get("keys") or ()))


@dataclass(frozen=True)
class DeploymentSpec:
    """What an endpoint serves: live variants splitting traffic by weight, shadows,
    how requests are routed, and how the endpoint changes version.

    ``follow`` (``fraud@champion``) makes the endpoint follow a registry alias: when the
    alias moves, a rollout to the new version starts with ``rollout`` (the policy).
    ``features`` names the feature views joined onto each request by entity key.
    ``precomputed`` makes the endpoint answer from published batch predictions.
    """

    variants: tuple[Variant, ...]
    serving: ServingOptions = field(default_factory=ServingOptions)
    routing: Routing = field(default_factory=Routing)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    follow: str | None = None
    #: feature views whose values the server joins onto each request (by entity key)
    features: tuple[str, ...] = ()
    #: answer from a published batch run's predictions (None: predict every request)
    precomputed: Precomputed | None = None

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"a variant is listed twice: {names}")
        if not any(not v.shadow and v.weight > 0 for v in self.variants):
            raise ValueError("a deployment needs at least one live variant with a weight above 0")

    @property
    def live(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if not v.shadow and v.weight > 0)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.shadow)

    @property
    def primary(self) -> Variant:
        """The live variant with the largest share (the first listed on a tie)."""
        return max(self.live, key=lambda v: v.weight)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variants": [v.to_dict() for v in self.variants],
            "serving": self.serving.to_dict(),
        }
        if self.routing != Routing():
            out["routing"] = self.routing.to_dict()
        if self.rollout != RolloutPolicy():
            out["rollout"] = self.rollout.to_dict()
        if self.follow is not None:
            out["follow"] = self.follow
        if self.features:
            out["features"] = list(self.features)
        if self.precomputed is not None:
            out["precomputed"] = self.precomputed.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentSpec:
        return cls(
            variants=tuple(Variant.from_dict(v) for v in data["variants"]),
            serving=ServingOptions.from_dict(data.get("serving")),
            routing=Routing.from_dict(data.get("routing")),
            rollout=RolloutPolicy.from_dict(data.get("rollout")),
            follow=data.get("follow"),
            features=tuple(data.get("features") or ()),
            precomputed=(
                Precomputed.from_dict(data["precomputed"])
                if data.get("precomputed") is not None
                else None
            ),
        )

    def with_variants(self, variants: Sequence[Variant]) -> DeploymentSpec:
        return replace(self, variants=tuple(variants))

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

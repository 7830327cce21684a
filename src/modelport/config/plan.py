"""A plan for a `modelport.yaml`: the changes, the steps that make them, and `apply`.

A `Plan` holds one step per model, version, alias, feature view and deployment
(and the alerting document, and batch jobs); each step knows
its `Change` (create, update, delete or unchanged) and how to carry it out. `apply` runs the
steps in order; `modelport.config.planner` builds plans from a config file.

Example::

    result = apply(client, plan_file(client, "modelport.yaml"))
    print(result.render())
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modelport.batch.spec import JobSpec
from modelport.client import Client
from modelport.config.schema import ModelSpec, VersionSpec
from modelport.durations import format_duration
from modelport.errors import ModelportError
from modelport.features.views import FeatureView
from modelport.registry import (
    DeploymentSpec,
    ModelVersion,
    RolloutPolicy,
    Routing,
    ServingOptions,
    Variant,
)
from modelport.registry.entities import SHADOW_STEP, Precomputed
from modelport.registry.features import FeatureViewStore

if TYPE_CHECKING:
    import pandas as pd

ChangeKind = Literal["model", "version", "alias", "features", "deployment", "alerting", "batch"]
Action = Literal["create", "update", "delete", "unchanged"]

SYMBOLS: dict[Action, str] = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}

#: File suffixes a version's ``sample`` may have, and how pandas reads each.
SAMPLE_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Change:
    """One line of a plan: what happens to one model, version, alias, feature view
    (kind ``features``) or deployment.

    ``target`` names the thing (``fraud``, ``fraud v(new)``, ``fraud@champion``,
    ``user_profile``, ``production/fraud``); ``detail`` says what it is or what changes.
    """

    kind: ChangeKind
    action: Action
    target: str
    detail: str

    def render(self, width: int = 0) -> str:
        return f"  {SYMBOLS[self.action]} {self.kind:<10}  {self.target:<{width}}  {self.detail}"


@dataclass(frozen=True)
class VersionRef:
    """A version the plan points at: one the registry has, or one this plan registers."""

    model: str
    number: int | None = None
    slot: int | None = None
    label: str = ""

    def show(self) -> str:
        return f"v{self.number}" if self.number is not None else self.label

    def resolve(self, registered: Mapping[int, ModelVersion]) -> int:
        if self.number is not None:
            return self.number
        assert self.slot is not None, "a VersionRef is either numbered or planned"
        return registered[self.slot].version


class Step(Protocol):
    """A planned change and how to carry it out."""

    @property
    def change(self) -> Change: ...

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        """Make the change; return its detail with real version numbers."""
        ...


@dataclass(frozen=True)
class ModelStep:
    change: Change
    name: str
    spec: ModelSpec

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        client.registry.ensure_model(
            self.name,
            owner=self.spec.owner,
            team=self.spec.team,
            description=self.spec.description,
            tags=self.spec.tags,
        )
        return self.change.detail


@dataclass(frozen=True)
class VersionStep:
    change: Change
    ref: VersionRef
    model: ModelSpec
    spec: VersionSpec
    path: Path
    flavor: str
    sample: Path | None

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        version = client.register_model(
            self.ref.model,
            self.path,
            flavor=self.flavor,
            owner=self.model.owner,
            team=self.model.team,
            sample_input=read_sample(self.sample) if self.sample else None,
            metrics=self.spec.metrics,
            tags=self.spec.tags,
            description=self.spec.description,
            trust=self.spec.trust,
        )
        assert self.ref.slot is not None, "only new versions are registered"
        registered[self.ref.slot] = version
        return f"{self.spec.path} -> v{version.version}"


@dataclass(frozen=True)
class AliasStep:
    change: Change
    name: str
    alias: str
    ref: VersionRef

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        number = self.ref.resolve(registered)
        client.set_alias(self.name, self.alias, number)
        return self.change.detail.replace(self.ref.show(), f"v{number}")


@dataclass(frozen=True)
class PlannedVariant:
    """A `Variant` whose version may be one this plan registers."""

    ref: VersionRef
    source: str | None
    weight: float
    shadow: bool = False

    @classmethod
    def of(cls, variant: Variant) -> PlannedVariant:
        ref = VersionRef(variant.model, number=variant.version)
        return cls(ref, variant.source, variant.weight, variant.shadow)

    def variant(self, registered: Mapping[int, ModelVersion]) -> Variant:
        number = self.ref.resolve(registered)
        return Variant(self.ref.model, number, self.weight, self.source, self.shadow)


@dataclass(frozen=True)
class PlannedDeployment:
    """A `DeploymentSpec` whose versions may be ones this plan registers."""

    variants: tuple[PlannedVariant, ...]
    serving: ServingOptions = field(default_factory=ServingOptions)
    routing: Routing = field(default_factory=Routing)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    follow: str | None = None
    features: tuple[str, ...] = ()
    precomputed: Precomputed | None = None

    @property
    def numbered(self) -> bool:
        """Whether every version exists already, so `spec` needs nothing registered."""
        return all(v.ref.number is not None for v in self.variants)

    def spec(self, registered: Mapping[int, ModelVersion]) -> DeploymentSpec:
        return DeploymentSpec(
            variants=tuple(v.variant(registered) for v in self.variants),
            serving=self.serving,
            routing=self.routing,
            rollout=self.rollout,
            follow=self.follow,
            features=self.features,
            precomputed=self.precomputed,
        )


@dataclass(frozen=True)
class FeatureViewStep:
    """Create or update a feature view; the registry keeps its revision when the spec
    is the same, so running it twice changes nothing."""

    change: Change
    view: FeatureView

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        revision = FeatureViewStore(client.registry.engine).put(self.view, actor=client.user)
        return f"{self.change.detail}, revision {revision}"


@dataclass(frozen=True)
class DeploymentStep:
    """Set an endpoint's deployment; a compare-and-set on the revision the plan saw, so
    a change made meanwhile (a rollout's step, say) is never overwritten unseen."""

    change: Change
    environment: str
    endpoint: str
    wanted: PlannedDeployment
    reason: str
    revision: int = 0  # the deployment's revision when planned; 0: not deployed
    #: a version to move to by a rollout (with the endpoint's policy) once ``wanted``
    #: (the same variants, new settings) is written
    roll_to: PlannedVariant | None = None

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        deployment = client.registry.set_deployment(
            self.environment,
            self.endpoint,
            self.wanted.spec(registered),
            actor=client.user,
            reason=self.reason,
            expect_revision=self.revision,
        )
        variants = [PlannedVariant.of(v) for v in deployment.spec.variants]
        done = f"{describe(variants, sources=True)}, revision {deployment.revision}"
        if self.roll_to is None:
            return done
        target = self.roll_to.variant(registered)
        rollout = client.rollouts(self.environment).start(
            self.endpoint, target.uri, reason=self.reason
        )
        return f"{done}; rollout {rollout.id} to {target.uri} started at {rollout.percent:g}%"


@dataclass(frozen=True)
class AlertingStep:
    change: Change
    body: dict[str, Any]

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        from modelport.alerting.watchconfig import DOCUMENT
        from modelport.registry.watching import WatchStore

        store = WatchStore(client.registry.engine)
        revision = store.put_document(DOCUMENT, self.body, actor=client.settings.user)
        return f"{self.change.detail}, revision {revision}"


@dataclass(frozen=True)
class BatchJobStep:
    """Create, update or remove a batch job (``job`` None: remove ``environment/name``);
    the registry keeps a spec it holds already, so running it twice changes nothing."""

    change: Change
    environment: str
    name: str
    job: JobSpec | None

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        from modelport.registry.batch import BatchStore

        store = BatchStore(client.registry.engine)
        if self.job is None:
            store.delete_job(self.environment, self.name)
        else:
            store.put_job(self.job, actor=client.user)
        return self.change.detail


@dataclass(frozen=True)
class Plan:
    """What applying a config would change, in the order `apply` makes the changes."""

    steps: tuple[Step, ...]
    file: str | None = None

    @property
    def changes(self) -> list[Change]:
        return [step.change for step in self.steps]

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def counts(self) -> dict[Action, int]:
        counted = Counter(c.action for c in self.changes)
        return {action: counted[action] for action in SYMBOLS}

    def render(self, *, unchanged: bool = True) -> str:
        """A terraform-like diff: ``+`` create, ``~`` update, ``-`` delete, ``=`` unchanged."""
        counts = self.counts()
        deleted = f", {counts['delete']} to delete" if counts["delete"] else ""
        head = (
            f"{self.file or 'plan'}: {counts['create']} to create, {counts['update']} to update"
            f"{deleted}, {counts['unchanged']} unchanged"
        )
        shown = [c for c in self.changes if unchanged or c.action != "unchanged"]
        width = max((len(c.target) for c in shown), default=0)
        return "\n".join([head, *(c.render(width) for c in shown)])


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` changed, with the version numbers it registered."""

    changes: list[Change] = field(default_factory=list)
    versions: list[ModelVersion] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.changes)

    def render(self) -> str:
        if not self.changes:
            return "nothing to change"
        width = max(len(c.target) for c in self.changes)
        lines = [c.render(width) for c in self.changes]
        return "\n".join([f"applied {self.changed} change(s)", *lines])


def read_sample(path: Path) -> pd.DataFrame:
    """Training rows from a CSV or Parquet file."""
    import pandas as pd

    if SAMPLE_READERS[path.suffix.lower()] == "csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


# -- planning -----------------------------------------------------------------


def describe(variants: Sequence[PlannedVariant], *, sources: bool = False) -> str:
    """Variants as a plan shows them, ``fraud v3 90% + fraud v4 10% + shadow fraud_lr v1``:
    live shares in percent when there are several, and with ``sources`` each URI as the
    file wrote it."""
    live = [v for v in variants if not v.shadow]
    total = sum(v.weight for v in live)
    parts = []
    for v in variants:
        text = f"{v.ref.model} {v.ref.show()}"
        if v.shadow:
            text = f"shadow {text}"
        elif len(live) > 1:
            text += f" {round(100 * v.weight / total, 1) if total else 0:g}%"
        parts.append(text + (f" ({v.source})" if sources and v.source else ""))
    return " + ".join(parts)


def setting_changes(before: DeploymentSpec | None, after: PlannedDeployment) -> list[str]:
    """How ``after``'s serving, routing, rollout policy, followed alias and feature views
    differ from ``before``'s (``serving.max_batch_size 64 -> 32``, ``features [] ->
    [user_profile]``); with no ``before``, what differs from the defaults, without arrows
    (``rollout.interval 10m``)."""
    old = before or PlannedDeployment(variants=())
    arrow = before is not None
    out = _field_changes("serving", old.serving.to_dict(), after.serving.to_dict(), arrow)
    if after.routing != old.routing:
        out.append(f"routing {_was(_routing(old.routing), arrow)}{_routing(after.routing)}")
    out += _field_changes("rollout", old.rollout.to_dict(), after.rollout.to_dict(), arrow)
    if after.follow != old.follow:
        out.append(f"follow {_was(old.follow or '-', arrow)}{after.follow or '-'}")
    if after.features != old.features:
        out.append(f"features {_was(_names(old.features), arrow)}{_names(after.features)}")
    if after.precomputed != old.precomputed:
        was = _precomputed(old.precomputed)
        out.append(f"precomputed {_was(was, arrow)}{_precomputed(after.precomputed)}")
    return out


def _precomputed(mode: Precomputed | None) -> str:
    if mode is None:
        return "-"
    keys = f", keys {_names(mode.keys)}" if mode.keys else ""
    return f"fallback {mode.fallback}{keys}"


def _names(names: tuple[str, ...]) -> str:
    return f"[{', '.join(names)}]"


def _field_changes(
    section: str, old: dict[str, Any], new: dict[str, Any], arrow: bool
) -> list[str]:
    return [
        f"{section}.{_FILE_NAMES.get(name, name)} "
        f"{_was(_value(name, old[name]), arrow)}{_value(name, value)}"
        for name, value in new.items()
        if old[name] != value
    ]


#: Fields the file names differently from the spec.
_FILE_NAMES = {"interval_s": "interval"}


def _was(text: str, arrow: bool) -> str:
    return f"{text} -> " if arrow else ""


def _value(name: str, value: Any) -> str:
    if name == "steps":
        return ",".join("shadow" if s == SHADOW_STEP else f"{s:g}" for s in value)
    if name == "interval_s":
        return format_duration(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _routing(routing: Routing) -> str:
    if routing.sticky_header is not None:
        return f"sticky by header {routing.sticky_header}"
    if routing.sticky_field is not None:
        return f"sticky by field {routing.sticky_field}"
    return "random by weight"


def apply(client: Client, plan: Plan) -> ApplyResult:
    """Carry out a plan: models, then versions, aliases, feature views, deployments,
    the alerting document and batch jobs.

    Unchanged lines are skipped. If a change fails, the ones before it stay applied;
    fix the cause and apply again (what is done shows as unchanged).

    Example::

        result = apply(client, plan_file(client, "modelport.yaml"))
        print(result.render())
    """
    registered: dict[int, ModelVersion] = {}
    done: list[Change] = []
    for step in plan.steps:
        change = step.change
        if change.action == "unchanged":
            continue
        try:
            detail = step.run(client, registered)
        except ModelportError as exc:
            raise type(exc)(f"{change.kind} {change.target}: {exc.message}", hint=exc.hint) from exc
        target = change.target
        if isinstance(step, VersionStep):
            target = f"{step.ref.model} v{step.ref.resolve(registered)}"
        done.append(replace(change, target=target, detail=detail))
    return ApplyResult(changes=done, versions=list(registered.values()))

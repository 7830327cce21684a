"""A plan for a `modelport.yaml`: the changes, the steps that make them, and `apply`.

A `Plan` holds one step per model, version, alias and deployment; each step knows
its `Change` (create, update or unchanged) and how to carry it out. `apply` runs the
steps in order; `modelport.config.planner` builds plans from a config file.

Example::

    result = apply(client, plan_file(client, "modelport.yaml"))
    print(result.render())
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modelport.client import Client
from modelport.config.schema import ModelSpec, VersionSpec
from modelport.errors import ModelportError
from modelport.registry import Deployment, ModelVersion, ServingOptions

if TYPE_CHECKING:
    import pandas as pd

ChangeKind = Literal["model", "version", "alias", "deployment", "alerting"]
Action = Literal["create", "update", "unchanged"]

SYMBOLS: dict[Action, str] = {"create": "+", "update": "~", "unchanged": "="}

#: File suffixes a version's ``sample`` may have, and how pandas reads each.
SAMPLE_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Change:
    """One line of a plan: what happens to one model, version, alias or deployment.

    ``target`` names the thing (``fraud``, ``fraud v(new)``, ``fraud@champion``,
    ``production/fraud``); ``detail`` says what it is or what changes.
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
class DeploymentStep:
    change: Change
    environment: str
    endpoint: str
    uri: str
    reason: str
    serving: ServingOptions = field(default_factory=ServingOptions)

    def run(self, client: Client, registered: dict[int, ModelVersion]) -> str:
        deployment = client.deploy(
            self.endpoint, self.uri, env=self.environment, reason=self.reason, serving=self.serving
        )
        return f"{serves(deployment)} ({self.uri}), revision {deployment.revision}"


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
        """A terraform-like diff: ``+`` create, ``~`` update, ``=`` unchanged."""
        counts = self.counts()
        head = (
            f"{self.file or 'plan'}: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['unchanged']} unchanged"
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


def serves(deployment: Deployment) -> str:
    primary = deployment.spec.primary
    more = len(deployment.spec.variants) - 1
    return f"{primary.model} v{primary.version}" + (f" (+{more} more)" if more else "")


def apply(client: Client, plan: Plan) -> ApplyResult:
    """Carry out a plan: models, then versions, aliases, deployments.

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

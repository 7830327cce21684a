"""Plan and apply a `modelport.yaml`: what would change, then make it so.

`plan` reads the registry and the files the config points at, writes nothing, and
returns a `Plan`: one `Change` per model, version, alias, feature view, deployment and
batch job, each to create, update, delete (batch jobs the file's ``batch:`` no longer
lists) or left unchanged. `apply` carries a plan out in that order, so
the views an endpoint joins exist before its deployment names them. Versions
are recognised by the SHA-256 of their artifact and deployments by their whole spec
(variants, serving, routing, rollout policy, followed alias), so applying the same
file twice changes nothing the second time. An endpoint that already follows an
alias keeps the variants the server gave it: moving the alias starts a rollout there,
never a jump here.

A URI in the file may name an alias the same file sets or moves, or a version it
registers; the plan resolves it against what the registry will hold once applied,
showing a version still to be registered as ``v(new)``.

Example::

    p = plan_file(client, "modelport.yaml")
    print(p.render())
    if p.has_changes:
        print(apply(client, p).render())
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from modelport.artifacts import sha256_path
from modelport.batch.spec import JobSpec
from modelport.client import Client
from modelport.config import batch as batch_config
from modelport.config.features import FeatureViewSpec, differences, summary
from modelport.config.plan import (
    SAMPLE_READERS,
    Action,
    AlertingStep,
    AliasStep,
    BatchJobStep,
    Change,
    DeploymentStep,
    FeatureViewStep,
    ModelStep,
    Plan,
    PlannedDeployment,
    PlannedVariant,
    Step,
    VersionRef,
    VersionStep,
    describe,
    setting_changes,
)
from modelport.config.schema import (
    ConfigFile,
    EndpointSpec,
    Loc,
    ModelSpec,
    SourceMap,
    VersionSpec,
    dotted,
    load_config,
)
from modelport.durations import format_duration
from modelport.errors import InvalidConfig, ModelportError, NotFound
from modelport.features.views import BatchSource, FeatureView
from modelport.registry import Deployment, Model
from modelport.registry.features import FeatureViewStore
from modelport.runtimes import RUNTIMES, detect_flavor, needs_trust
from modelport.uri import parse_model_uri


def plan_file(client: Client, path: str | Path) -> Plan:
    """Load ``path`` and plan it, paths resolved from the file's folder.

    Example::

        print(plan_file(client, "modelport.yaml").render())
    """
    config, source = load_config(path)
    return plan(client, config, Path(path).parent, source=source)


def plan(
    client: Client, config: ConfigFile, base_dir: Path, *, source: SourceMap | None = None
) -> Plan:
    """Compare ``config`` with the registry; read, never write.

    ``base_dir`` is the folder relative paths start from (the YAML file's). With the
    ``source`` from `load_config`, errors (a missing artifact, an alias nobody sets)
    name the file, line and field; all of them are raised together as `InvalidConfig`.

    Example::

        config, source = load_config("modelport.yaml")
        p = plan(client, config, Path("."), source=source)
        print(p.render())
    """
    return _Planner(client, config, Path(base_dir), source or SourceMap.empty()).build()


@dataclass
class _ModelState:
    """A model as the registry will hold it once the plan is applied."""

    name: str
    current: Model | None
    new: list[VersionRef] = field(default_factory=list)
    entries: list[VersionRef | None] = field(default_factory=list)
    aliases: dict[str, VersionRef] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return self.current.latest_version if self.current else 0


@dataclass(frozen=True)
class _Artifact:
    """A version entry whose files exist, with its digest and any version holding it."""

    name: str
    spec: VersionSpec
    path: Path
    flavor: str
    sample: Path | None
    digest: str
    known: VersionRef | None

    def step(self, ref: VersionRef, model: ModelSpec) -> VersionStep:
        if ref.number is not None:
            change = Change("version", "unchanged", f"{self.name} {ref.show()}", self.spec.path)
        else:
            detail = f"{self.spec.path} ({self.flavor}, sha256 {self.digest[:12]})"
            change = Change("version", "create", f"{self.name} {ref.show()}", detail)
        return VersionStep(change, ref, model, self.spec, self.path, self.flavor, self.sample)


class _Planner:
    """Builds a plan phase by phase, gathering every error before raising."""

    def __init__(
        self, client: Client, config: ConfigFile, base_dir: Path, source: SourceMap
    ) -> None:
        self.client = client
        self.config = config
        self.base_dir = base_dir
        self.source = source
        self.errors: list[tuple[int, str]] = []
        self.states: dict[str, _ModelState] = {}
        self.slots = 0
        self.views = FeatureViewStore(client.registry.engine)
        self._registry_views: set[str] | None = None

    def build(self) -> Plan:
        models = [self._model(name, spec) for name, spec in self.config.models.items()]
        versions = [
            s for name, spec in self.config.models.items() for s in self._versions(name, spec)
        ]
        aliases = [
            s for name, spec in self.config.models.items() for s in self._aliases(name, spec)
        ]
        views = self._feature_views()
        deployments = self._deployments()
        jobs = self._batch_jobs()
        if self.errors:
            lines = [message for _, message in sorted(self.errors, key=lambda e: e[0])]
            raise InvalidConfig("\n".join(lines))
        steps: list[Step] = [
            *models,
            *versions,
            *aliases,
            *views,
            *deployments,
            *self._alerting(),
            *jobs,
        ]
        return Plan(steps=tuple(steps), file=self.source.file)

    def _alerting(self) -> list[AlertingStep]:
        """The alerting document, when the file has an ``alerting:`` section."""
        spec = self.config.alerting
        if spec is None:
            return []
        from modelport.alerting.watchconfig import DOCUMENT
        from modelport.registry.watching import WatchStore

        body = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
        current = WatchStore(self.client.registry.engine).get_document(DOCUMENT)
        rules = len(spec.rules)
        detail = f"{rules} rule(s), {len(spec.receivers)} receiver(s)"
        if current is None:
            return [AlertingStep(Change("alerting", "create", "alerting", detail), body)]
        action: Action = "unchanged" if current[0] == body else "update"
        return [AlertingStep(Change("alerting", action, "alerting", detail), body)]

    def _batch_jobs(self) -> list[BatchJobStep]:
        """The batch jobs, when the file has a ``batch:`` section: it lists every job,
        so the registry's jobs it does not list are removed."""
        if self.config.batch is None:
            return []
        from modelport.registry.batch import BatchStore

        current = {
            (j.environment, j.name): j.spec
            for j in BatchStore(self.client.registry.engine).list_jobs()
        }
        steps = []
        for name, spec in self.config.batch.items():
            job = self._job(name, spec)
            if job is None:
                continue
            before = current.pop((job.env, name), None)
            target = f"{job.env}/{name}"
            if before is None:
                change = Change("batch", "create", target, batch_config.summary(job, self._shown))
            elif before == job:
                change = Change(
                    "batch", "unchanged", target, batch_config.summary(job, self._shown)
                )
            else:
                detail = "; ".join(batch_config.differences(before, job, self._shown))
                change = Change("batch", "update", target, detail)
            steps.append(BatchJobStep(change, job.env, name, job))
        for (env, name), gone in current.items():
            change = Change("batch", "delete", f"{env}/{name}", f"{gone.model}; not in the file")
            steps.append(BatchJobStep(change, env, name, None))
        return steps

    def _job(self, name: str, spec: batch_config.BatchJobSpec) -> JobSpec | None:
        """The job as the registry will hold it: local paths made absolute from the YAML
        file's folder (the server reads them from wherever it runs); its model and
        feature views known here or in the registry."""
        loc: Loc = ("batch", name)
        model = parse_model_uri(spec.model).name
        known = model in self.config.models or self._state(model).current is not None
        if not known:
            self._error(
                (*loc, "model"), f"model {model!r} is neither in the registry nor in this file"
            )
        unknown = [(i, v) for i, v in enumerate(spec.features) if not self._view_known(v)]
        for i, view in unknown:
            self._error(
                (*loc, "features", i),
                f"feature view {view!r} is neither in the registry nor in this file's `features:`",
            )
        if not known or unknown:
            return None
        job = spec.job(name)
        return replace(job, input=self._absolute(job.input), output=self._absolute(job.output))

    def _absolute(self, path: str) -> str:
        if "://" in path or Path(path).is_absolute():
            return path
        return str((self.base_dir / path).resolve())

    def _error(self, loc: Loc, message: str) -> None:
        self.errors.append((self.source.line_of(loc), self.source.error(loc, message)))

    def _state(self, name: str) -> _ModelState:
        if name not in self.states:
            try:
                current: Model | None = self.client.registry.get_model(name)
            except NotFound:
                current = None
            aliases = {
                a: VersionRef(name, number=n)
                for a, n in (current.aliases if current else {}).items()
            }
            self.states[name] = _ModelState(name, current, aliases=aliases)
        return self.states[name]

    # -- models --

    def _model(self, name: str, spec: ModelSpec) -> ModelStep:
        current = self._state(name).current
        wanted = {
            "owner": spec.owner,
            "team": spec.team,
            "description": spec.description,
            "tags": spec.tags,
        }
        if current is None:
            detail = ", ".join(f"{k} {_show(v)}" for k, v in wanted.items() if v is not None)
            return ModelStep(Change("model", "create", name, detail), name, spec)
        diffs = [
            f"{key}: {_show(getattr(current, key))} -> {_show(value)}"
            for key, value in wanted.items()
            if value is not None and getattr(current, key) != value
        ]
        if diffs:
            return ModelStep(Change("model", "update", name, "; ".join(diffs)), name, spec)
        return ModelStep(Change("model", "unchanged", name, f"owner {spec.owner}"), name, spec)

    # -- versions --

    def _versions(self, name: str, spec: ModelSpec) -> list[VersionStep]:
        """One step per readable entry; new ones are labelled v(new), or v(new 1), v(new 2)."""
        state = self._state(name)
        found = [self._artifact(name, index, v) for index, v in enumerate(spec.versions)]
        several = len({f.digest for f in found if f and f.known is None}) > 1
        by_hash: dict[str, VersionRef] = {}
        steps = []
        for entry in found:
            if entry is None:
                state.entries.append(None)
                continue
            ref = by_hash.get(entry.digest) or entry.known
            if ref is None:
                label = f"v(new {len(state.new) + 1})" if several else "v(new)"
                ref = VersionRef(name, slot=self.slots, label=label)
                self.slots += 1
                state.new.append(ref)
            by_hash[entry.digest] = ref
            state.entries.append(ref)
            steps.append(entry.step(ref, spec))
        return steps

    def _artifact(self, name: str, index: int, spec: VersionSpec) -> _Artifact | None:
        """Check a version entry's files; look its artifact up by hash."""
        loc: Loc = ("models", name, "versions", index)
        path = self._existing(spec.path, (*loc, "path"), "artifact")
        sample = self._sample(spec, (*loc, "sample"))
        if path is None:
            return None
        flavor = self._flavor(path, spec, loc)
        if flavor is None:
            return None
        digest, _ = sha256_path(path)
        found = self.client.registry.find_version_by_hash(name, digest)
        known = VersionRef(name, number=found.version) if found else None
        if known is None and spec.sample is None:
            self._error(
                (*loc, "sample"),
                f"{spec.path} is not registered yet and needs `sample:` (training rows that "
                "give its signature and reference profile)",
            )
            return None
        return _Artifact(name, spec, path, flavor, sample, digest, known)

    def _existing(self, relative: str, loc: Loc, what: str) -> Path | None:
        path = self.base_dir / relative
        if not path.exists():
            self._error(loc, f"{what} {relative} does not exist (looked for {path.resolve()})")
            return None
        return path

    def _sample(self, spec: VersionSpec, loc: Loc) -> Path | None:
        if spec.sample is None:
            return None
        path = self._existing(spec.sample, loc, "sample")
        if path is not None and path.suffix.lower() not in SAMPLE_READERS:
            self._error(loc, f"sample {spec.sample} must be a .csv or .parquet file")
            return None
        return path

    def _flavor(self, path: Path, spec: VersionSpec, loc: Loc) -> str | None:
        """The artifact's flavor; an error if unknown, or if it runs code and is not trusted."""
        if spec.flavor is not None and spec.flavor not in RUNTIMES:
            known = ", ".join(RUNTIMES)
            self._error((*loc, "flavor"), f"unknown flavor {spec.flavor!r} (known: {known})")
            return None
        try:
            flavor = spec.flavor or detect_flavor(path)
        except ModelportError as exc:
            self._error((*loc, "path"), f"{exc.message} (set `flavor:`)")
            return None
        if needs_trust(path, flavor) and not spec.trust:
            self._error(
                (*loc, "trust"),
                f"{spec.path} is a {flavor} artifact whose loading runs arbitrary Python code; "
                "check where it comes from, then set `trust: true`",
            )
            return None
        return flavor

    # -- aliases --

    def _aliases(self, name: str, spec: ModelSpec) -> list[AliasStep]:
        state = self._state(name)
        wanted: list[tuple[str, VersionRef]] = []
        for index, version in enumerate(spec.versions):
            ref = state.entries[index] if index < len(state.entries) else None
            if ref is not None:
                wanted.extend((alias, ref) for alias in version.aliases)
        for alias, number in spec.aliases.items():
            found = self._numbered(state, number, ("models", name, "aliases", alias))
            if found is not None:
                wanted.append((alias, found))
        steps = []
        for alias, ref in wanted:
            before = state.aliases.get(alias)
            state.aliases[alias] = ref
            steps.append(AliasStep(_alias_change(name, alias, before, ref), name, alias, ref))
        return steps

    def _numbered(self, state: _ModelState, number: int, loc: Loc) -> VersionRef | None:
        """Version ``number`` of a model, counting the versions this plan registers."""
        if number <= state.latest:
            return VersionRef(state.name, number=number)
        if number - state.latest <= len(state.new):
            return state.new[number - state.latest - 1]
        have = f"versions 1..{state.latest}" if state.latest else "no versions"
        adds = f" and this file adds {len(state.new)}" if state.new else ""
        self._error(loc, f"model {state.name!r} has no version {number} (it has {have}{adds})")
        return None

    # -- feature views --

    def _feature_views(self) -> list[FeatureViewStep]:
        steps = []
        for name, spec in self.config.features.items():
            view = self._view(name, spec)
            if view is None:
                continue
            try:
                current: FeatureView | None = self.views.get(name)
            except NotFound:
                current = None
            if current is None:
                change = Change("features", "create", name, summary(view, self._shown))
            elif current.to_dict() == view.to_dict():
                change = Change("features", "unchanged", name, summary(view, self._shown))
            else:
                detail = "; ".join(differences(current, view, self._shown))
                change = Change("features", "update", name, detail)
            steps.append(FeatureViewStep(change, view))
        return steps

    def _view(self, name: str, spec: FeatureViewSpec) -> FeatureView | None:
        """The view as the registry will hold it: a local source path made absolute from
        the YAML file's folder (the server reads it from wherever it runs)."""
        view = spec.view(name)
        source = view.source
        if not isinstance(source, BatchSource) or source.path is None or "://" in source.path:
            return view
        loc: Loc = ("features", name, "source", "path")
        if any(c in source.path for c in "*?["):  # a glob: DuckDB reads what matches
            path: Path | None = self.base_dir / source.path
        else:
            path = self._existing(source.path, loc, "source")
        if path is None:
            return None
        return replace(view, source=replace(source, path=str(path.resolve())))

    def _shown(self, path: str) -> str:
        """A source path as the file writes it: relative to the file's folder if inside."""
        try:
            return str(Path(path).relative_to(self.base_dir.resolve()))
        except ValueError:
            return path

    def _view_known(self, name: str) -> bool:
        """Whether the file declares view ``name`` or the registry has it."""
        if name in self.config.features:
            return True
        if self._registry_views is None:
            self._registry_views = {v.name for v in self.views.list()}
        return name in self._registry_views

    # -- deployments --

    def _deployments(self) -> list[DeploymentStep]:
        steps = []
        reason = f"modelport apply {self.source.file}" if self.source.file else "modelport apply"
        for env, environment in self.config.environments.items():
            for endpoint, spec in environment.endpoints.items():
                step = self._deployment(env, endpoint, spec, reason)
                if step is not None:
                    steps.append(step)
        return steps

    def _deployment(
        self, env: str, endpoint: str, spec: EndpointSpec, reason: str
    ) -> DeploymentStep | None:
        loc: Loc = ("environments", env, "endpoints", endpoint)
        variants = self._variants(spec, loc)
        unknown = [(i, name) for i, name in enumerate(spec.features) if not self._view_known(name)]
        for i, name in unknown:
            self._error(
                (*loc, "features", i),
                f"feature view {name!r} is neither in the registry nor in this file's `features:`",
            )
        if variants is None or unknown:
            return None
        wanted = PlannedDeployment(
            variants=variants,
            serving=spec.serving.options(),
            routing=spec.routing.routing(),
            rollout=spec.rollout.policy(),
            follow=spec.followed(),
            features=tuple(spec.features),
            precomputed=spec.precomputed.precomputed() if spec.precomputed else None,
        )
        target = f"{env}/{endpoint}"
        try:
            current: Deployment | None = self.client.registry.get_deployment(env, endpoint)
        except NotFound:
            current = None
        roll_to: PlannedVariant | None = None
        if _rolled_out(spec, current, wanted):
            assert current is not None
            roll_to = wanted.variants[0]
            served = tuple(PlannedVariant.of(v) for v in current.spec.variants)
            settings = _deployment_change(target, current, replace(wanted, variants=served))
            policy = wanted.rollout
            steps = ",".join("shadow" if p == 0 else f"{p:g}" for p in policy.steps)
            rolling = (
                f"roll out {describe(served)} -> {describe((roll_to,), sources=True)} "
                f"(steps {steps}, judged every {format_duration(policy.interval_s)})"
            )
            detail = rolling if settings.action == "unchanged" else f"{rolling}; {settings.detail}"
            change = Change("deployment", "update", target, detail)
            wanted = replace(wanted, variants=served)
        elif current is None or wanted.follow is None or current.spec.follow != wanted.follow:
            change = _deployment_change(target, current, wanted)
        else:
            # An endpoint already following the alias is moved by the server, which rolls
            # each new version out: its variants are the server's to change, not the file's.
            served = tuple(PlannedVariant.of(v) for v in current.spec.variants)
            change = _deployment_change(target, current, replace(wanted, variants=served))
            alias = variants[0].ref
            if PlannedVariant.of(current.spec.primary).ref != alias:
                note = f"{wanted.follow} -> {alias.show()}, rolled out by the server"
                change = replace(change, detail=f"{change.detail}; {note}")
            wanted = replace(wanted, variants=served)
        revision = current.revision if current else 0
        return DeploymentStep(change, env, endpoint, wanted, reason, revision, roll_to)

    def _variants(self, spec: EndpointSpec, loc: Loc) -> tuple[PlannedVariant, ...] | None:
        """The versions an endpoint's URIs will name; each version listed at most once."""
        planned: list[PlannedVariant] = []
        first: dict[VersionRef, Loc] = {}
        listed = spec.listed()
        for where, variant in listed:
            ref = self._resolve(variant.model, (*loc, *where))
            if ref is None:
                continue
            if ref in first:
                self._error(
                    (*loc, *where),
                    f"{variant.model} is {ref.model} {ref.show()}, which "
                    f"{dotted(first[ref])} names already; list a version once",
                )
                continue
            first[ref] = where
            weight = 0.0 if variant.weight is None else variant.weight  # a shadow has none
            planned.append(PlannedVariant(ref, variant.model, weight, variant.shadow))
        return tuple(planned) if len(planned) == len(listed) else None

    def _resolve(self, uri: str, loc: Loc) -> VersionRef | None:
        """The version ``uri`` will name once the plan is applied."""
        ref = parse_model_uri(uri)
        state = self._state(ref.name)
        if state.current is None and ref.name not in self.config.models:
            self._error(loc, f"model {ref.name!r} is neither in the registry nor in this file")
            return None
        if ref.alias is not None:
            found = state.aliases.get(ref.alias)
            if found is None:
                self._error(
                    loc,
                    f"model {ref.name!r} has no alias {ref.alias!r}; set it under "
                    f"models.{ref.name}.versions[].aliases or models.{ref.name}.aliases",
                )
            return found
        if ref.version is not None:
            return self._numbered(state, ref.version, loc)
        if state.new:
            return state.new[-1]
        if state.latest:
            return VersionRef(ref.name, number=state.latest)
        self._error(loc, f"model {ref.name!r} has no versions yet")
        return None


def _deployment_change(
    target: str, current: Deployment | None, wanted: PlannedDeployment
) -> Change:
    """Create, update or unchanged, with what differs: variants (shares, shadows, source
    URIs), then serving, routing, rollout policy and the followed alias."""
    shown = describe(wanted.variants, sources=True)
    if current is None:
        return Change("deployment", "create", target, _joined(shown, setting_changes(None, wanted)))
    if wanted.numbered and wanted.spec({}).to_dict() == current.spec.to_dict():
        return Change(
            "deployment", "unchanged", target, _joined(shown, setting_changes(None, wanted))
        )
    before = [PlannedVariant.of(v) for v in current.spec.variants]
    after = list(wanted.variants)
    parts = setting_changes(current.spec, wanted)
    if _sourceless(before) == _sourceless(after) and before != after:
        pairs = zip(before, after, strict=True)
        moved = [f"{b.source} -> {a.source}" for b, a in pairs if b.source != a.source]
        parts.insert(0, f"{describe(before)}, source {', '.join(moved)}")
    elif before != after:
        parts.insert(0, f"{describe(before)} -> {shown}")
    return Change("deployment", "update", target, "; ".join(parts))


def _rolled_out(spec: EndpointSpec, current: Deployment | None, wanted: PlannedDeployment) -> bool:
    """Whether a change is made as a rollout: the endpoint says how (``rollout:``), is
    deployed, and moves from one version alone to another alone."""
    if "rollout" not in spec.model_fields_set or current is None or wanted.follow is not None:
        return False
    before = current.spec.variants
    after = wanted.variants
    if len(before) != 1 or len(after) != 1 or after[0].shadow:
        return False
    return PlannedVariant.of(before[0]).ref != after[0].ref


def _sourceless(variants: list[PlannedVariant]) -> list[PlannedVariant]:
    return [replace(v, source=None) for v in variants]


def _joined(first: str, rest: list[str]) -> str:
    return "; ".join([first, *rest])


def _alias_change(name: str, alias: str, before: VersionRef | None, ref: VersionRef) -> Change:
    target = f"{name}@{alias}"
    if before is None:
        return Change("alias", "create", target, f"-> {ref.show()}")
    if before == ref and ref.number is not None:
        return Change("alias", "unchanged", target, f"-> {ref.show()}")
    return Change("alias", "update", target, f"{before.show()} -> {ref.show()}")


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return "-" if value in (None, "") else str(value)


# -- applying -----------------------------------------------------------------

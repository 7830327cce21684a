"""The `modelport.yaml` format, and loading it with errors that point at a line.

A file declares models (owner, metadata, artifacts to register, aliases), feature
views (`modelport.config.features`) and, per environment, what each endpoint serves:
one model URI, weighted variants and shadows, or an alias to follow, with its routing
and rollout policy and the feature views joined onto its requests. `load_config` validates
it and returns a `SourceMap` so that every later error (a missing artifact found
while planning, say) can name the file, line and column it comes from.

Example::

    config, source = load_config("modelport.yaml")
    source.describe(("models", "fraud", "owner"))
    # 'modelport.yaml:3:5: models.fraud.owner'
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from modelport.alerting.routing import Duration
from modelport.alerting.watchconfig import AlertingSpec
from modelport.config.batch import Jobs
from modelport.config.features import FeatureViewSpec, ViewName, Views
from modelport.errors import InvalidConfig, InvalidInput
from modelport.registry import RolloutPolicy, Routing, ServingOptions, Variant
from modelport.registry.entities import MAX_BATCH_SIZE, SHADOW_STEP, Precomputed
from modelport.uri import check_name, parse_model_uri

#: Where a value sits in the file: mapping keys and list indices from the root.
Loc = tuple[str | int, ...]

#: pydantic's marker in a ``loc`` for an error in a mapping's key rather than its value.
_KEY_MARKER = "[key]"

#: Alias names that would read as a version in a URI.
_RESERVED_ALIASES = ("latest",)


def _name(kind: str) -> Any:
    """A validator applying `modelport.uri.check_name` rules for ``kind`` names."""

    def check(value: str) -> str:
        try:
            return check_name(kind, value)
        except InvalidInput as exc:
            raise PydanticCustomError("invalid_name", "{message}", {"message": str(exc)}) from None

    return AfterValidator(check)


def _check_alias(value: str) -> str:
    if value.isdigit() or value in _RESERVED_ALIASES:
        raise PydanticCustomError(
            "reserved_alias",
            "{message}",
            {"message": f"alias {value!r} would be read as a version; use a word like champion"},
        )
    return value


def _check_uri(value: str) -> str:
    try:
        parse_model_uri(value)
    except InvalidInput as exc:
        raise PydanticCustomError("invalid_uri", "{message}", {"message": str(exc)}) from None
    return value


def _check_alias_uri(value: str) -> str:
    if parse_model_uri(value).alias is None:
        raise PydanticCustomError(
            "invalid_uri",
            "{message}",
            {
                "message": f"follow takes an alias URI like models:/NAME@ALIAS, not {value!r} "
                "(to serve one fixed version, write `model:`)"
            },
        )
    return value


#: How ``rollout.steps`` writes step 0: a copy of traffic, no live share.
SHADOW = "shadow"


def _step(value: Any) -> Any:
    """``shadow`` -> 0; a number stays a number (0 itself is written ``shadow``)."""
    if value == SHADOW:
        return SHADOW_STEP
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "invalid_rollout",
            "{message}",
            {"message": f"a step is `shadow` or a percent of live traffic, got {value!r}"},
        )
    if value == 0:
        raise PydanticCustomError(
            "invalid_rollout", "{message}", {"message": "write step 0 as `shadow`"}
        )
    return value


def _policy_allows(name: str) -> Any:
    """A validator putting one `RolloutPolicy` field through the policy's own checks."""

    def check(value: Any) -> Any:
        try:
            given: dict[str, Any] = {name: tuple(value) if name == "steps" else value}
            RolloutPolicy(**given)
        except ValueError as exc:
            raise PydanticCustomError(
                "invalid_rollout", "{message}", {"message": str(exc)}
            ) from None
        return value

    return AfterValidator(check)


ModelName = Annotated[str, _name("model")]
EnvironmentName = Annotated[str, _name("environment")]
EndpointName = Annotated[str, _name("endpoint")]
AliasName = Annotated[str, _name("alias"), AfterValidator(_check_alias)]
ModelUri = Annotated[str, AfterValidator(_check_uri)]
AliasUri = Annotated[str, AfterValidator(_check_uri), AfterValidator(_check_alias_uri)]
RolloutStep = Annotated[
    float, BeforeValidator(_step, json_schema_input_type=Literal["shadow"] | float)
]
Tags = dict[str, str]


class _Strict(BaseModel):
    """Unknown fields are errors; numbers written where text is expected become text."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)


class VersionSpec(_Strict):
    """An artifact to register as a version; registered once, recognised by its SHA-256."""

    path: str = Field(
        min_length=1, description="Artifact file or folder, relative to the YAML file's folder."
    )
    flavor: str | None = Field(
        default=None, description="Runtime flavor (sklearn, xgboost, ...); detected when absent."
    )
    sample: str | None = Field(
        default=None,
        description="CSV or Parquet file of training rows: gives the signature and the "
        "reference profile drift is measured against.",
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Offline metrics.")
    tags: Tags = Field(default_factory=dict, description="Free-form labels for this version.")
    description: str = Field(default="", description="What this version is.")
    trust: StrictBool = Field(
        default=False,
        description="Accept that loading this artifact runs code (pickle, custom models).",
    )
    aliases: list[AliasName] = Field(
        default_factory=list, description="Aliases to point at this version, e.g. [champion]."
    )


class ModelSpec(_Strict):
    """A model: who owns it, what it is, which versions and aliases it has.

    Metadata fields left out (team, description, tags) are left as the registry has them.
    """

    owner: str = Field(min_length=1, description="Who is responsible (and gets paged).")
    team: str | None = Field(default=None, description="Owning team.")
    description: str | None = Field(default=None, description="What the model does.")
    tags: Tags | None = Field(default=None, description="Free-form labels for the model.")
    versions: list[VersionSpec] = Field(
        default_factory=list, description="Artifacts to register, idempotent by SHA-256."
    )
    aliases: dict[AliasName, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="Aliases pointed at explicit version numbers."
    )


class ServingSpec(_Strict):
    """How an endpoint runs its model (see `modelport.registry.ServingOptions`)."""

    runtime: Literal["auto", "native", "compiled"] = Field(
        default="auto",
        description="compiled: the verified ONNX form; native: the flavor's library; "
        "auto: compiled when the version has one.",
    )
    batching: bool = Field(default=True, description="Coalesce concurrent requests.")
    max_batch_size: int = Field(
        default=MAX_BATCH_SIZE, ge=1, description="Most rows per model call."
    )
    max_wait_ms: float = Field(
        default=0.0, ge=0, description="Longest a batch's first request waits for company."
    )
    max_queue: int | None = Field(
        default=None,
        ge=1,
        description="Most requests waiting for the model per worker; more are shed at once "
        "(503, Retry-After: 1). Default: 16 x max_batch_size.",
    )
    max_rows_per_request: int | None = Field(
        default=None,
        ge=1,
        description="Most rows in one request (413 above it); default: the server's "
        "MODELPORT_MAX_ROWS_PER_REQUEST.",
    )

    def options(self) -> ServingOptions:
        return ServingOptions(**self.model_dump())


class VariantSpec(_Strict):
    """One version an endpoint serves: live with a weight, or a shadow."""

    model: ModelUri = Field(
        description="Model URI: models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest."
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        description="A live variant's weight; its share of traffic is its weight over the "
        "sum of live weights. A shadow has none.",
    )
    shadow: StrictBool = Field(
        default=False,
        description="Get a copy of live requests off the hot path; answers are only logged.",
    )

    @model_validator(mode="after")
    def _weighted_unless_shadow(self) -> VariantSpec:
        if self.shadow and self.weight is not None:
            _refuse(self, [(("weight",), "a shadow gets a copy of traffic, not a share: drop it")])
        if not self.shadow and self.weight is None:
            _refuse(self, [(("weight",), "a live variant needs a weight (or `shadow: true`)")])
        return self


class RoutingSpec(_Strict):
    """How a request picks a live variant (see `modelport.registry.Routing`)."""

    sticky_header: str | None = Field(
        default=None,
        min_length=1,
        description="Requests with the same value of this header get the same variant.",
    )
    sticky_field: str | None = Field(
        default=None,
        min_length=1,
        description="Requests with the same value of this input field (first row) get the "
        "same variant.",
    )

    @model_validator(mode="after")
    def _one_key(self) -> RoutingSpec:
        if self.sticky_header is not None and self.sticky_field is not None:
            _refuse(self, [(("sticky_field",), "set sticky_header or sticky_field, not both")])
        return self

    def routing(self) -> Routing:
        return Routing(sticky_header=self.sticky_header, sticky_field=self.sticky_field)


class RolloutSpec(_Strict):
    """How the endpoint moves to a new version; fields left out keep the defaults of
    `modelport.registry.RolloutPolicy`, which also checks them."""

    steps: Annotated[list[RolloutStep], _policy_allows("steps")] | None = Field(
        default=None,
        description="The candidate's percent of live traffic at each step, ending at 100; "
        "`shadow` first for a copy of traffic and no share.",
    )
    interval: Annotated[Duration, _policy_allows("interval_s")] | None = Field(
        default=None, description="How long each step lasts before it is judged: 30s, 5m, 1h."
    )
    min_requests: int | None = Field(
        default=None, ge=0, description="Candidate requests a step needs before it is judged."
    )
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Highest candidate error rate that passes."
    )
    max_p99_ratio: float | None = Field(
        default=None, gt=0, description="Highest candidate/live p99 latency ratio that passes."
    )
    max_disagreement: float | None = Field(
        default=None, ge=0, le=1, description="Highest share of differing predictions."
    )
    max_prediction_psi: float | None = Field(
        default=None, ge=0, description="Highest PSI between candidate and live predictions."
    )
    max_performance_drop: float | None = Field(
        default=None, ge=0, description="Largest drop of the labelled metric that passes."
    )
    min_labels: int | None = Field(
        default=None, ge=0, description="Labels a step needs before performance is judged."
    )

    @model_validator(mode="after")
    def _a_policy(self) -> RolloutSpec:
        try:
            self.policy()
        except ValueError as exc:
            _refuse(self, [((), str(exc))])
        return self

    def policy(self) -> RolloutPolicy:
        given = self.model_dump(exclude_none=True)
        if "steps" in given:
            given["steps"] = tuple(given["steps"])
        if "interval" in given:
            given["interval_s"] = given.pop("interval")
        return RolloutPolicy(**given)


def _switched_on(value: Any) -> Any:
    """``precomputed: true`` -> the defaults; ``false`` -> off."""
    if value is True:
        return {}
    return None if value is False else value


class PrecomputedSpec(_Strict):
    """Answer from published batch predictions (see `modelport.registry.Precomputed`)."""

    fallback: Literal["online", "none"] = Field(
        default="none",
        description="A key the published run lacks: online predicts it with the deployed "
        "model; none answers 404.",
    )
    keys: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="The request fields holding the key, one per id column of the run; "
        "default: the run's id columns.",
    )

    def precomputed(self) -> Precomputed:
        return Precomputed(fallback=self.fallback, keys=tuple(self.keys))


class EndpointSpec(_Strict):
    """What an endpoint serves: exactly one of ``model``, ``variants`` or ``follow``."""

    model: ModelUri | None = Field(
        default=None,
        description="One version to serve: models:/NAME/VERSION, models:/NAME@ALIAS (resolved "
        "when applied) or models:/NAME/latest.",
    )
    variants: list[VariantSpec] | None = Field(
        default=None, description="Live variants splitting traffic by weight, and shadows."
    )
    follow: AliasUri | None = Field(
        default=None,
        description="Serve what an alias points at (models:/NAME@ALIAS); when the alias "
        "moves, the server rolls the new version out with `rollout`.",
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec, description="Runtime and batching settings."
    )
    routing: RoutingSpec = Field(
        default_factory=RoutingSpec, description="Random by weight, or sticky by a key."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How a new version is rolled out and judged."
    )
    features: list[ViewName] = Field(
        default_factory=list,
        description="Feature views (this file's `features:` or the registry's) whose values "
        "the server joins onto each request by entity key.",
    )
    precomputed: Annotated[PrecomputedSpec | None, BeforeValidator(_switched_on)] = Field(
        default=None,
        description="Answer requests by key from the batch run published for the endpoint "
        "(`true`, or fallback and keys); the model serves keys the run lacks.",
    )

    @model_validator(mode="after")
    def _serves_one_way(self) -> EndpointSpec:
        given = [f for f in _SERVES if getattr(self, f) is not None]
        if not given:
            _refuse(self, [((), "say what it serves: one of `model`, `variants` or `follow`")])
        problems: list[tuple[Loc, str]] = [
            ((f,), f"`{given[0]}` is set too; write one of `model`, `variants` or `follow`")
            for f in given[1:]
        ]
        if self.variants is not None:
            problems.extend(_variant_problems(self.variants))
        problems.extend(
            (("features", i), f"{name} is listed twice; list a view once")
            for i, name in enumerate(self.features)
            if name in self.features[:i]
        )
        _refuse(self, problems)
        return self

    def listed(self) -> list[tuple[Loc, VariantSpec]]:
        """Every variant with the field its URI is in; `model` and `follow` give one."""
        if self.variants is not None:
            return [(("variants", i, "model"), v) for i, v in enumerate(self.variants)]
        field, uri = ("model", self.model) if self.model is not None else ("follow", self.follow)
        assert uri is not None, "validation makes sure one of model, variants, follow is set"
        # the one live variant gets the weight `DeploymentSpec.single` gives it
        return [((field,), VariantSpec(model=uri, weight=Variant.weight))]

    def followed(self) -> str | None:
        """``fraud@champion`` for ``follow: models:/fraud@champion``."""
        if self.follow is None:
            return None
        ref = parse_model_uri(self.follow)
        return f"{ref.name}@{ref.alias}"


#: The fields an endpoint may say what it serves with; exactly one is set.
_SERVES = ("model", "variants", "follow")


def _variant_problems(variants: list[VariantSpec]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if all(v.shadow for v in variants):
        problems.append((("variants",), "needs a live variant (one without `shadow: true`)"))
    first: dict[Any, int] = {}
    for index, variant in enumerate(variants):
        ref = parse_model_uri(variant.model)
        if ref in first:
            message = f"{variant.model} is listed twice; first as variants[{first[ref]}]"
            problems.append((("variants", index, "model"), message))
        first.setdefault(ref, index)
    return problems


def _refuse(model: BaseModel, problems: list[tuple[Loc, str]]) -> None:
    """Raise every problem found in ``model``, each at its field, as one error."""
    if problems:
        raise ValidationError.from_exception_data(
            type(model).__name__,
            [
                InitErrorDetails(
                    type=PydanticCustomError("invalid_endpoint", "{message}", {"message": m}),
                    loc=loc,
                    input=None,
                )
                for loc, m in problems
            ],
        )


class EnvironmentSpec(_Strict):
    """One environment (staging, production, ...) and its endpoints."""

    endpoints: dict[EndpointName, EndpointSpec] = Field(
        default_factory=dict, description="Endpoint name -> what it serves."
    )


class ConfigFile(_Strict):
    """A whole `modelport.yaml`."""

    models: dict[ModelName, ModelSpec] = Field(default_factory=dict, description="Models by name.")
    features: Views = Field(
        default_factory=dict,
        description="Feature views by name (see modelport.config.features); endpoints join "
        "them onto requests.",
    )
    environments: dict[EnvironmentName, EnvironmentSpec] = Field(
        default_factory=dict, description="Environments by name."
    )
    alerting: AlertingSpec | None = Field(
        default=None,
        description="Alert rules, receivers and routes, drift thresholds "
        "(see docs/monitoring.md); left out, the applied document stays as it is.",
    )
    batch: Jobs | None = Field(
        default=None,
        description="Batch prediction jobs by name, each for one environment, run on a cron "
        "schedule or on demand (see docs/batch.md); the section lists every job, so a job "
        "it no longer lists is removed; left out, the jobs stay as they are.",
    )


# -- source positions ---------------------------------------------------------


def dotted(loc: Loc) -> str:
    """``("models", "fraud", "versions", 0, "path")`` -> ``models.fraud.versions[0].path``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _key(loc: Loc) -> tuple[str, ...]:
    return tuple(str(p) for p in loc if p != _KEY_MARKER)


@dataclass(frozen=True)
class SourceMap:
    """Line and column (1-based) of every key and list item in a YAML file.

    A mapping entry is placed at its key, a list item at its first character. Looking
    up a path that is not in the file (a missing field) gives its nearest parent.
    """

    file: str | None
    positions: dict[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)
    duplicates: tuple[tuple[Loc, tuple[int, int]], ...] = ()

    @classmethod
    def empty(cls) -> SourceMap:
        """A map with no file: errors name the field path only."""
        return cls(file=None)

    @classmethod
    def from_node(cls, file: str, node: yaml.Node | None) -> SourceMap:
        positions: dict[tuple[str, ...], tuple[int, int]] = {(): (1, 1)}
        duplicates: list[tuple[Loc, tuple[int, int]]] = []
        if node is not None:
            positions[()] = _position(node)
            for loc, child, is_duplicate in _entries(node, (), set()):
                if is_duplicate:
                    duplicates.append((loc, _position(child)))
                else:
                    positions[_key(loc)] = _position(child)
        return cls(file=file, positions=positions, duplicates=tuple(duplicates))

    def position(self, loc: Loc) -> tuple[int, int] | None:
        """Where ``loc`` is written, or its nearest parent that is."""
        key = _key(loc)
        for end in range(len(key), -1, -1):
            if key[:end] in self.positions:
                return self.positions[key[:end]]
        return None

    def describe(self, loc: Loc) -> str:
        """``file:line:col: dotted.path`` for ``loc`` (only the path without a file)."""
        path = dotted(tuple(p for p in loc if p != _KEY_MARKER))
        where = self.position(loc)
        if self.file is None or where is None:
            return path
        return f"{self.file}:{where[0]}:{where[1]}: {path}"

    def error(self, loc: Loc, message: str) -> str:
        """One error line: ``file:line:col: dotted.path: message``."""
        return f"{self.describe(loc)}: {message}"

    def line_of(self, loc: Loc) -> int:
        where = self.position(loc)
        return where[0] if where else 0


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _entries(node: yaml.Node, loc: Loc, seen: set[int]) -> Iterator[tuple[Loc, yaml.Node, bool]]:
    """Every (path, node-to-point-at, is-duplicate-key) below ``node``, depth first."""
    if id(node) in seen:  # an anchor that refers to itself
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = (*loc, name)
            duplicate = name in keys and name != "<<"
            keys.add(name)
            yield child, key_node, duplicate
            if not duplicate:
                yield from _entries(value, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield (*loc, index), item, False
            yield from _entries(item, (*loc, index), seen)


# -- loading --------------------------------------------------------------------


def load_config(path: str | Path) -> tuple[ConfigFile, SourceMap]:
    """Read and validate a `modelport.yaml`.

    Raises `InvalidConfig` listing every problem found, one per line, each as
    ``file:line:col: field.path: what is wrong``.

    Example::

        config, source = load_config("modelport.yaml")
        plan = modelport.config.plan(client, config, Path("."), source=source)
    """
    file = str(path)
    text = _read(Path(path))
    node, data = _parse(file, text)
    source = SourceMap.from_node(file, node)
    errors = [
        (
            line,
            f"{file}:{line}:{col}: {dotted(loc)}: duplicate key (the first one is on line "
            f"{source.line_of(loc)})",
        )
        for loc, (line, col) in source.duplicates
    ]
    if node is None:
        errors.append(
            (
                1,
                f"{file}:1:1: the file is empty; declare `models:`, `features:` "
                "and/or `environments:`",
            )
        )
        raise _invalid(errors)
    try:
        config = ConfigFile.model_validate(data)
    except ValidationError as exc:
        errors.extend(
            (source.line_of(err["loc"]), source.error(err["loc"], _message(err)))
            for err in exc.errors()
        )
        raise _invalid(errors) from None
    errors.extend(_cross_checks(config, source))
    if errors:
        raise _invalid(errors)
    return config, source


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidConfig(
            f"{path}: no such file", hint="pass the path of a modelport.yaml"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(f"{path}: cannot read it: {exc}") from None


def _parse(file: str, text: str) -> tuple[yaml.Node | None, Any]:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        what = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.context_mark and exc.problem:
            what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise InvalidConfig(
            f"{where}: YAML syntax error: {what}", hint="check indentation, colons and quotes"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"{file}: YAML syntax error: {exc}") from None


def _invalid(errors: list[tuple[int, str]]) -> InvalidConfig:
    """One error holding every problem, one per line, in file order."""
    lines = [message for _, message in sorted(errors, key=lambda e: e[0])]
    return InvalidConfig("\n".join(lines), hint="the format is described in docs/config.md")


#: Error kinds whose message is already written for people (ours, not pydantic's).
_OWN_MESSAGES = (
    "invalid_name",
    "invalid_endpoint",
    "invalid_rollout",
    "invalid_uri",
    "reserved_alias",
    "invalid_duration",
    "invalid_regex",
    "unknown_receiver",
    "invalid_receiver",
    "invalid_route",
    "duplicate_receiver",
    "invalid_url",
    "invalid_feature",
    "invalid_batch",
)


def _message(err: ErrorDetails) -> str:
    """A short, lower-case message for one pydantic error."""
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field" + _suggestion(err["loc"])
    if kind == "missing":
        return "required field is missing"
    if kind in _OWN_MESSAGES:
        return err["msg"]
    if kind in ("model_type", "dict_type"):
        return f"expected a mapping of fields, got {_kind_of(err.get('input'))}"
    msg = err["msg"][:1].lower() + err["msg"][1:]
    value = err.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        msg += f", got {value!r}"
    return msg


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value)
    return type(value).__name__


def _suggestion(loc: Loc) -> str:
    fields = _fields_at(loc[:-1])
    if not fields:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(fields)})"


def _fields_at(loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` in `ConfigFile`, if it is one."""
    tp: Any = ConfigFile
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                return []
            tp = info.annotation
        elif get_origin(tp) in (dict, list):
            tp = get_args(tp)[-1]
        else:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> X; ``X | None`` -> X."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        tp = rest[0] if len(rest) == 1 else tp
    return tp


def _cross_checks(config: ConfigFile, source: SourceMap) -> list[tuple[int, str]]:
    """What one field cannot check alone: each alias set at most once per model."""
    errors: list[tuple[int, str]] = []
    for name, model in config.models.items():
        first: dict[str, Loc] = {}
        for loc, alias in _alias_locs(name, model):
            if alias in first:
                message = (
                    f"alias {alias!r} is set twice; first on line {source.line_of(first[alias])}"
                    f" ({dotted(first[alias])})"
                )
                errors.append((source.line_of(loc), source.error(loc, message)))
            else:
                first[alias] = loc
    return errors


def _alias_locs(name: str, model: ModelSpec) -> Iterator[tuple[Loc, str]]:
    for index, version in enumerate(model.versions):
        for position, alias in enumerate(version.aliases):
            yield ("models", name, "versions", index, "aliases", position), alias
    for alias in model.aliases:
        yield ("models", name, "aliases", alias), alias


__all__ = [
    "ConfigFile",
    "EndpointSpec",
    "EnvironmentSpec",
    "FeatureViewSpec",
    "Loc",
    "ModelSpec",
    "RolloutSpec",
    "RoutingSpec",
    "SourceMap",
    "VariantSpec",
    "VersionSpec",
    "dotted",
    "load_config",
]

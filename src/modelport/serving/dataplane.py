"""The data plane: what an environment's server does, with no HTTP in it.

It keeps the table of endpoints the environment serves, follows the registry for
changes (a new version loads beside the old one and takes over only when ready, so
no request fails during a swap), and answers predictions: validate against the
signature, run the model off the event loop, return typed outputs. REST, the Open
Inference Protocol routes and (later) batch and stream consumers all call it.

With a `PredictionLog`, every answered or failed request of a served endpoint is
recorded there (a reference append; the log writes from its own thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from modelport.artifacts import LocalArtifactStore
from modelport.breaker import CircuitBreaker
from modelport.breaker import Observer as BreakerObserver
from modelport.errors import InvalidInput, ModelportError, NotFound, PayloadTooLarge, Unavailable
from modelport.features.enrich import Enricher
from modelport.features.online import MemoryStore, open_store
from modelport.features.views import FeatureView
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import label_text, new_prediction_ids
from modelport.registry import Deployment, ModelVersion, Registry, Routing, ServingOptions
from modelport.registry.features import FeatureViewStore
from modelport.runtimes.base import Prediction, Runtime
from modelport.runtimes.loading import RuntimeKind, load_runtime, runtime_kind
from modelport.serving.batcher import Batcher, BatchingConfig, BatchObserver, BatchStats
from modelport.serving.pool import ModelPool, VersionKey
from modelport.serving.router import Router
from modelport.serving.shadow import ShadowRunner
from modelport.settings import Settings
from modelport.signature import Columns

if TYPE_CHECKING:
    from modelport.serving.precomputed import PrecomputedPredictions

log = logging.getLogger(__name__)

#: (endpoint, model, version, runtime kind)
VersionKind = tuple[str, str, int, str]
#: Decoded request input: named columns, or positional rows in signature order.
RawInput = Mapping[str, Any] | Sequence[Any]
#: Reads a request header by (lower-case) name; None when absent.
Header = Callable[[str], str | None]


@dataclass
class EndpointState:
    """An endpoint as this server sees it: what it serves now and what is on its way.

    ``versions`` holds every variant's version by variant name (``fraud-v3``), live and
    shadow; ``router`` picks among the live ones.
    """

    deployment: Deployment
    versions: dict[str, ModelVersion]
    router: Router
    pending: Deployment | None = None
    error: str | None = None
    #: the feature views joined onto requests, and why some could not be found
    views: tuple[FeatureView, ...] = ()
    view_error: str | None = None
    #: the runtime kind of each version served, worked out once (asked per request)
    _kinds: dict[tuple[str, int], RuntimeKind] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.deployment.endpoint

    @property
    def version(self) -> ModelVersion:
        """The primary variant's version (the largest live share)."""
        return self.versions[self.deployment.spec.primary.name]

    @property
    def serving(self) -> ServingOptions:
        return self.deployment.spec.serving

    @property
    def routing(self) -> Routing:
        return self.deployment.spec.routing

    def kind(self, version: ModelVersion) -> RuntimeKind:
        key = (version.name, version.version)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = runtime_kind(version, self.serving.runtime)
        return kind

    def runtime_keys(self) -> set[VersionKey]:
        return {(v.name, v.version, self.kind(v)) for v in self.versions.values()}

    def by_number(self, version: int) -> ModelVersion | None:
        """The served version of the primary's model with this number, if any."""
        model = self.deployment.spec.primary.model
        return self.versions.get(f"{model}-v{version}")


@dataclass
class PredictResult:
    endpoint: str
    version: ModelVersion
    prediction: Prediction
    prediction_ids: list[str]
    latency_s: float
    rows: int = field(default=0)
    #: the variant that answered (``fraud-v4``); its version's name and number if unset
    variant: str = ""
    #: more for the answer's body (a precomputed endpoint's: each row's source, the run)
    annotations: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.variant:
            self.variant = f"{self.version.name}-v{self.version.version}"


class DataPlane:
    """Serve every endpoint of one environment."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        artifacts: LocalArtifactStore,
        *,
        batch_observer: Callable[[str, ModelVersion], BatchObserver] | None = None,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        self.settings = settings
        self.env = settings.env
        self.registry = registry
        self.artifacts = artifacts
        self.pool = ModelPool(
            self._load, max_models=settings.max_loaded_models, max_bytes=settings.max_loaded_bytes
        )
        self.endpoints: dict[str, EndpointState] = {}
        self._synced = False
        self._watcher: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1))
        #: per (endpoint, model, version, kind) (variants of two models may share a
        #: number): the runtime and serving options a batcher was made for, and it
        self._batchers: dict[VersionKind, tuple[Runtime, ServingOptions, Batcher]] = {}
        #: (endpoint, model, version): the batcher made last, whose queue `admit` reads
        self._queues: dict[tuple[str, str, int], Batcher] = {}
        self._closing: set[asyncio.Task[None]] = set()
        #: makes the per-batch callback for an endpoint's version (the metrics hook)
        self.batch_observer = batch_observer
        #: where answered and failed requests are recorded; None: not recorded
        self.prediction_log = prediction_log
        #: runs shadow variants off the hot path (None: shadows are not run)
        self.shadows: ShadowRunner | None = None
        if settings.shadow_max_pending > 0:
            self.shadows = ShadowRunner(self, settings.shadow_max_pending, settings.shadow_threads)
        #: set on SIGTERM (`modelport.serving.server`): not ready, still answering
        self.draining = False
        #: hears the dependencies' circuit breakers change state (the metrics hook)
        self.breaker_observer: BreakerObserver | None = None

    def _load(self, version: ModelVersion, kind: str) -> Runtime:
        return load_runtime(
            version,
            self.artifacts,
            kind="compiled" if kind == "compiled" else "native",
            threads=self.settings.runtime_threads,
        )

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        await self.sync()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.gather(*(b.close() for *_, b in self._batchers.values()), *self._closing)
        if self.shadows is not None:
            await self.shadows.close()
        if "enricher" in self.__dict__:
            aclose = getattr(self.enricher.store, "aclose", None)
            if aclose is not None:
                await aclose()
            self.enricher.store.close()
            self._feature_reads.shutdown(wait=False, cancel_futures=True)
        await self.pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _watch(self) -> None:
        away = False  # the registry is unreachable: said once, not at every poll
        while True:
            await asyncio.sleep(self.settings.poll_interval_seconds)
            try:
                await self.sync()
            except Unavailable as exc:  # the registry's breaker: away, expected, no trace
                if not away:
                    log.warning("serving what is loaded; the registry is away: %s", exc)
                away = True
                continue
            except Exception:  # the registry being briefly away must not stop serving
                log.exception("could not read deployments from the registry; will retry")
                continue
            if away:
                log.warning("the registry is reachable again; following its deployments")
            away = False

    async def sync(self) -> None:
        """Bring the endpoint table in line with the registry's deployments."""
        deployments = await asyncio.to_thread(self.registry.list_deployments, self.env)
        seen = {d.endpoint for d in deployments}
        for gone in set(self.endpoints) - seen:
            log.info("endpoint %s undeployed", gone)
            del self.endpoints[gone]
        changes = [d for d in deployments if self._is_new(d)]
        await asyncio.gather(*(self._apply(d) for d in changes))
        if any(d.spec.features for d in deployments):
            store = FeatureViewStore(self.registry.engine)
            views = {v.name: v for v in await asyncio.to_thread(store.list)}
            for state in self.endpoints.values():
                _bind_views(state, views)
        if any(d.spec.precomputed is not None for d in deployments):
            await self.precomputed.refresh(deployments)
        self._pin()
        self._synced = True

    def _is_new(self, deployment: Deployment) -> bool:
        state = self.endpoints.get(deployment.endpoint)
        if state is None:
            return True
        current = state.pending or state.deployment
        return deployment.revision != current.revision or deployment.spec != current.spec

    async def _apply(self, deployment: Deployment) -> None:
        versions = {
            v.name: await asyncio.to_thread(self.registry.get_version, v.model, v.version)
            for v in deployment.spec.variants
        }
        router = Router.build(deployment.spec.variants, versions)
        state = self.endpoints.get(deployment.endpoint)
        if state is None:
            state = EndpointState(deployment=deployment, versions=versions, router=router)
            self.endpoints[deployment.endpoint] = state
            if self.settings.load_mode == "eager":
                await self._load_all(state, deployment, versions)
            return
        state.pending = deployment
        if self.settings.load_mode == "eager":
            ok = await self._load_all(state, deployment, versions)
            if not ok and state.pending is deployment:
                return  # keep serving the old version; the error is on the endpoint
        if state.pending is deployment:
            state.deployment, state.versions, state.router = deployment, versions, router
            state.pending, state.error = None, None
            log.info("endpoint %s now serves %s", deployment.endpoint, _describe(deployment))

    async def _load_all(
        self, state: EndpointState, deployment: Deployment, versions: dict[str, ModelVersion]
    ) -> bool:
        choice = deployment.spec.serving.runtime
        slots = await asyncio.gather(
            *(self.pool.wait_loaded(v, runtime_kind(v, choice)) for v in versions.values())
        )
        errors = [f"{s.version.uri}: {s.error}" for s in slots if s.state == "failed"]
        state.error = "; ".join(errors) or None
        return not errors

    def _pin(self) -> None:
        self.pool.pin({key for state in self.endpoints.values() for key in state.runtime_keys()})

    # -- health --------------------------------------------------------------

    def is_ready(self) -> bool:
        """Ready when the deployments were read and, in eager mode, every one is loaded;
        never while draining."""
        if not self._synced or self.draining:
            return False
        if self.settings.load_mode == "lazy":
            return True
        return all(
            self.pool.state(key) in ("ready", "failed")
            for state in self.endpoints.values()
            for key in state.runtime_keys()
        )

    def breakers(self) -> list[CircuitBreaker]:
        """The circuit breakers of the dependencies this server has used so far."""
        found = [self.registry.breaker]
        if "enricher" in self.__dict__:
            found.append(getattr(self.enricher.store, "breaker", None))
        return [b for b in found if b is not None]

    def endpoint_ready(self, endpoint: str, version: int | None = None) -> bool:
        state = self.endpoint(endpoint)
        mv = state.by_number(version) if version is not None else state.version
        if mv is None:
            return False
        return self.pool.state((mv.name, mv.version, state.kind(mv))) == "ready"

    # -- prediction ----------------------------------------------------------

    def endpoint(self, name: str) -> EndpointState:
        state = self.endpoints.get(name)
        if state is None:
            raise NotFound(
                f"endpoint {name!r} is not served in environment {self.env!r}",
                hint=f"endpoints served here: {sorted(self.endpoints)}",
            )
        return state

    async def version_for(self, endpoint: str, version: int | None) -> ModelVersion:
        """The version a request names (the primary's model), or the primary's."""
        state = self.endpoint(endpoint)
        if version is None:
            return state.version
        served = state.by_number(version)
        if served is not None:
            return served
        model = state.version.name
        return await asyncio.to_thread(self.registry.get_version, model, version)

    def route(
        self, endpoint: str, raw: RawInput | None = None, header: Header | None = None
    ) -> ModelVersion:
        """The live variant that answers a request: sticky by the deployment's header or
        input field when it names one and the request has it, else random by weight."""
        return _route(self.endpoint(endpoint), raw, header)

    async def predict(
        self,
        endpoint: str,
        raw: RawInput,
        *,
        version: int | ModelVersion | None = None,
        header: Header | None = None,
    ) -> PredictResult:
        """Validate ``raw`` against the chosen variant's signature and predict.

        ``version`` pins a version (a number: of the primary's model); otherwise the
        router picks a live variant (``header`` reads request headers for a sticky
        key). Shadow variants get a copy of the request after the answer, off the hot
        path.
        """
        served = self.endpoints.get(endpoint)
        if version is None and served is not None and served.deployment.spec.precomputed:
            return await self.precomputed.predict(served, raw, header)
        started = time.perf_counter()
        try:
            state = self.endpoint(endpoint)
            if isinstance(version, ModelVersion):
                mv = version
            elif version is not None:
                mv = await self.version_for(endpoint, version)
            else:
                mv = _route(state, raw, header)
        except ModelportError as exc:
            self.log_failure(endpoint, exc, started=started)
            raise
        columns: Columns | None = None
        stale: list[tuple[str, ...]] | None = None  # per row: its views not fresh
        try:
            if state.deployment.spec.features:
                stale = []
                raw = await self._enrich(state, raw, stale)
            columns = mv.signature.coerce_any(raw)
            _check_rows(state, columns, self.settings.max_rows_per_request)
            kind = state.kind(mv)
            runtime = await self.pool.get(mv, self.settings.load_wait_seconds, kind)
            batcher = self._batcher(endpoint, mv, kind, runtime, state.serving)
            # The batcher turns a model's own exception into PredictionFailed, named after it.
            prediction = await batcher.predict(columns)
        except ModelportError as exc:
            self.log_failure(endpoint, exc, version=mv, columns=columns, started=started)
            raise
        n = len(next(iter(columns.values())))
        ids = new_prediction_ids(n)
        latency = time.perf_counter() - started
        variant = f"{mv.name}-v{mv.version}"
        if self.prediction_log is not None:
            self.prediction_log.record(
                endpoint, mv, variant, ids, columns, prediction, latency, stale=stale
            )
        if state.router.shadows and self.shadows is not None:
            self.shadows.submit(endpoint, state, raw, ids, latency, (mv.signature, columns))
        return PredictResult(
            endpoint=endpoint,
            version=mv,
            prediction=prediction,
            prediction_ids=ids,
            latency_s=latency,
            rows=n,
            variant=variant,
        )

    async def _enrich(
        self, state: EndpointState, raw: RawInput, stale: list[tuple[str, ...]]
    ) -> RawInput:
        """``raw`` with the endpoint's feature views joined on (off the event loop when
        the store is remote)."""
        if state.view_error is not None or len(state.views) != len(state.deployment.spec.features):
            raise Unavailable(
                state.view_error or f"the feature views of {state.name} are not loaded yet",
                hint="declare the views (modelport.yaml features:) and apply",
            )
        if not isinstance(raw, Mapping):
            raise InvalidInput(
                f"endpoint {state.name} joins feature views by entity key: name the request's "
                "columns (dataframe_split, dataframe_records or inputs as an object)"
            )
        enricher = self.enricher
        if isinstance(enricher.store, MemoryStore):
            return enricher.enrich(state.views, raw, stale=stale)
        aread = getattr(enricher.store, "aread", None)
        if aread is not None:  # an asyncio client: no thread hop
            return await enricher.aenrich(state.views, raw, aread, stale=stale)
        loop = asyncio.get_running_loop()
        enrich = functools.partial(enricher.enrich, state.views, raw, stale=stale)
        return await loop.run_in_executor(self._feature_reads, enrich)

    @cached_property
    def enricher(self) -> Enricher:
        """Built on first use: servers without feature views never open a store."""
        store = open_store(self.settings)
        use_breaker = getattr(store, "use_breaker", None)  # a store over the network
        if use_breaker is not None:
            use_breaker(self.breaker_observer)
        return Enricher(store)

    @cached_property
    def precomputed(self) -> PrecomputedPredictions:
        """What precomputed endpoints answer from; built when the first one is served."""
        from modelport.serving.precomputed import PrecomputedPredictions

        return PrecomputedPredictions(self)

    @cached_property
    def _feature_reads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(4, thread_name_prefix="modelport-features")

    def log_failure(
        self,
        endpoint: str,
        exc: ModelportError,
        *,
        version: ModelVersion | None = None,
        columns: Columns | None = None,
        started: float | None = None,
    ) -> None:
        """Record a failed request in the prediction log, if the endpoint is served here.

        Requests for endpoints this server does not serve are not recorded: request
        paths must not create log partitions. ``started`` is the request's
        ``time.perf_counter()`` at arrival.
        """
        if self.prediction_log is None or endpoint not in self.endpoints:
            return
        latency = time.perf_counter() - started if started is not None else 0.0
        self.prediction_log.record_failure(
            endpoint, exc, version=version, columns=columns, latency_s=latency
        )

    def admit(self, endpoint: str) -> None:
        """Raise `Overloaded` when every live variant of ``endpoint`` has a full queue.

        The fast path asks before it reads a request's body, so a shed request costs
        no parsing; the batcher's own check on enqueue stays the one that counts."""
        state = self.endpoints.get(endpoint)
        if state is None or state.deployment.spec.precomputed is not None:
            return  # a precomputed endpoint answers most requests without its model
        batcher = None
        for _, mv in state.router.live:
            batcher = self._queues.get((endpoint, mv.name, mv.version))
            if batcher is None or not batcher.full:
                return
        if batcher is not None:
            raise batcher.overloaded()

    def _batcher(
        self,
        endpoint: str,
        mv: ModelVersion,
        kind: str,
        runtime: Runtime,
        options: ServingOptions,
    ) -> Batcher:
        """The endpoint's batcher for this runtime (a reloaded runtime gets a new one)."""
        key = (endpoint, mv.name, mv.version, kind)
        current = self._batchers.get(key)
        if current is not None and current[0] is runtime and current[1] is options:
            return current[2]  # the same objects as last time: no config to compare
        config = BatchingConfig(
            max_batch_size=options.max_batch_size,
            max_wait_ms=options.max_wait_ms,
            enabled=options.batching,
            max_queue=options.max_queue,
        )
        if current is not None and current[0] is runtime and current[2].config == config:
            self._batchers[key] = (runtime, options, current[2])
            return current[2]
        batcher = Batcher(
            runtime,
            config,
            self._executor,
            name=f"{endpoint}:{mv.uri}",
            on_batch=self.batch_observer(endpoint, mv) if self.batch_observer else None,
            single_threaded=self.settings.runtime_threads == 1,
        )
        if current is not None:
            self._closing.add(asyncio.get_running_loop().create_task(current[2].close()))
        self._batchers[key] = (runtime, options, batcher)
        self._queues[key[:3]] = batcher
        return batcher

    def batch_stats(self, endpoint: str, version: ModelVersion, kind: str) -> dict[str, Any] | None:
        """This process's batching totals for an endpoint's version, if it served any."""
        current = self._batchers.get((endpoint, version.name, version.version, kind))
        if current is None:
            return None
        stats: BatchStats = current[2].stats
        return {
            "batches": stats.batches,
            "requests": stats.requests,
            "rows": stats.rows,
            "mean_batch_rows": round(stats.rows / stats.batches, 2) if stats.batches else 0.0,
            "fallbacks": stats.fallbacks,
        }

    def describe(self) -> list[dict[str, Any]]:
        """Every endpoint with what it serves and its state, for status pages and the CLI."""
        out = []
        for name in sorted(self.endpoints):
            state = self.endpoints[name]
            mv = state.version
            out.append(
                {
                    "endpoint": name,
                    "environment": self.env,
                    "model": mv.name,
                    "version": mv.version,
                    "revision": state.deployment.revision,
                    "runtime": state.kind(mv),
                    "state": self.pool.state((mv.name, mv.version, state.kind(mv))) or "not loaded",
                    "pending_revision": state.pending.revision if state.pending else None,
                    "error": state.error,
                    "serving": state.serving.to_dict(),
                    "batching": self.batch_stats(name, mv, state.kind(mv)),
                    "variants": [
                        {
                            "variant": v.name,
                            "weight": 0.0 if v.shadow else v.weight,
                            "shadow": v.shadow,
                            "state": self.pool.state(
                                (v.model, v.version, state.kind(state.versions[v.name]))
                            )
                            or "not loaded",
                        }
                        for v in state.deployment.spec.variants
                    ],
                    "routing": state.routing.to_dict(),
                }
            )
        return out


def _check_rows(state: EndpointState, columns: Columns, default: int) -> None:
    """Refuse a request over the endpoint's (else the server's) rows-per-request limit."""
    limit = state.serving.max_rows_per_request or default
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows > limit:
        where = (
            f"serving.max_rows_per_request of endpoint {state.name} in modelport.yaml"
            if state.serving.max_rows_per_request
            else "MODELPORT_MAX_ROWS_PER_REQUEST (or the endpoint's serving.max_rows_per_request)"
        )
        raise PayloadTooLarge(
            f"the request has {rows} rows, over the limit of {limit} rows per request "
            f"of endpoint {state.name}",
            hint=f"split it into requests of at most {limit} rows, or raise {where}",
        )


def _bind_views(state: EndpointState, views: Mapping[str, FeatureView]) -> None:
    names = state.deployment.spec.features
    missing = [name for name in names if name not in views]
    state.views = tuple(views[name] for name in names if name in views)
    state.view_error = (
        f"endpoint {state.name} needs feature view(s) {missing}, which do not exist"
        if missing
        else None
    )


def _route(state: EndpointState, raw: RawInput | None, header: Header | None) -> ModelVersion:
    router = state.router
    if len(router.live) == 1:  # no key to read, no draw
        return router.live[0][1]
    return router.choose(_sticky_key(state.routing, raw, header))[1]


def _sticky_key(routing: Routing, raw: RawInput | None, header: Header | None) -> str | None:
    """The request's sticky key: the routing header's value, else the routing field's
    value in the first row; None when the deployment names neither or the request lacks it."""
    if routing.sticky_header is not None and header is not None:
        value = header(routing.sticky_header.lower())
        if value:
            return value
    if routing.sticky_field is not None and isinstance(raw, Mapping):
        column = raw.get(routing.sticky_field)
        if column is not None and len(column):
            return label_text(column[0])
    return None


def _describe(deployment: Deployment) -> str:
    spec = deployment.spec
    live = ", ".join(f"{v.uri} {v.weight:g}%" for v in spec.live)
    shadows = "".join(f", shadow {v.uri}" for v in spec.shadows)
    return live + shadows

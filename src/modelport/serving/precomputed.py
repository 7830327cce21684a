"""Precomputed endpoints: answers a batch run computed, read from the online store.

An endpoint deployed with ``precomputed`` (`modelport.registry.entities.Precomputed`)
answers a request's keys from the run published for it (`modelport.batch.publish`):

- the publication (which run, in which store namespace) is read from the registry on
  every poll of the data plane (`refresh`, called by `DataPlane.sync`) and kept here,
  so a request costs one store read and no registry query; a request resolves the
  publication once, so all its rows come from one run;
- the store is read on the event loop where it has an asyncio client (Redis), in a
  thread where it blocks (SQLite), directly in memory;
- a key the run lacks is predicted online by the deployed model with ``fallback:
  online`` (through `DataPlane.predict`: feature enrichment, validation, batching, the
  log), or answered 404 with ``fallback: none``;
- an unreachable store answers 503 naming it, whatever the fallback: precomputed
  endpoints do not silently turn into online ones.

Answers say where each row came from (``source``), which model version computed it
(the published run's, which may differ from the deployed one) and when. Precomputed
answers are recorded in the prediction log like online ones, under the version that
computed them.

Example::

    body = await plane.precomputed.get("churn", "u42")
    # {"key": "u42", "predictions": 1, "probabilities": [...], "model": "churn",
    #  "version": 3, "computed_at": "...", "run_id": "...", "source": "precomputed"}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.batch.publish import KEY_SEPARATOR, answer, key_columns, key_text
from modelport.errors import InvalidInput, ModelportError, NotFound, Unavailable
from modelport.features.online import Lookup, MemoryStore, Row
from modelport.monitoring.records import new_prediction_ids
from modelport.registry.entities import Precomputed, iso
from modelport.registry.precomputed import Publication, PublicationStore
from modelport.runtimes.base import Prediction

if TYPE_CHECKING:
    from modelport.registry import Deployment, ModelVersion
    from modelport.serving.dataplane import (
        DataPlane,
        EndpointState,
        Header,
        PredictResult,
        RawInput,
    )

PRECOMPUTED, ONLINE = "precomputed", "online"
#: Unknown keys an error names before it says how many more there are.
_SHOWN_KEYS = 5


class PrecomputedPredictions:
    """What a data plane's precomputed endpoints answer from."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        #: the current publication of each precomputed endpoint (absent: none published)
        self.publications: dict[str, Publication] = {}
        self._versions: dict[tuple[str, int], ModelVersion | None] = {}

    async def refresh(self, deployments: Sequence[Deployment]) -> None:
        """Re-read the publications of the precomputed endpoints among ``deployments``."""
        wanted = {d.endpoint for d in deployments if d.spec.precomputed is not None}
        store = PublicationStore(self.plane.registry.engine)
        found = await asyncio.to_thread(store.all, self.plane.env)
        publications = {p.endpoint: p for p in found if p.endpoint in wanted}
        for p in publications.values():
            if (p.model, p.version) not in self._versions:
                self._versions[(p.model, p.version)] = await asyncio.to_thread(
                    self._version, p.model, p.version
                )
        self.publications = publications

    def _version(self, model: str, version: int) -> ModelVersion | None:
        try:
            return self.plane.registry.get_version(model, version)
        except NotFound:  # deleted since the run: answers still name it
            return None

    # -- GET /v1/endpoints/{endpoint}/predictions/{key} -----------------------------

    async def get(self, endpoint: str, key: str) -> dict[str, Any]:
        """``key``'s published prediction, or (``fallback: online``) an online one."""
        started = time.perf_counter()
        state = self.plane.endpoint(endpoint)
        mode = _mode(state)
        publication = self.publications.get(endpoint)
        row = (await self.read(publication, [key]))[0] if publication is not None else None
        if publication is not None and row is not None:
            body = answer(publication, key, row)
            columns = _split(key, key_columns(mode.keys, publication), endpoint)
            ids = self._log(state, publication, columns, _outputs(publication, [row]), started)
            return {"endpoint": endpoint, **body, "prediction_id": ids[0] if ids else None}
        if mode.fallback == "none":
            raise _missing(state, publication, [key])
        return await self._get_online(state, mode, publication, key)

    async def _get_online(
        self, state: EndpointState, mode: Precomputed, publication: Publication | None, key: str
    ) -> dict[str, Any]:
        columns = key_columns(mode.keys, publication)
        if not columns:
            raise _missing(state, publication, [key])
        raw = _split(key, columns, state.name)
        try:
            result = await self.plane.predict(
                state.name, raw, version=self.plane.route(state.name, raw)
            )
        except InvalidInput as exc:
            raise NotFound(
                f"endpoint {state.name} has no precomputed prediction for key {key!r}, and "
                f"predicting it online needs more than the key: {exc.message}",
                hint=f"POST /v1/endpoints/{state.name}/predict with the row's inputs",
            ) from exc
        body: dict[str, Any] = {"endpoint": state.name, "key": key}
        for name, values in result.prediction.outputs.items():
            value = values[0]
            body["predictions" if name == result.prediction.primary else name] = (
                value.tolist() if isinstance(value, np.ndarray | np.generic) else value
            )
        body.update(
            model=result.version.name,
            version=result.version.version,
            computed_at=None,
            run_id=None,
            source=ONLINE,
            prediction_id=result.prediction_ids[0],
        )
        return body

    # -- POST /v1/endpoints/{endpoint}/predict ----------------------------------------

    async def predict(
        self, state: EndpointState, raw: RawInput, header: Header | None = None
    ) -> PredictResult:
        """Answer a predict request's keys from the published run; unknown keys online
        (``fallback: online``) or 404. Returns the data plane's `PredictResult`, whose
        ``annotations`` say per row where it came from."""
        started = time.perf_counter()
        mode = _mode(state)
        publication = self.publications.get(state.name)
        try:
            columns = _columns(state, mode, publication)
            keys = _request_keys(raw, columns, state.name) if columns else None
            found: list[Row | None]
            if publication is not None and keys is not None:
                found = await self.read(publication, keys)
            else:
                found = [None] * _rows(raw)
            if not found:
                raise InvalidInput("the request has no rows")
            missing = [i for i, row in enumerate(found) if row is None]
            if missing and mode.fallback == "none":
                raise _missing(state, publication, [keys[i] for i in missing] if keys else [])
        except ModelportError as exc:
            self.plane.log_failure(state.name, exc, started=started)
            raise
        online = None
        if missing:
            subset = raw if len(missing) == len(found) else _take(raw, missing)
            chosen = self.plane.route(state.name, subset, header)
            online = await self.plane.predict(state.name, subset, version=chosen)
        return self._merge(state, publication, raw, found, missing, online, started)

    def _merge(
        self,
        state: EndpointState,
        publication: Publication | None,
        raw: RawInput,
        found: list[Row | None],
        missing: list[int],
        online: PredictResult | None,
        started: float,
    ) -> PredictResult:
        """One answer, in request order, of the published rows and the online ones."""
        from modelport.serving.dataplane import PredictResult

        merged = _Merged.of(len(found), publication, online)
        if online is not None:
            merged.fill(missing, online.prediction.outputs, online.prediction_ids, online.version)
        hits = [i for i, row in enumerate(found) if row is not None]
        if publication is not None and hits:
            rows = [found[i] for i in hits]
            outputs = _outputs(publication, rows)
            columns = _take(raw, hits) if len(hits) < len(found) else raw
            ids = self._log(state, publication, columns, outputs, started, len(hits))
            merged.fill(hits, outputs, ids, publication.version)
            model, version = publication.model, publication.version
            answered = self._versions.get((model, version))
        else:
            assert online is not None, "a row is either found or predicted online"
            answered = online.version
            model, version = answered.name, answered.version
        return PredictResult(
            endpoint=state.name,
            version=answered if answered is not None else state.version,
            prediction=merged.prediction(answered.classes if answered is not None else None),
            prediction_ids=merged.ids,
            latency_s=time.perf_counter() - started,
            rows=len(found),
            variant=f"{model}-v{version}",
            annotations={
                "model": model,
                "version": version,
                "source": [PRECOMPUTED if row is not None else ONLINE for row in found],
                "versions": merged.versions,
                "run_id": publication.run_id if publication is not None else None,
                "computed_at": iso(publication.computed_at) if publication is not None else None,
            },
        )

    # -- the store and the log -------------------------------------------------------

    async def read(self, publication: Publication, keys: Sequence[str]) -> list[Row | None]:
        """The published rows of ``keys`` (None: the run has none), one store read."""
        store = self.plane.enricher.store
        lookups = [Lookup(publication.namespace, "rows", list(keys))]
        try:
            if isinstance(store, MemoryStore):
                found = store.read(lookups)
            else:
                aread = getattr(store, "aread", None)
                if aread is not None:  # an asyncio client: no thread hop
                    found = await aread(lookups)
                else:
                    found = await asyncio.to_thread(store.read, lookups)
        except Unavailable as exc:
            # The store's message goes on about features; what fails here is the lookup.
            reason = exc.message.partition("; predictions that need features")[0]
            raise Unavailable(
                f"endpoint {publication.endpoint} cannot read its precomputed predictions: "
                f"{reason}; it answers 503 until the store is back",
                hint=exc.hint,
            ) from exc
        return [row if isinstance(row, Row) else None for row in found[0]]

    def _log(
        self,
        state: EndpointState,
        publication: Publication,
        columns: RawInput,
        outputs: dict[str, np.ndarray],
        started: float,
        rows: int = 1,
    ) -> list[str]:
        """Record precomputed answers under the version that computed them; their ids."""
        ids = new_prediction_ids(rows)
        log = self.plane.prediction_log
        version = self._versions.get((publication.model, publication.version))
        if log is None or version is None or not isinstance(columns, Mapping):
            return ids
        inputs = {name: _array(list(column)) for name, column in columns.items()}
        variant = f"{publication.model}-v{publication.version}"
        prediction = Prediction(outputs, classes=version.classes)
        log.record(
            state.name, version, variant, ids, inputs, prediction, time.perf_counter() - started
        )
        return ids


@dataclass
class _Merged:
    """A request's answer, row by row, as its rows arrive from the run or the model."""

    values: dict[str, list[Any]]
    ids: list[str]
    versions: list[int]

    @classmethod
    def of(cls, n: int, publication: Publication | None, online: PredictResult | None) -> _Merged:
        names = list(publication.outputs) if publication is not None else []
        if online is not None:
            names += [name for name in online.prediction.outputs if name not in names]
        return cls({name: [None] * n for name in names}, [""] * n, [0] * n)

    def fill(
        self,
        rows: list[int],
        outputs: Mapping[str, np.ndarray],
        ids: Sequence[str],
        version: int | ModelVersion,
    ) -> None:
        number = version if isinstance(version, int) else version.version
        for name, column in outputs.items():
            for i, value in zip(rows, np.asarray(column).tolist(), strict=True):
                self.values[name][i] = value
        for i, prediction_id in zip(rows, ids, strict=True):
            self.ids[i], self.versions[i] = prediction_id, number

    def prediction(self, classes: list[Any] | None) -> Prediction:
        return Prediction({n: _array(v) for n, v in self.values.items()}, classes=classes)


def _mode(state: EndpointState) -> Precomputed:
    mode = state.deployment.spec.precomputed
    if mode is None:
        raise NotFound(
            f"endpoint {state.name} does not serve precomputed predictions",
            hint=f"deploy it with --precomputed (modelport deploy {state.name} URI --precomputed)",
        )
    return mode


def _columns(
    state: EndpointState, mode: Precomputed, publication: Publication | None
) -> tuple[str, ...]:
    """The request fields carrying the key; empty when nothing says which they are."""
    columns = key_columns(mode.keys, publication)
    if publication is not None and len(columns) != len(publication.id_columns):
        raise Unavailable(
            f"endpoint {state.name} reads its key from {list(columns)}, but run "
            f"{publication.run_id} is keyed by {list(publication.id_columns)}",
            hint="make the deployment's precomputed keys name one field per id column",
        )
    return columns


def _missing(
    state: EndpointState, publication: Publication | None, keys: Sequence[str]
) -> ModelportError:
    if publication is None:
        return Unavailable(
            f"endpoint {state.name} answers from published predictions, and none are "
            f"published for it in {state.deployment.environment!r}",
            hint=f"publish a run: modelport batch predict ... --publish {state.name}",
        )
    shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
    if len(keys) > _SHOWN_KEYS:
        shown += f" and {len(keys) - _SHOWN_KEYS} more"
    return NotFound(
        f"endpoint {state.name} has no precomputed prediction for key {shown} "
        f"(run {publication.run_id} did not score it)",
        hint="deploy the endpoint with --fallback online to predict unknown keys online",
    )


def _request_keys(raw: RawInput, columns: tuple[str, ...], endpoint: str) -> list[str]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            f"endpoint {endpoint} looks predictions up by key: name the request's columns "
            "(dataframe_split, dataframe_records or inputs as an object)",
            hint=f'e.g. {{"inputs": {{"{columns[0]}": ["..."]}}}}',
        )
    absent = [c for c in columns if c not in raw]
    if absent:
        raise InvalidInput(
            f"the request has no {absent} column: endpoint {endpoint} looks its "
            f"precomputed predictions up by {list(columns)}",
            hint=f'e.g. {{"inputs": {{"{columns[0]}": ["..."]}}}}',
        )
    values = [list(raw[c]) for c in columns]
    for name, column in zip(columns, values, strict=True):
        if any(v is None for v in column):
            row = next(i for i, v in enumerate(column) if v is None)
            raise InvalidInput(f"row {row} has no value in key column {name!r}")
    if not values[0]:
        raise InvalidInput("the request has no rows")
    return [key_text(row) for row in zip(*values, strict=True)]


def _split(key: str, columns: tuple[str, ...], endpoint: str) -> dict[str, list[Any]]:
    """A GET's key as request columns (one per id column)."""
    if not columns:
        return {}
    parts = key.split(KEY_SEPARATOR) if len(columns) > 1 else [key]
    if len(parts) != len(columns):
        raise InvalidInput(
            f"endpoint {endpoint} is keyed by {list(columns)}: a key is their values "
            f"joined by {KEY_SEPARATOR!r}, not {key!r}"
        )
    return {name: [part] for name, part in zip(columns, parts, strict=True)}


def _rows(raw: RawInput) -> int:
    if isinstance(raw, Mapping):
        return len(next(iter(raw.values()), ()))
    return len(raw)


def _take(raw: RawInput, rows: list[int]) -> RawInput:
    """The request's ``rows``, as columns (positional rows stay rows)."""
    if not isinstance(raw, Mapping):
        return [raw[i] for i in rows]
    return {
        name: column[rows] if isinstance(column, np.ndarray) else [column[i] for i in rows]
        for name, column in raw.items()
    }


def _outputs(publication: Publication, rows: Sequence[Row | None]) -> dict[str, np.ndarray]:
    return {
        name: _array([row.values.get(name) if row is not None else None for row in rows])
        for name in publication.outputs
    }


def _array(values: list[Any]) -> np.ndarray:
    """Numbers (and rows of numbers) as a numeric array; anything else one object per row."""
    if all(v is not None for v in values):
        try:
            array = np.asarray(values)
        except ValueError:  # rows of different lengths
            array = None
        if array is not None and array.dtype.kind in "biuf":
            return array
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out

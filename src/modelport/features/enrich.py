"""Enrichment at prediction time: entity keys in, the model's feature columns out.

A deployment names the feature views its model reads. A request then carries the
entity keys (and any request-time fields); `Enricher.enrich` reads every view's values
for those keys from the online store in one round trip and adds them as columns, so
the model sees exactly its signature's columns and the prediction log records the
values it used. A vector feature ``emb`` of dimension 3 becomes columns ``emb_0``,
``emb_1``, ``emb_2``.

Per view, a key the store does not hold and a value older than the view's TTL follow
the view's policy: ``error`` (404 for a missing key, 503 for a stale value, naming the
view and key), ``default`` (the feature's default) or ``null``. When the store cannot
be reached the request fails with 503 within ``feature_timeout_seconds``, unless every
view it needs has ``on_missing: default``: then the defaults are used.

Example::

    enricher = Enricher(store)
    columns = enricher.enrich([profile, stats], {"user_id": ["u1", "u2"], "amount": [3, 9]})
    # {"user_id": [...], "amount": [...], "age": [31.0, None], "tx_count_1h": [4, 0]}
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from modelport.errors import InvalidInput, NotFound, Unavailable
from modelport.features.aggregates import read as read_state
from modelport.features.online import Found, Lookup, OnlineStore, Row
from modelport.features.views import FeatureView
from modelport.monitoring.records import label_text


def entity_key(value: Any) -> str:
    """The text an entity is stored under: ``42``, ``42.0`` and ``"42"`` are one key."""
    return label_text(value)


def output_columns(view: FeatureView) -> list[str]:
    """The columns ``view`` adds to a request (vectors expanded to one per element)."""
    out: list[str] = []
    for feature in view.features:
        if feature.type == "vector":
            out.extend(f"{feature.name}_{i}" for i in range(feature.dim or 0))
        else:
            out.append(feature.name)
    out.extend(a.name for a in view.aggregations)
    return out


class Enricher:
    """Join online features onto requests."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store

    def enrich(
        self,
        views: Sequence[FeatureView],
        raw: Mapping[str, Any],
        now: float | None = None,
        stale: list[tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        """``raw``'s columns plus every view's feature columns, one value per row.

        With ``stale``, each row's views whose value was missing or older than the
        view's TTL (whatever the policy made of it) are appended to it, one tuple a
        row: the prediction log keeps them as ``stale_features``."""
        keys, lookups = self._plan(views, raw)
        try:
            found = self.store.read(lookups)
        except Unavailable as exc:
            found = _unavailable(views, lookups, exc)
        return self._assemble(views, raw, keys, lookups, found, now, stale)

    async def aenrich(
        self,
        views: Sequence[FeatureView],
        raw: Mapping[str, Any],
        read: Callable[[Sequence[Lookup]], Awaitable[list[Found]]],
        now: float | None = None,
        stale: list[tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        """`enrich` with ``read`` (a store's ``aread``) on the running event loop."""
        keys, lookups = self._plan(views, raw)
        try:
            found = await read(lookups)
        except Unavailable as exc:
            found = _unavailable(views, lookups, exc)
        return self._assemble(views, raw, keys, lookups, found, now, stale)

    def _plan(
        self, views: Sequence[FeatureView], raw: Mapping[str, Any]
    ) -> tuple[list[list[str]], list[Lookup]]:
        keys = [self._keys(view, raw) for view in views]
        lookups = [
            Lookup(view.name, "state" if view.kind == "stream" else "rows", sorted(set(k)))
            for view, k in zip(views, keys, strict=True)
        ]
        return keys, lookups

    def _assemble(
        self,
        views: Sequence[FeatureView],
        raw: Mapping[str, Any],
        keys: list[list[str]],
        lookups: list[Lookup],
        found: list[Found],
        now: float | None,
        stale: list[tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        now = time.time() if now is None else now
        out = dict(raw)
        marks: list[list[str]] = [[] for _ in keys[0]] if keys else []
        for view, row_keys, lookup, entries in zip(views, keys, lookups, found, strict=True):
            held = dict(zip(lookup.keys, entries, strict=True))
            if stale is not None and view.kind != "stream":
                for i, key in enumerate(row_keys):
                    if not _fresh(view, held.get(key), now):
                        marks[i].append(view.name)
            values = [self._values(view, key, held.get(key), now) for key in row_keys]
            names = output_columns(view)
            for name in names:
                if name in out and name != view.entity:
                    raise InvalidInput(
                        f"column {name!r} comes from feature view {view.name!r} and from "
                        "the request (or another view)",
                        hint="leave feature columns out of requests; rename one feature",
                    )
            for i, name in enumerate(names):
                out[name] = [v[i] for v in values]
        if stale is not None:
            stale.extend(tuple(m) for m in marks)
        return out

    def _keys(self, view: FeatureView, raw: Mapping[str, Any]) -> list[str]:
        column = raw.get(view.entity)
        if column is None:
            raise InvalidInput(
                f"the request has no {view.entity!r} column, the key of feature view {view.name!r}",
                hint=f"send {view.entity!r} with each row; the server adds the view's features",
            )
        return [entity_key(v) for v in column]

    def _values(self, view: FeatureView, key: str, entry: Any, now: float) -> list[Any]:
        """The view's output values for one key, its policies applied."""
        if view.kind == "stream":
            if entry is None and view.on_missing == "error":
                raise _missing(view, key)
            values = read_state(view, entry or {}, now)  # no events: counts 0, others None
            if view.on_missing == "default":
                defaults = view.defaults()
                values = {k: defaults[k] if v is None else v for k, v in values.items()}
            return [values[a.name] for a in view.aggregations]
        row: Row | None = entry
        if row is None:
            return self._fallback(view, key, view.on_missing, _missing(view, key))
        age = now - row.event_ts
        if view.ttl_s is not None and age > view.ttl_s:
            stale = Unavailable(
                f"features of {view.name!r} for {view.entity}={key!r} are stale: "
                f"{age:.0f}s old, the view's ttl is {view.ttl_s:.0f}s",
                hint=f"refresh it: modelport features materialize-incremental {view.name}",
            )
            return self._fallback(view, key, view.on_stale, stale)
        return _flatten(view, row.values)

    def _fallback(self, view: FeatureView, key: str, policy: str, error: Exception) -> list[Any]:
        if policy == "error":
            raise error
        if policy == "default":
            return _flatten(view, view.defaults())
        return _flatten(view, {})


def _fresh(view: FeatureView, row: Any, now: float) -> bool:
    """Whether a row view's entry is there and within the view's TTL."""
    if row is None:
        return False
    return view.ttl_s is None or now - row.event_ts <= view.ttl_s


def _missing(view: FeatureView, key: str) -> NotFound:
    return NotFound(
        f"feature view {view.name!r} has no values for {view.entity}={key!r}",
        hint=f"materialize or push them: modelport features get {view.name} {key}",
    )


def _flatten(view: FeatureView, values: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for feature in view.features:
        value = values.get(feature.name)
        if feature.type == "vector":
            dim = feature.dim or 0
            items = list(value) if value is not None else [None] * dim
            if len(items) != dim:
                raise InvalidInput(
                    f"feature {view.name}.{feature.name} holds {len(items)} values, not {dim}"
                )
            out.extend(items)
        else:
            out.append(value)
    return out


def _unavailable(
    views: Sequence[FeatureView], lookups: list[Lookup], error: Unavailable
) -> list[Found]:
    """With the store away: every entry missing when every view defaults, else ``error``."""
    if not all(view.on_missing == "default" for view in views):
        raise error
    empty: list[Row | None] = []
    return [empty + [None] * len(lookup.keys) for lookup in lookups]

"""Which batch run each endpoint's precomputed predictions come from.

A publication is one row per (environment, endpoint): the online-store namespace that
holds one run's predictions, with the run, the model version that computed them, when
the run finished and how many rows it wrote. Publishing a new run writes its rows to a
fresh namespace first and only then rewrites this row (`PublicationStore.flip`), in one
transaction: readers resolve the row before they read rows, so they see the old run or
the new one, never a mix. The namespace the row pointed at before stays named in
``retired_namespace`` until its rows are deleted, so one a crashed publisher left
behind is deleted by the next publish.

Example::

    store = PublicationStore(registry.engine)
    stale = store.flip(publication)       # namespaces nothing points at any more
    store.current("production", "churn")  # the Publication, or None
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelport.registry import schema as t
from modelport.registry.entities import iso, utc

_TABLE = t.precomputed_publications


@dataclass(frozen=True)
class Publication:
    """The run an endpoint's precomputed predictions come from.

    ``namespace`` is the online-store view holding one row per key; ``outputs`` are the
    run's output columns (the first is the primary one: ``label`` or ``prediction``);
    ``computed_at`` is when the run finished.
    """

    environment: str
    endpoint: str
    run_id: str
    namespace: str
    model: str
    version: int
    id_columns: tuple[str, ...]
    outputs: tuple[str, ...]
    rows: int
    computed_at: datetime
    published_at: datetime
    published_by: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "endpoint": self.endpoint,
            "run_id": self.run_id,
            "namespace": self.namespace,
            "model": self.model,
            "version": self.version,
            "id_columns": list(self.id_columns),
            "outputs": list(self.outputs),
            "rows": self.rows,
            "computed_at": iso(self.computed_at),
            "published_at": iso(self.published_at),
            "published_by": self.published_by,
        }


def _publication(row: Any) -> Publication:
    return Publication(
        environment=row.environment,
        endpoint=row.endpoint,
        run_id=row.run_id,
        namespace=row.namespace,
        model=row.model,
        version=int(row.version),
        id_columns=tuple(row.id_columns),
        outputs=tuple(row.outputs),
        rows=int(row.rows),
        computed_at=utc(row.computed_at),
        published_at=utc(row.published_at),
        published_by=row.published_by,
    )


def _where(environment: str, endpoint: str) -> sa.ColumnElement[bool]:
    return sa.and_(_TABLE.c.environment == environment, _TABLE.c.endpoint == endpoint)


class PublicationStore:
    """The ``precomputed_publications`` table, on the registry's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def current(self, environment: str, endpoint: str) -> Publication | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_TABLE).where(_where(environment, endpoint))).first()
        return _publication(row) if row is not None else None

    def all(self, environment: str | None = None) -> list[Publication]:
        query = sa.select(_TABLE).order_by(_TABLE.c.environment, _TABLE.c.endpoint)
        if environment is not None:
            query = query.where(_TABLE.c.environment == environment)
        with self.engine.begin() as conn:
            return [_publication(row) for row in conn.execute(query)]

    def flip(self, publication: Publication) -> list[str]:
        """Make ``publication`` its endpoint's current one, in one transaction.

        Returns the namespaces nothing points at any more (the one replaced, and one a
        past publish did not get to delete), to be deleted by the caller, which then
        calls `retired`. Republishing the current namespace returns none.
        """
        try:
            return self._flip(publication)
        except sa.exc.IntegrityError:  # another publisher inserted the row first
            return self._flip(publication)

    def _flip(self, publication: Publication) -> list[str]:
        values = publication.to_dict()
        for name in ("computed_at", "published_at"):
            values[name] = getattr(publication, name)
        where = _where(publication.environment, publication.endpoint)
        columns = (_TABLE.c.namespace, _TABLE.c.retired_namespace)
        with self.engine.begin() as conn:
            held = conn.execute(sa.select(*columns).where(where).with_for_update()).first()
            if held is None:
                conn.execute(_TABLE.insert().values(**values, retired_namespace=None))
                return []
            stale: list[str] = []
            for namespace in (held.namespace, held.retired_namespace):
                if namespace not in (None, publication.namespace, *stale):
                    stale.append(namespace)
            retired = stale[0] if stale else None
            conn.execute(_TABLE.update().where(where).values(**values, retired_namespace=retired))
        return stale

    def retired(self, environment: str, endpoint: str, namespace: str) -> None:
        """Forget ``namespace`` as retired: its rows are gone."""
        with self.engine.begin() as conn:
            conn.execute(
                _TABLE.update()
                .where(_where(environment, endpoint), _TABLE.c.retired_namespace == namespace)
                .values(retired_namespace=None)
            )

    def delete(self, environment: str, endpoint: str) -> tuple[Publication | None, list[str]]:
        """Remove the endpoint's publication; it (or None) and the namespaces to delete."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(_TABLE).where(_where(environment, endpoint)).with_for_update()
            ).first()
            if row is None:
                return None, []
            conn.execute(_TABLE.delete().where(_where(environment, endpoint)))
        namespaces = [ns for ns in (row.namespace, row.retired_namespace) if ns is not None]
        return _publication(row), namespaces

"""Feature views as the registry keeps them: one row per view, its spec as JSON.

Example::

    store = FeatureViewStore(registry.engine)
    store.put(view, actor="ana")   # a new revision only when the spec changed
    store.get("user_stats")
    store.set_materialized_until("user_stats", end)  # where the next increment starts
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelport.errors import NotFound
from modelport.features.views import FeatureView
from modelport.registry import schema as t


class FeatureViewStore:
    """The ``feature_views`` table, on the registry's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, view: FeatureView, *, actor: str | None = None) -> int:
        """Create or update ``view``; its revision (unchanged when the spec is). A changed
        spec forgets where materialization stopped: its next increment starts over."""
        spec = view.to_dict()
        c = t.feature_views.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.feature_views).where(c.name == view.name)).first()
            if row is not None and row.spec == spec:
                return int(row.revision)
            values = {
                "spec": spec,
                "updated_at": datetime.now(UTC),
                "updated_by": actor,
                "materialized_until": None,
            }
            if row is None:
                conn.execute(t.feature_views.insert().values(name=view.name, revision=1, **values))
                return 1
            revision = int(row.revision) + 1
            conn.execute(
                t.feature_views.update()
                .where(c.name == view.name)
                .values(revision=revision, **values)
            )
            return revision

    def get(self, name: str) -> FeatureView:
        c = t.feature_views.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.feature_views.c.spec).where(c.name == name)).first()
        if row is None:
            known = [v.name for v in self.list()]
            raise NotFound(f"feature view {name!r} does not exist", hint=f"views: {known}")
        return FeatureView.from_dict(row.spec)

    def materialized_until(self, name: str) -> datetime | None:
        """Where the last incremental materialization of ``name`` ended (UTC), if any."""
        c = t.feature_views.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(c.materialized_until).where(c.name == name)).first()
        if row is None:
            raise NotFound(f"feature view {name!r} does not exist")
        until: datetime | None = row.materialized_until
        if until is not None and until.tzinfo is None:  # SQLite keeps no zone: it is UTC
            until = until.replace(tzinfo=UTC)
        return until

    def set_materialized_until(self, name: str, until: datetime) -> None:
        c = t.feature_views.c
        with self.engine.begin() as conn:
            done = conn.execute(
                t.feature_views.update()
                .where(c.name == name)
                .values(materialized_until=until.astimezone(UTC))
            )
        if not done.rowcount:
            raise NotFound(f"feature view {name!r} does not exist")

    def list(self) -> list[FeatureView]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(t.feature_views.c.spec).order_by(t.feature_views.c.name))
            return [FeatureView.from_dict(r.spec) for r in rows]

    def delete(self, name: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(t.feature_views.delete().where(t.feature_views.c.name == name))
        if not done.rowcount:
            raise NotFound(f"feature view {name!r} does not exist")

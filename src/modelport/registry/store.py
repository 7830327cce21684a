"""The registry store: models, versions, aliases and deployments in SQL.

SQLite by default, PostgreSQL with a URL; the schema is created and evolved by
Alembic migrations the first time a store opens a database. Version numbers come
from an atomic ``UPDATE ... RETURNING`` on the model row inside the same
transaction as the insert, so concurrent registrations (threads or processes) never
share a number.

Example::

    registry = Registry("sqlite:///.modelport/registry.db")
    mv = registry.create_version("fraud", artifact=ref, flavor="sklearn", signature=sig)
    registry.set_alias("fraud", "champion", mv.version)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelport.artifacts import ArtifactRef
from modelport.errors import Conflict, NotFound
from modelport.registry import schema as t
from modelport.registry.database import create_registry_engine, database_breaker, migrate
from modelport.registry.entities import (
    Deployment,
    DeploymentEvent,
    DeploymentSpec,
    Model,
    ModelVersion,
)
from modelport.registry.entities import now as _now
from modelport.registry.entities import utc as _utc
from modelport.signature import Signature
from modelport.uri import ModelRef, check_name


class Registry:
    """Models, versions, aliases and deployments, in one SQL database."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_registry_engine(url)
        #: fails registry calls fast while a server database is away (None: SQLite)
        self.breaker = (
            None if self.engine.dialect.name == "sqlite" else database_breaker(self.engine)
        )
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- models --------------------------------------------------------------

    def _model_row(self, conn: Connection, name: str) -> Any:
        row = conn.execute(sa.select(t.models).where(t.models.c.name == name)).first()
        if row is None:
            known = conn.execute(sa.select(t.models.c.name).order_by(t.models.c.name)).scalars()
            raise NotFound(
                f"model {name!r} does not exist",
                hint=f"known models: {list(known)}; register it with `modelport models register`",
            )
        return row

    def _aliases(self, conn: Connection, model_id: int) -> dict[str, int]:
        rows = conn.execute(
            sa.select(t.aliases.c.alias, t.aliases.c.version)
            .where(t.aliases.c.model_id == model_id)
            .order_by(t.aliases.c.alias)
        )
        return {r.alias: r.version for r in rows}

    def _to_model(self, conn: Connection, row: Any) -> Model:
        return Model(
            name=row.name,
            description=row.description or "",
            owner=row.owner,
            team=row.team,
            tags=dict(row.tags or {}),
            latest_version=row.latest_version,
            aliases=self._aliases(conn, row.id),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )

    def ensure_model(
        self,
        name: str,
        *,
        owner: str | None = None,
        team: str | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Model:
        """Create the model if it does not exist; update the fields given if it does."""
        check_name("model", name)
        with self._tx() as conn:
            self._upsert_model(conn, name, owner, team, description, tags)
            return self._to_model(conn, self._model_row(conn, name))

    def _upsert_model(
        self,
        conn: Connection,
        name: str,
        owner: str | None,
        team: str | None,
        description: str | None,
        tags: dict[str, str] | None,
    ) -> int:
        row = conn.execute(sa.select(t.models).where(t.models.c.name == name)).first()
        now = _now()
        if row is None:
            try:
                # A savepoint, so that losing a race to create the same model leaves
                # this transaction usable (PostgreSQL aborts it on an error otherwise).
                with conn.begin_nested():
                    result = conn.execute(
                        t.models.insert().values(
                            name=name,
                            description=description or "",
                            owner=owner,
                            team=team,
                            tags=tags or {},
                            latest_version=0,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                return int(result.inserted_primary_key[0])  # type: ignore[index]
            except sa.exc.IntegrityError:
                row = conn.execute(sa.select(t.models).where(t.models.c.name == name)).one()
        changes: dict[str, Any] = {
            k: v
            for k, v in {
                "owner": owner,
                "team": team,
                "description": description,
                "tags": tags,
            }.items()
            if v is not None and getattr(row, k) != v
        }
        if changes:
            conn.execute(
                t.models.update().where(t.models.c.id == row.id).values(**changes, updated_at=now)
            )
        return int(row.id)

    def get_model(self, name: str) -> Model:
        with self._tx() as conn:
            return self._to_model(conn, self._model_row(conn, name))

    def list_models(self) -> list[Model]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.models).order_by(t.models.c.name)).all()
            return [self._to_model(conn, r) for r in rows]

    # -- versions ------------------------------------------------------------

    def create_version(
        self,
        name: str,
        *,
        artifact: ArtifactRef,
        flavor: str,
        signature: Signature,
        task: str = "other",
        classes: list[Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
        owner: str | None = None,
        team: str | None = None,
        profile: dict[str, Any] | None = None,
        sample_sha256: str | None = None,
        trusted: bool = False,
        compiled: dict[str, Any] | None = None,
        created_by: str | None = None,
    ) -> ModelVersion:
        """Add the next numbered version of ``name`` (creating the model if needed)."""
        check_name("model", name)
        with self._tx() as conn:
            model_id = self._upsert_model(conn, name, owner, team, None, None)
            version = conn.execute(
                t.models.update()
                .where(t.models.c.id == model_id)
                .values(latest_version=t.models.c.latest_version + 1, updated_at=_now())
                .returning(t.models.c.latest_version)
            ).scalar_one()
            conn.execute(
                t.model_versions.insert().values(
                    model_id=model_id,
                    version=version,
                    flavor=flavor,
                    artifact_sha256=artifact.sha256,
                    artifact_name=artifact.name,
                    artifact_size=artifact.size,
                    artifact_is_dir=artifact.is_dir,
                    signature=signature.to_dict(),
                    task=task,
                    classes=classes,
                    metrics=metrics or {},
                    tags=tags or {},
                    description=description,
                    owner=owner,
                    profile=profile,
                    sample_sha256=sample_sha256,
                    trusted=trusted,
                    trusted_by=created_by if trusted else None,
                    compiled=compiled,
                    created_by=created_by,
                    created_at=_now(),
                )
            )
            return self._get_version(conn, name, version)

    def _version_query(self) -> sa.Select[Any]:
        return sa.select(t.model_versions, t.models.c.name.label("model_name")).join(
            t.models, t.models.c.id == t.model_versions.c.model_id
        )

    def _to_version(self, row: Any, aliases: dict[str, int]) -> ModelVersion:
        return ModelVersion(
            name=row.model_name,
            version=row.version,
            flavor=row.flavor,
            artifact=ArtifactRef(
                sha256=row.artifact_sha256,
                name=row.artifact_name,
                size=row.artifact_size,
                is_dir=bool(row.artifact_is_dir),
            ),
            signature=Signature.from_dict(row.signature),
            task=row.task,
            classes=row.classes,
            metrics=dict(row.metrics or {}),
            tags=dict(row.tags or {}),
            description=row.description or "",
            owner=row.owner,
            profile=row.profile,
            sample_sha256=row.sample_sha256,
            trusted=bool(row.trusted),
            trusted_by=row.trusted_by,
            compiled=row.compiled,
            created_by=row.created_by,
            created_at=_utc(row.created_at),
            aliases=tuple(a for a, v in aliases.items() if v == row.version),
        )

    def _get_version(self, conn: Connection, name: str, version: int) -> ModelVersion:
        model = self._model_row(conn, name)
        row = conn.execute(
            self._version_query().where(
                t.model_versions.c.model_id == model.id, t.model_versions.c.version == version
            )
        ).first()
        if row is None:
            raise NotFound(
                f"model {name!r} has no version {version}",
                hint=f"its versions are 1..{model.latest_version}"
                if model.latest_version
                else "it has no versions yet",
            )
        return self._to_version(row, self._aliases(conn, model.id))

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._tx() as conn:
            return self._get_version(conn, name, version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._tx() as conn:
            model = self._model_row(conn, name)
            aliases = self._aliases(conn, model.id)
            rows = conn.execute(
                self._version_query()
                .where(t.model_versions.c.model_id == model.id)
                .order_by(t.model_versions.c.version)
            ).all()
            return [self._to_version(r, aliases) for r in rows]

    def find_version_by_hash(self, name: str, sha256: str) -> ModelVersion | None:
        """The newest version of ``name`` whose artifact has this digest, if any."""
        with self._tx() as conn:
            model = conn.execute(sa.select(t.models).where(t.models.c.name == name)).first()
            if model is None:
                return None
            row = conn.execute(
                self._version_query()
                .where(
                    t.model_versions.c.model_id == model.id,
                    t.model_versions.c.artifact_sha256 == sha256,
                )
                .order_by(t.model_versions.c.version.desc())
            ).first()
            return self._to_version(row, self._aliases(conn, model.id)) if row else None

    def resolve(self, ref: ModelRef) -> ModelVersion:
        """The version a URI names: by number, alias, or the latest."""
        with self._tx() as conn:
            model = self._model_row(conn, ref.name)
            if ref.alias is not None:
                aliases = self._aliases(conn, model.id)
                if ref.alias not in aliases:
                    raise NotFound(
                        f"model {ref.name!r} has no alias {ref.alias!r}",
                        hint=f"its aliases are {sorted(aliases)}; set one with "
                        f"`modelport models alias set {ref.name} {ref.alias} VERSION`",
                    )
                return self._get_version(conn, ref.name, aliases[ref.alias])
            if ref.version is None:
                if not model.latest_version:
                    raise NotFound(f"model {ref.name!r} has no versions yet")
                return self._get_version(conn, ref.name, model.latest_version)
            return self._get_version(conn, ref.name, ref.version)

    def set_trust(
        self, name: str, version: int, *, by: str | None, tags: dict[str, str]
    ) -> ModelVersion:
        """Record that ``by`` trusts loading ``name`` ``version`` (None: trust withdrawn),
        with the version's tags replaced by ``tags`` (they carry when)."""
        with self._tx() as conn:
            model_id = self._model_row(conn, name).id
            self._get_version(conn, name, version)
            conn.execute(
                t.model_versions.update()
                .where(
                    t.model_versions.c.model_id == model_id,
                    t.model_versions.c.version == version,
                )
                .values(trusted=by is not None, trusted_by=by, tags=tags)
            )
            return self._get_version(conn, name, version)

    # -- aliases -------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, actor: str | None = None) -> None:
        check_name("alias", alias)
        if alias.isdigit() or alias == "latest":
            raise Conflict(
                f"alias {alias!r} would be confused with a version",
                hint="use a word such as champion",
            )
        with self._tx() as conn:
            self._get_version(conn, name, version)
            model_id = self._model_row(conn, name).id
            key = (t.aliases.c.model_id == model_id) & (t.aliases.c.alias == alias)
            values = {"version": version, "updated_at": _now(), "updated_by": actor}
            if conn.execute(sa.select(t.aliases.c.alias).where(key)).first():
                conn.execute(t.aliases.update().where(key).values(**values))
            else:
                conn.execute(t.aliases.insert().values(model_id=model_id, alias=alias, **values))

    def delete_alias(self, name: str, alias: str) -> None:
        with self._tx() as conn:
            model_id = self._model_row(conn, name).id
            result = conn.execute(
                t.aliases.delete().where(
                    (t.aliases.c.model_id == model_id) & (t.aliases.c.alias == alias)
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"model {name!r} has no alias {alias!r}")

    # -- deployments ---------------------------------------------------------

    def _to_deployment(self, row: Any) -> Deployment:
        return Deployment(
            environment=row.environment,
            endpoint=row.endpoint,
            spec=DeploymentSpec.from_dict(row.spec),
            revision=row.revision,
            updated_at=_utc(row.updated_at),
            updated_by=row.updated_by,
        )

    def set_deployment(
        self,
        environment: str,
        endpoint: str,
        spec: DeploymentSpec,
        *,
        action: str = "deploy",
        actor: str | None = None,
        reason: str | None = None,
        expect_revision: int | None = None,
    ) -> Deployment:
        """Point ``endpoint`` in ``environment`` at ``spec``; record the change. Idempotent.

        With ``expect_revision`` the change is a compare-and-set: it is made only if the
        deployment is still at that revision (0: not deployed), else `Conflict`.
        """
        check_name("environment", environment)
        check_name("endpoint", endpoint)
        with self._tx() as conn:
            for variant in spec.variants:
                self._get_version(conn, variant.model, variant.version)
            key = (t.deployments.c.environment == environment) & (
                t.deployments.c.endpoint == endpoint
            )
            row = conn.execute(sa.select(t.deployments).where(key)).first()
            new = spec.to_dict()
            if expect_revision is not None and (row.revision if row else 0) != expect_revision:
                raise Conflict(
                    f"{environment}/{endpoint} changed while this change was prepared: it is "
                    f"at revision {row.revision if row else 0}, not {expect_revision}",
                    hint=f"look at `modelport history {endpoint} --env {environment}`",
                )
            if row is not None and row.spec == new:
                return self._to_deployment(row)
            revision = (row.revision if row else 0) + 1
            now = _now()
            values = {"spec": new, "revision": revision, "updated_at": now, "updated_by": actor}
            if row is None:
                conn.execute(
                    t.deployments.insert().values(
                        environment=environment, endpoint=endpoint, **values
                    )
                )
            else:
                conn.execute(t.deployments.update().where(key).values(**values))
            conn.execute(
                t.deployment_events.insert().values(
                    environment=environment,
                    endpoint=endpoint,
                    revision=revision,
                    action=action,
                    spec=new,
                    previous=row.spec if row else None,
                    actor=actor,
                    reason=reason,
                    created_at=now,
                )
            )
            return self._to_deployment(conn.execute(sa.select(t.deployments).where(key)).one())

    def get_deployment(self, environment: str, endpoint: str) -> Deployment:
        with self._tx() as conn:
            row = conn.execute(
                sa.select(t.deployments).where(
                    (t.deployments.c.environment == environment)
                    & (t.deployments.c.endpoint == endpoint)
                )
            ).first()
            if row is None:
                known = conn.execute(
                    sa.select(t.deployments.c.endpoint)
                    .where(t.deployments.c.environment == environment)
                    .order_by(t.deployments.c.endpoint)
                ).scalars()
                raise NotFound(
                    f"endpoint {endpoint!r} is not deployed in {environment!r}",
                    hint=f"endpoints in {environment!r}: {list(known)}",
                )
            return self._to_deployment(row)

    def list_deployments(self, environment: str | None = None) -> list[Deployment]:
        query = sa.select(t.deployments).order_by(
            t.deployments.c.environment, t.deployments.c.endpoint
        )
        if environment is not None:
            query = query.where(t.deployments.c.environment == environment)
        with self._tx() as conn:
            return [self._to_deployment(r) for r in conn.execute(query)]

    def delete_deployment(
        self, environment: str, endpoint: str, *, actor: str | None = None
    ) -> None:
        current = self.get_deployment(environment, endpoint)
        with self._tx() as conn:
            conn.execute(
                t.deployments.delete().where(
                    (t.deployments.c.environment == environment)
                    & (t.deployments.c.endpoint == endpoint)
                )
            )
            conn.execute(
                t.deployment_events.insert().values(
                    environment=environment,
                    endpoint=endpoint,
                    revision=current.revision + 1,
                    action="undeploy",
                    spec=None,
                    previous=current.spec.to_dict(),
                    actor=actor,
                    created_at=_now(),
                )
            )

    def history(self, environment: str, endpoint: str) -> list[DeploymentEvent]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(t.deployment_events)
                .where(
                    (t.deployment_events.c.environment == environment)
                    & (t.deployment_events.c.endpoint == endpoint)
                )
                .order_by(t.deployment_events.c.id)
            )
            return [
                DeploymentEvent(
                    environment=r.environment,
                    endpoint=r.endpoint,
                    revision=r.revision,
                    action=r.action,
                    spec=r.spec,
                    previous=r.previous,
                    actor=r.actor,
                    reason=r.reason,
                    created_at=_utc(r.created_at),
                )
                for r in rows
            ]

    def environments(self) -> list[str]:
        with self._tx() as conn:
            return list(
                conn.execute(
                    sa.select(t.deployments.c.environment)
                    .distinct()
                    .order_by(t.deployments.c.environment)
                ).scalars()
            )

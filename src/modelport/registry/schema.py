"""Registry tables (SQLAlchemy Core). Migrations in ``migrations/`` create and evolve them.

The same tables run on SQLite (embedded default) and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(256), nullable=True),
    sa.Column("team", sa.String(128), nullable=True),
    sa.Column("tags", sa.JSON, nullable=False, default=dict),
    sa.Column("latest_version", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("flavor", sa.String(32), nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.Column("artifact_name", sa.String(256), nullable=False),
    sa.Column("artifact_size", sa.BigInteger, nullable=False),
    sa.Column("artifact_is_dir", sa.Boolean, nullable=False, default=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("task", sa.String(32), nullable=False, default="other"),
    sa.Column("classes", sa.JSON, nullable=True),
    sa.Column("metrics", sa.JSON, nullable=False, default=dict),
    sa.Column("tags", sa.JSON, nullable=False, default=dict),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(256), nullable=True),
    sa.Column("profile", sa.JSON, nullable=True),
    sa.Column("sample_sha256", sa.String(64), nullable=True),
    sa.Column("trusted", sa.Boolean, nullable=False, default=False),
    # {"status": compiled|failed|skipped, "reason", "sha256", "name", "max_abs_diff", ...}
    sa.Column("compiled", sa.JSON, nullable=True),
    sa.Column("trusted_by", sa.String(256), nullable=True),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=True),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=True),
    sa.UniqueConstraint("environment", "endpoint", name="uq_deployments_env_endpoint"),
)

deployment_events = sa.Table(
    "deployment_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("spec", sa.JSON, nullable=True),
    sa.Column("previous", sa.JSON, nullable=True),
    sa.Column("actor", sa.String(256), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_deployment_events_env_endpoint", "environment", "endpoint"),
)

# -- watching: configuration documents, monitor runs, alert groups, incidents ----------

documents = sa.Table(
    "documents",
    metadata,
    # A named configuration document applied from modelport.yaml (e.g. "alerting").
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=True),
)

monitor_runs = sa.Table(
    "monitor_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_monitor_runs_env_endpoint_at", "environment", "endpoint", "computed_at"),
)

leases = sa.Table(
    "leases",
    metadata,
    # Who runs a singleton loop (the monitor and alert engine) among workers and replicas.
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("endpoint", sa.String(128), nullable=True),
    sa.Column("group_key", sa.String(512), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("severity", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # firing | resolved
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("alerts", sa.JSON, nullable=False),
    sa.Column("diagnosis", sa.JSON, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_incidents_env_status", "environment", "status"),
)

alert_groups = sa.Table(
    "alert_groups",
    metadata,
    # One row per (receiver, group): what was last notified. Updated with a
    # compare-and-set on ``generation`` so one notification goes out per state change
    # however many evaluators run.
    sa.Column("environment", sa.String(128), primary_key=True),
    sa.Column("group_key", sa.String(512), primary_key=True),
    sa.Column("receiver", sa.String(128), nullable=False),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # firing | resolved
    sa.Column("alerts", sa.JSON, nullable=False),  # fingerprints notified last
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("generation", sa.Integer, nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("group_key", sa.String(512), nullable=False),
    sa.Column("receiver", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_notifications_incident", "incident_id"),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    # A controlled change of one deployment. ``generation`` is bumped by every change,
    # each a compare-and-set on it, so two drivers never take the same step twice. At
    # most one rollout per endpoint is active (running or paused): ``active_key`` holds
    # "environment/endpoint" while it is, NULL after, under a unique constraint.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("active_key", sa.String(300), nullable=True, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("candidate", sa.JSON, nullable=False),  # the Variant rolled out
    sa.Column("baseline", sa.JSON, nullable=False),  # the DeploymentSpec before
    sa.Column("policy", sa.JSON, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),  # index into policy steps; -1 before
    sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("analyses", sa.JSON, nullable=False),  # one per judged interval
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("incident_id", sa.Integer, nullable=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_rollouts_env_endpoint", "environment", "endpoint"),
)

feature_views = sa.Table(
    "feature_views",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=True),
    # Where the last incremental materialization ended (its window's exclusive end).
    sa.Column("materialized_until", sa.DateTime(timezone=True), nullable=True),
)

# -- batch: scheduled jobs and the history of their runs ----------------------------

batch_jobs = sa.Table(
    "batch_jobs",
    metadata,
    # A batch job declared in modelport.yaml, per environment. ``last_scheduled_for`` is
    # the last schedule slot a scheduler claimed, moved by compare-and-set so that two
    # servers never start the same slot.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("schedule", sa.String(128), nullable=True),
    sa.Column("last_scheduled_for", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=True),
    sa.UniqueConstraint("environment", "name", name="uq_batch_jobs_env_name"),
)

batch_runs = sa.Table(
    "batch_runs",
    metadata,
    # One row per run of a job (or of a one-off spec: ``job`` NULL). ``active_key`` holds
    # "environment/job" while the run is running, NULL after, under a unique constraint:
    # one run of a job at a time, whichever process starts it. ``heartbeat_at`` moves
    # while the run is alive, so a run whose process died is seen as abandoned.
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("job", sa.String(128), nullable=True),
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule | cli | api
    sa.Column("status", sa.String(16), nullable=False),  # running | succeeded | failed
    sa.Column("active_key", sa.String(300), nullable=True, unique=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("model", sa.String(128), nullable=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("rows_in", sa.BigInteger, nullable=True),
    sa.Column("rows_out", sa.BigInteger, nullable=True),
    sa.Column("rows_rejected", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),  # e.g. nothing new: the output was there
    sa.Column("started_by", sa.String(256), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint(
        "environment", "job", "scheduled_for", name="uq_batch_runs_env_job_scheduled"
    ),
    sa.Index("ix_batch_runs_env_job_started", "environment", "job", "started_at"),
)

# -- precomputed predictions: which batch run an endpoint answers from ---------------

precomputed_publications = sa.Table(
    "precomputed_publications",
    metadata,
    # One row per endpoint: the online-store namespace holding one batch run's
    # predictions. Publishing a run writes a fresh namespace, then rewrites this row in
    # one transaction, so a reader sees one run or the other, never a mix.
    # ``retired_namespace`` is the one it pointed at before, until its rows are deleted.
    sa.Column("environment", sa.String(128), primary_key=True),
    sa.Column("endpoint", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("namespace", sa.String(512), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("id_columns", sa.JSON, nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_by", sa.String(256), nullable=True),
    sa.Column("retired_namespace", sa.String(512), nullable=True),
)

# -- API keys: who may call the server, and what for ---------------------------------

api_keys = sa.Table(
    "api_keys",
    metadata,
    # ``id`` is the key's public part (``mp_<id>_<secret>``), for lookup and revocation;
    # only the SHA-256 of the whole key is kept, never the key itself. A name is held
    # by one active key at a time (the partial unique index), so a revoked key's name
    # can be given to its replacement.
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("endpoints", sa.JSON, nullable=True),
    sa.Column("rate_limit", sa.Float, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_by", sa.String(256), nullable=True),
    sa.Index(
        "ux_api_keys_active_name",
        "name",
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    ),
)

"""Watching: configuration documents, monitor runs, leases, incidents, alert groups,
notification attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=True),
    )
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("computed_at", TS, nullable=False),
        sa.Index("ix_monitor_runs_env_endpoint_at", "environment", "endpoint", "computed_at"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "incidents",
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
        sa.Column("started_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Index("ix_incidents_env_status", "environment", "status"),
    )
    op.create_table(
        "alert_groups",
        sa.Column("environment", sa.String(128), primary_key=True),
        sa.Column("group_key", sa.String(512), primary_key=True),
        sa.Column("receiver", sa.String(128), nullable=False),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),  # firing | resolved
        sa.Column("alerts", sa.JSON, nullable=False),  # fingerprints notified last
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("notified_at", TS, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.create_table(
        "notifications",
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
        sa.Column("created_at", TS, nullable=False),
        sa.Index("ix_notifications_incident", "incident_id"),
    )


def downgrade() -> None:
    for name in (
        "notifications",
        "alert_groups",
        "incidents",
        "leases",
        "monitor_runs",
        "documents",
    ):
        op.drop_table(name)

"""Settings: one object, read from ``MODELPORT_*`` environment variables and arguments.

Built once (by the CLI, the app factory or `modelport.Client`) and passed down;
nothing reads the environment at import time.

Example::

    settings = Settings(home="/srv/modelport", registry_url="postgresql://db/modelport")
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where state lives and how the server behaves."""

    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="forbid")

    home: Path = Field(
        default=Path(".modelport"),
        description="Folder for all embedded state: registry database, artifacts.",
    )
    registry_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry database; default: SQLite file in home. "
        "postgresql://user@host/db uses PostgreSQL (psycopg 3).",
    )
    artifact_root: Path | None = Field(
        default=None,
        description="Folder of the content-addressed artifact store; default home/artifacts.",
    )
    env: str = Field(default="production", description="Environment a server serves.")
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=8000, description="Port the server listens on.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, description="Largest request body accepted (413 above it)."
    )
    max_loaded_models: int = Field(
        default=32, description="Most model versions kept in memory; least recently used go first."
    )
    max_loaded_bytes: int | None = Field(
        default=None,
        description="Memory budget in bytes for loaded models (artifact size as the estimate).",
    )
    load_mode: Literal["eager", "lazy"] = Field(
        default="eager",
        description="eager: load every deployed model at start; lazy: on first request.",
    )
    load_wait_seconds: float = Field(
        default=5.0,
        description="How long a request waits for its model to finish loading before a 503.",
    )
    shadow_max_pending: int = Field(
        default=8,
        ge=0,
        description="Shadow requests queued or running per server process; more are shed "
        "(counted, never waited for). 0 turns shadows off.",
    )
    shadow_threads: int = Field(
        default=1,
        ge=1,
        description="Threads that run shadow variants, apart from the live requests' threads.",
    )
    rollout_interval_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often a server checks running rollouts and followed aliases "
        "(0: never; another server must drive them).",
    )
    batch_interval_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How often a server starts the scheduled batch jobs of its environment "
        "whose time has come (0: never; another server or an external scheduler runs them).",
    )
    online_store: str = Field(
        default="sqlite",
        description="Where online features live: sqlite (a file in home, shared by the "
        "server and the CLI), memory (this process only), or a redis:// URL.",
    )
    feature_timeout_seconds: float = Field(
        default=0.25,
        gt=0,
        description="Longest wait for the online store on a prediction before it fails "
        "with 503 (or uses the views' defaults).",
    )
    stream_url: str | None = Field(
        default=None,
        description="redis:// URL of the event streams (Redis Streams); default: the "
        "online store's Redis, else an in-process queue.",
    )
    poll_interval_seconds: float = Field(
        default=1.0, description="How often the server checks the registry for changes."
    )
    runtime_threads: int = Field(
        default=1, description="Threads each loaded model may use (intra-op / OpenMP)."
    )
    compile_models: bool = Field(
        default=True,
        description="Convert tree and linear models to ONNX at registration (verified on "
        "the sample) so endpoints can serve the compiled form.",
    )
    workers: int = Field(
        default=0, description="Server processes behind one port; 0 means one per CPU core."
    )
    user: str | None = Field(
        default=None, description="Who is acting, recorded on registrations and deployments."
    )
    log_dir: Path | None = Field(
        default=None,
        description="Folder of the prediction log and labels (Parquet segments); "
        "default home/logs.",
    )
    log_sample_rate: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of requests written to the prediction log."
    )
    log_flush_seconds: float = Field(
        default=1.0, gt=0, description="How often buffered log records are written out."
    )
    log_buffer_rows: int = Field(
        default=200_000,
        ge=1,
        description="Most rows waiting to be written; above it records are dropped and counted.",
    )
    log_retention_days: int = Field(
        default=30, ge=1, description="Days of prediction log and labels kept; older are deleted."
    )
    watch_in_server: bool = Field(
        default=True,
        description="Whether each server process runs the watch loops (monitor, alerts, "
        "rollouts, batch schedule) itself; a multi-worker server runs them in one process "
        "of their own instead, away from the requests.",
    )
    monitor_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the server computes drift and evaluates alert rules; 0 turns "
        "the built-in monitor off.",
    )
    monitor_window: str = Field(
        default="1h", description="Window drift is computed over: a duration (1h, 30m) or rows."
    )
    monitor_max_rows: int = Field(
        default=100_000,
        ge=1_000,
        description="Most logged rows one drift report reads: the window's newest, so a "
        "busy endpoint's report costs the same memory as a quiet one's.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL of this server as people reach it, used for links in alerts; "
        "default http://host:port.",
    )

    @property
    def database_url(self) -> str:
        if self.registry_url:
            return normalize_db_url(self.registry_url)
        return f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def artifacts_path(self) -> Path:
        return self.artifact_root or self.home / "artifacts"

    @property
    def logs_path(self) -> Path:
        return self.log_dir or self.home / "logs"

    @property
    def online_path(self) -> Path:
        """The SQLite online store's file."""
        return self.home / "online.db"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def normalize_db_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url

"""Settings: one object, read from ``MODELPORT_*`` environment variables and arguments.

Built once (by the CLI, the app factory or `modelport.Client`) and passed down;
nothing reads the environment at import time.

Example::

    settings = Settings(home="/srv/modelport", registry_url="postgresql://db/modelport")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
    max_rows_per_request: int = Field(
        default=10_000,
        ge=1,
        description="Most rows one predict request may carry (413 above it); an endpoint's "
        "serving.max_rows_per_request overrides it.",
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Deadline of a predict request (504 past it, its queued work dropped); "
        "a request may ask for less with ?timeout= or a Request-Timeout header, never more.",
    )
    rate_limit_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Requests per second allowed per API key (or per client address without "
        "auth) across all workers; 429 with Retry-After above it. A key's own rate_limit "
        "overrides it. None: no limit.",
    )
    rate_limit_burst: float | None = Field(
        default=None,
        ge=1,
        description="Requests a key or client may send at once after a quiet spell; "
        "default: one second's worth of its rate (at least 1).",
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
    shutdown_grace_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest a server takes to stop after SIGTERM: drain, finish the "
        "requests in flight, flush the logs; then it exits (workers still running are "
        "killed). Keep it at or below Kubernetes' terminationGracePeriodSeconds.",
    )
    drain_seconds: float = Field(
        default=0.0,
        ge=0,
        description="After SIGTERM, keep accepting and answering requests this long with "
        "readiness false, so load balancers stop sending before the listener closes "
        "(a few seconds in Kubernetes); counted within shutdown_grace_seconds.",
    )
    tls_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain) to serve HTTPS with; needs tls_keyfile.",
    )
    tls_keyfile: Path | None = Field(
        default=None, description="PEM private key of tls_certfile; needs tls_certfile."
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
    auth: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Whether the server asks for API keys (`modelport keys`): on, off, or "
        "auto: on whenever host is not a loopback address (127.0.0.0/8, ::1, localhost). "
        "Active keys are reloaded every poll_interval_seconds, so a revoked key stops "
        "working within that time.",
    )
    allowed_roots: list[Path] | None = Field(
        default=None,
        description="Folders a batch job started over HTTP may read and write locally "
        "(its input and output must resolve inside one of them, or inside home); default: "
        "any local path, since job specs come from modelport.yaml.",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="Let work started over HTTP fetch from loopback and private addresses "
        "(link-local and cloud metadata addresses are refused always).",
    )
    http_trust: bool = Field(
        default=False,
        description="Let POST /v1/models/{name}/versions register a code-running artifact "
        "(pickle, custom model) with trust=true; off, such artifacts are registered from "
        "the CLI or modelport.yaml only.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            given, missing = (
                ("tls_certfile", "tls_keyfile")
                if self.tls_keyfile is None
                else ("tls_keyfile", "tls_certfile")
            )
            raise ValueError(
                f"{given} is set but {missing} is not: HTTPS needs both the certificate "
                "and its key (set MODELPORT_TLS_CERTFILE and MODELPORT_TLS_KEYFILE, or "
                "--tls-cert and --tls-key), or neither for plain HTTP"
            )
        if self.drain_seconds >= self.shutdown_grace_seconds:
            raise ValueError(
                f"drain_seconds ({self.drain_seconds:g}) must be below "
                f"shutdown_grace_seconds ({self.shutdown_grace_seconds:g}): the requests "
                "in flight and the log flush need time after the drain"
            )
        return self

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
    def data_roots(self) -> list[Path] | None:
        """Where local batch paths started over HTTP may be (None: anywhere)."""
        if self.allowed_roots is None:
            return None
        return [self.home, self.artifacts_path, *self.allowed_roots]

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def worker_count(settings: Settings) -> int:
    """The server's worker processes: ``workers``, or one per CPU core when 0."""
    return settings.workers or os.cpu_count() or 1


def normalize_db_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url

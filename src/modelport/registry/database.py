"""The registry's database: engines tuned per backend, and schema migrations.

SQLite runs in WAL mode with write-locking transactions (``BEGIN IMMEDIATE``);
PostgreSQL through psycopg 3. Alembic migrations in ``migrations/`` bring a database to
the newest schema the first time a process opens it, one process at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext

from modelport.breaker import CircuitBreaker
from modelport.errors import Unavailable

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration; `migrate` skips Alembic entirely when the database has it.
HEAD_REVISION = "0008"
_PG_MIGRATION_LOCK = 0x6D6F_6465  # "mode": one migration at a time per database
#: Seconds a new server-database connection may take (unless the URL says otherwise).
CONNECT_TIMEOUT_S = 5


def create_registry_engine(url: str) -> Engine:
    """An engine tuned for the registry: SQLite in WAL mode with write-locking transactions."""
    if not url.startswith("sqlite"):
        # Connecting to an unreachable host fails in seconds, not the OS's minutes.
        connect_args = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT_S}
        return sa.create_engine(url, pool_pre_ping=True, future=True, connect_args=connect_args)
    db_path = url.split("///", 1)[-1]
    if db_path and db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN below
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock up front: two writers never both read the same
        # latest_version and then fail to upgrade their lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def database_breaker(engine: Engine) -> CircuitBreaker:
    """A circuit breaker on ``engine``'s connections (a server database's, not SQLite's).

    A connection that cannot be made or is lost raises `Unavailable` naming the
    database instead of the driver's error (503 at the HTTP edge); after three in a row
    no connection is tried for two seconds (calls fail at once), then one is.
    """
    where = f"{engine.url.host}:{engine.url.port or 5432}/{engine.url.database}"
    breaker = CircuitBreaker(
        f"the registry database at {where}",
        effect="loaded models keep serving; registry reads and writes fail until it is back",
        hint=f"check it with: pg_isready -h {engine.url.host} -p {engine.url.port or 5432}",
    )

    @event.listens_for(engine, "do_connect")
    def _refuse_while_open(*_args: Any) -> None:
        breaker.check()  # returning None: the dialect connects as usual

    @event.listens_for(engine, "checkout")
    def _reached(*_args: Any) -> None:
        breaker.success()

    @event.listens_for(engine, "handle_error")
    def _unreachable(context: ExceptionContext) -> None:
        error = context.original_exception
        if not (context.is_disconnect or _unreachable_error(error, engine)):
            return  # a query's own error (a deadlock, a constraint): the database answered
        breaker.failure(_first_line(error))
        raise Unavailable(
            f"the registry database at {where} is unreachable ({_first_line(error)}); "
            "loaded models keep serving, registry reads and writes fail until it is back",
            hint=breaker.hint,
        ) from error

    return breaker


#: SQLSTATEs of a server that is going or gone: connection exceptions (class 08),
#: administrator or crash shutdown, cannot connect now (starting up or recovering).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")


def _unreachable_error(error: BaseException, engine: Engine) -> bool:
    """An error of reaching the database (no SQLSTATE: refused, timed out, reset; or a
    state of a server shutting down), not of a statement it ran."""
    if not isinstance(error, engine.dialect.loaded_dbapi.OperationalError):
        return False
    state: str | None = getattr(error, "sqlstate", None)
    return state is None or state.startswith(_UNREACHABLE_STATES)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration, one process at a time."""
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

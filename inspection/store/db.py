"""Opening the results database: URL normalisation, SQLite pragmas, and migrating to head.

A station is an unattended process, so every way this can go wrong (bad URL, missing driver,
unreachable server, failed migration) ends in one ``StoreError`` whose message says what to fix, with
the password hidden; the third-party exception stays attached as ``__cause__`` for the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.schema import Table

from inspection.errors import ConflictError, StoreError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""Found next to this module, so migrations run from an installed package and from any cwd."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another one (the API process, a report) before giving up."""

SQLITE_SYNCHRONOUS = "FULL"
"""Durable on power loss, not only on a process crash: see ``_sqlite_pragmas`` and the README."""

_POSTGRES_ALIASES = ("postgres", "postgresql", "postgresql+psycopg2")


def normalise_url(url: str) -> URL:
    """Parse ``url``; a plain ``postgresql://`` or ``postgres://`` URL gets the installed psycopg 3 driver.

    Operators paste URLs from their database's admin page; those never name the Python driver.
    """
    if not url or not url.strip():
        raise StoreError("database URL is empty: set QC_DATABASE_URL or leave it unset for SQLite")
    try:
        parsed = make_url(url.strip())
    except ArgumentError as e:
        raise StoreError(f"database URL {url!r} does not parse: expected e.g. "
                         f"sqlite:////path/qcline.db or postgresql://user@host:5432/db ({e})") from e
    if parsed.drivername in _POSTGRES_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe(url: URL) -> str:
    """The URL as it may appear in logs and error messages: password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: WAL so readers never block the line's writer, enforced FKs.

    ``synchronous=FULL``: every commit fsyncs the WAL, so a result acknowledged to a camera survives a power
    loss, not only a process crash (with NORMAL, WAL commits reach the disk only at the next checkpoint: a
    ``kill -9`` loses nothing, a power cut may lose the last transactions). Group commit keeps that to one
    fsync per group of results.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def insert_ignore(dialect: str, table: Table, index_elements: Sequence[str]) -> Insert:
    """``INSERT .. ON CONFLICT (..) DO NOTHING`` for the backend: atomic, unlike a pre-check, when two
    processes write the same row at once."""
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
    raise StoreError(f"unsupported database backend {dialect!r}: use SQLite or PostgreSQL")


def create_store_engine(url: str) -> Engine:
    """An ``Engine`` for ``url`` with the settings the results log relies on; no migration, no I/O
    beyond creating the SQLite file's folder."""
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"database URL {describe(parsed)}: {backend!r} is not supported "
                         "(use sqlite:////path/qcline.db or postgresql://user@host:5432/db)")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise StoreError(f"SQLite URL {describe(parsed)} must name a file: the results log must "
                             "survive a restart (e.g. sqlite:////var/lib/qcline/qcline.db)")
        try:
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder for SQLite database {database}: {e}") from e
        kwargs = {}
    elif backend == "postgresql":
        # A network that silently drops packets must surface as an error within seconds, not after the kernel's
        # minutes of retransmissions: a station with an outbox then diverts results there instead of hanging.
        kwargs["connect_args"] = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5,
                                  "keepalives_interval": 2, "keepalives_count": 3, "tcp_user_timeout": 10_000}
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as e:
        raise StoreError(f"database URL {describe(parsed)}: unsupported database or driver "
                         f"{parsed.drivername!r} (use sqlite:/// or postgresql://)") from e
    except ImportError as e:
        raise StoreError(f"database URL {describe(parsed)}: the driver is not installed ({e})") from e
    except ArgumentError as e:
        raise StoreError(f"database URL {describe(parsed)} cannot be used: {e}") from e
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config() -> Config:
    """An Alembic ``Config`` built in code: no ``alembic.ini`` and no cwd assumptions."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (default: the newest)."""
    _migrate(engine, revision, downgrade=False)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate down to ``revision`` (``"base"`` drops every table). For tests and rollbacks."""
    _migrate(engine, revision, downgrade=True)


def _migrate(engine: Engine, revision: str, *, downgrade: bool) -> None:
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            if downgrade:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
    except SQLAlchemyError as e:
        raise StoreError(f"migrating {describe(engine.url)} to {revision} failed: {e}") from e
    except Exception as e:  # alembic raises CommandError and plain errors for a broken history
        raise StoreError(f"migrating {describe(engine.url)} to {revision} failed: "
                         f"{type(e).__name__}: {e}") from e


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    except SQLAlchemyError as e:
        raise StoreError(f"cannot read the schema version of {describe(engine.url)}: {e}") from e
    return None if row is None else str(row[0])


def open_database(url: str) -> Engine:
    """Connect to ``url``, check that it answers, and migrate it to head.

    Raises ``StoreError`` naming the (password-less) URL when the database is unreachable or the URL is
    unusable, instead of failing at the first frame with a driver traceback.
    """
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as e:
        engine.dispose()
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise StoreError(f"cannot connect to the results database at {describe(engine.url)}: {reason}") from e
    try:
        upgrade(engine)
    except StoreError:
        engine.dispose()
        raise
    log.info("results database %s at revision %s", describe(engine.url), current_revision(engine))
    return engine


class Database:
    """What every repository on the qcline database shares: an engine, one transaction per call, errors
    wrapped once. Subclasses name themselves (``label``) so a failure says which part of the system broke;
    ``integrity_is_conflict`` turns unique-constraint races into ``ConflictError`` ("retry") instead of
    ``StoreError``."""

    label = "database"
    integrity_is_conflict = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        """Release pooled connections (the database itself stays as it is)."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        """One transaction: everything inside commits together or not at all."""
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError as e:
            if self.integrity_is_conflict:
                raise ConflictError(f"{self.label}: {action} conflicts with a concurrent change, "
                                    f"retry: {e.orig}") from e
            raise StoreError(f"{self.label} ({describe(self.engine.url)}): {action} failed: {e}") from e
        except SQLAlchemyError as e:
            raise StoreError(f"{self.label} ({describe(self.engine.url)}): {action} failed: {e}") from e

"""Alembic environment for the results log.

Stations run migrations programmatically (``inspection.store.db.open_database``), handing over an open
connection in ``config.attributes["connection"]`` so the migration uses exactly the engine, pragmas and
credentials the station uses. The ``sqlalchemy.url`` branch only serves developers running the
``alembic`` command with ``inspection/store/alembic.ini``. Logging is deliberately not configured here:
an application's logging setup must not be replaced by a migration.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from inspection.store.tables.base import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection in config.attributes and no sqlalchemy.url in the config")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

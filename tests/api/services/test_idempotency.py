"""The replay rules over kept answers (SQLite in ``tmp_path``): the same request gets the first answer, another
request under the same key is a conflict, and answers given while the central database is away are kept in
the station's outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from api.services.idempotency import IdempotencyStore, StoredAnswer
from inspection.errors import ConflictError, QCError
from inspection.store.db import open_database
from inspection.store.idempotency import IdempotencyRepository
from inspection.store.outbox import Outbox


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IdempotencyStore]:
    repository = IdempotencyRepository(open_database(f"sqlite:///{tmp_path / 'qcline.db'}"))
    local = Outbox(tmp_path / "outbox.db")
    try:
        yield IdempotencyStore(repository, local=local)
    finally:
        local.close()
        repository.close()


def test_the_first_answer_is_replayed_to_the_same_request_only(store: IdempotencyStore) -> None:
    assert store.lookup("key-1", "k", "h1") is None
    store.save("key-1", "k", "h1", StoredAnswer(200, {"verdict": "PASS"}))
    store.save("key-1", "k", "h1", StoredAnswer(200, {"verdict": "FAIL"}))  # a later answer never replaces it
    assert store.lookup("key-1", "k", "h1") == StoredAnswer(200, {"verdict": "PASS"})
    assert store.lookup("key-2", "k", "h1") is None  # scoped per API key
    with pytest.raises(ConflictError, match="different request"):
        store.lookup("key-1", "k", "h2")
    assert store.count() == 1
    assert store.purge(48) == 0 and store.purge(-1) == 1 and store.count() == 0


def test_answers_given_while_the_database_is_away_are_kept_locally(store: IdempotencyStore) -> None:
    with store.repository.engine.begin() as connection:
        connection.execute(text("ALTER TABLE idempotency_keys RENAME TO idempotency_keys_away"))
    store.save("key-1", "k", "h1", StoredAnswer(200, {"verdict": "PASS"}))
    assert store.lookup("key-1", "k", "h1") == StoredAnswer(200, {"verdict": "PASS"})
    with pytest.raises(ConflictError):
        store.lookup("key-1", "k", "h2")


@pytest.mark.parametrize("key", ["", "   ", "k" * 257, "tab\there"])
def test_a_malformed_key_is_refused(key: str) -> None:
    with pytest.raises(QCError, match="Idempotency-Key"):
        IdempotencyStore.check_key(key)

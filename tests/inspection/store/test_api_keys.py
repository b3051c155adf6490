"""API keys and review-page sessions on SQLite and PostgreSQL: keys found by hash only, revoking keeps the
first time and ends the key's sessions, expired sessions are swept when a new one starts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from inspection.errors import NotFoundError, StoreError
from inspection.store.api_keys import ApiKeyRecord, ApiKeyRepository, ValidKey
from inspection.store.db import open_database
from inspection.store.tables.base import utcnow


@pytest.fixture
def keys(db_url: str) -> Iterator[ApiKeyRepository]:
    repository = ApiKeyRepository(open_database(db_url))
    try:
        yield repository
    finally:
        repository.close()


def test_a_key_is_stored_and_found_by_its_hash(keys: ApiKeyRepository) -> None:
    cam = keys.add("cam-1", "camera", "a" * 64, "qck_aaaaaa")
    op = keys.add("op-1", "operator", "b" * 64, "qck_bbbbbb")
    assert isinstance(cam, ApiKeyRecord) and op.id > cam.id
    assert (cam.name, cam.role, cam.prefix, cam.revoked_at) == ("cam-1", "camera", "qck_aaaaaa", None)
    assert keys.by_hash("a" * 64) == cam
    assert keys.by_hash("c" * 64) is None
    assert keys.all() == [cam, op]


def test_the_same_hash_cannot_be_stored_twice(keys: ApiKeyRepository) -> None:
    keys.add("cam-1", "camera", "a" * 64, "qck_aaaaaa")
    with pytest.raises(StoreError, match="key store"):
        keys.add("cam-2", "camera", "a" * 64, "qck_aaaaaa")


def test_revoking_keeps_the_first_time_and_ends_the_keys_sessions(keys: ApiKeyRepository) -> None:
    cam = keys.add("cam-1", "camera", "a" * 64, "qck_aaaaaa")
    op = keys.add("op-1", "operator", "b" * 64, "qck_bbbbbb")
    now = utcnow()
    keys.add_session("s" * 64, cam.id, now, now + timedelta(hours=1))
    keys.add_session("t" * 64, op.id, now, now + timedelta(hours=1))
    first = keys.revoke(cam.id)
    assert first.revoked_at is not None and keys.by_hash("a" * 64) == first
    assert keys.revoke(cam.id).revoked_at == first.revoked_at
    assert keys.session("s" * 64) is None  # the revoked key's session is gone, the other key's is not
    other = keys.session("t" * 64)
    assert other is not None and other.key == op
    assert keys.valid() == [ValidKey("b" * 64, op.id, "op-1", "operator")]
    with pytest.raises(NotFoundError, match="API key 999"):
        keys.revoke(999)


def test_a_session_is_read_with_its_key_and_expired_ones_are_swept(keys: ApiKeyRepository) -> None:
    cam = keys.add("cam-1", "camera", "a" * 64, "qck_aaaaaa")
    now = utcnow()
    keys.add_session("old" + "0" * 61, cam.id, now - timedelta(hours=3), now - timedelta(hours=1))
    found = keys.session("old" + "0" * 61)
    assert found is not None and found.key == cam  # an expired session is still read: expiry is the caller's
    keys.add_session("new" + "0" * 61, cam.id, now, now + timedelta(hours=8))
    assert keys.session("old" + "0" * 61) is None  # swept when the next session started
    fresh = keys.session("new" + "0" * 61)
    assert fresh is not None and fresh.expires_at > now
    keys.end_session("new" + "0" * 61)
    assert keys.session("new" + "0" * 61) is None
    keys.end_session("new" + "0" * 61)  # ending it twice is fine


def test_a_database_that_is_away_is_a_store_error_naming_the_key_store(tmp_path) -> None:
    from sqlalchemy import text

    engine = open_database(f"sqlite:///{tmp_path / 'qcline.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE api_keys RENAME TO api_keys_away"))
        with pytest.raises(StoreError, match=r"key store .*checking an API key failed"):
            ApiKeyRepository(engine).by_hash("a" * 64)
    finally:
        engine.dispose()

"""The key service's rules over its repository (SQLite in ``tmp_path``): revoked keys and ended or expired
sessions are refused, and a station whose central database is away checks keys against its outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from api.services.auth import KEY_PREFIX, ApiKeyService, AuthError, Role, hash_secret
from inspection.errors import StoreError
from inspection.store.api_keys import ApiKeyRepository
from inspection.store.db import open_database
from inspection.store.outbox import Outbox


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    local = Outbox(tmp_path / "outbox.db")
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def keys(tmp_path: Path, outbox: Outbox) -> Iterator[ApiKeyService]:
    with ApiKeyService(ApiKeyRepository(open_database(f"sqlite:///{tmp_path / 'qcline.db'}")),
                       local=outbox) as service:
        yield service


def _database_away(keys: ApiKeyService) -> None:
    with keys.repository.engine.begin() as connection:  # every query on the keys fails as if it were away
        connection.execute(text("ALTER TABLE api_keys RENAME TO api_keys_away"))


def test_only_the_hash_is_stored_and_a_revoked_key_is_refused(keys: ApiKeyService) -> None:
    secret, record = keys.create(Role.CAMERA, "cam-1")
    assert secret.startswith(KEY_PREFIX) and record.prefix == secret[:10] and record.revoked_at is None
    assert keys.repository.by_hash(hash_secret(secret)) is not None
    assert keys.authenticate(secret).key_id == record.id
    revoked = keys.revoke(record.id)
    assert revoked.revoked_at is not None and keys.list() == [revoked]
    with pytest.raises(AuthError, match="revoked"):
        keys.authenticate(secret)


@pytest.mark.parametrize("secret", ["", "qck_unknown", "x" * 257])
def test_unknown_or_malformed_keys_are_refused(keys: ApiKeyService, secret: str) -> None:
    with pytest.raises(AuthError):
        keys.authenticate(secret)


def test_a_session_ends_when_signed_out_expired_or_its_key_is_revoked(keys: ApiKeyService) -> None:
    secret, record = keys.create(Role.OPERATOR, "op-1")
    token, principal = keys.start_session(secret, hours=8)
    assert keys.session_principal(token) == principal
    keys.end_session(token)
    with pytest.raises(AuthError, match="not signed in"):
        keys.session_principal(token)
    expired, _ = keys.start_session(secret, hours=-1)
    with pytest.raises(AuthError, match="expired"):
        keys.session_principal(expired)
    kept, _ = keys.start_session(secret, hours=8)
    keys.revoke(record.id)
    with pytest.raises(AuthError):
        keys.session_principal(kept)


def test_while_the_database_is_away_keys_known_to_the_station_still_work(keys: ApiKeyService) -> None:
    known, record = keys.create(Role.CAMERA, "cam-1")
    other, _ = keys.create(Role.CAMERA, "cam-2")
    assert keys.authenticate(known).key_id == record.id  # checked centrally once: cached in the outbox
    _database_away(keys)
    assert keys.authenticate(known).name == "cam-1"  # from the outbox
    with pytest.raises(StoreError, match="key store"):
        keys.authenticate(other)  # never checked here: the station cannot vouch for it


def test_sync_local_keeps_the_valid_keys_only(keys: ApiKeyService, outbox: Outbox) -> None:
    valid, record = keys.create(Role.CAMERA, "cam-1")
    gone, gone_record = keys.create(Role.CAMERA, "cam-2")
    keys.authenticate(gone)
    keys.revoke(gone_record.id)
    assert keys.sync_local() == 1
    assert outbox.cached_key(hash_secret(valid)) == (record.id, "cam-1", "camera")
    assert outbox.cached_key(hash_secret(gone)) is None

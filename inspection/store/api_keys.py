"""The service's API keys and review-page sessions (tables ``api_keys`` and ``web_sessions``).

Only hashes are stored and looked up here: making secrets, hashing them, roles, the cache and the expiry
policy are the key service's (``api/services/auth.py``); this module only reads and writes rows, one
transaction per call, and hands back frozen records, never ORM rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from inspection.errors import NotFoundError
from inspection.store.db import Database
from inspection.store.tables.base import utcnow
from inspection.store.tables.service import ApiKeyRow, WebSessionRow


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: never its secret, only the first characters to recognise it by."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ValidKey:
    """A key not revoked, with its hash: what a station caches to check keys while the database is away."""

    key_hash: str
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class SessionRecord:
    """A review-page session and the key it was signed in with (the key may have been revoked since)."""

    expires_at: datetime
    key: ApiKeyRecord


def _record(row: ApiKeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(row.id, row.name, row.role, row.prefix, row.created_at, row.revoked_at)


class ApiKeyRepository(Database):
    """Reads and writes ``api_keys`` and ``web_sessions`` on the service's database."""

    label = "key store"

    # -- keys -------------------------------------------------------------------------------------------

    def add(self, name: str, role: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        """Store a new key by its hash; its id is given by the database."""
        with self._session("creating an API key") as session:
            row = ApiKeyRow(name=name, role=role, key_hash=key_hash, prefix=prefix, created_at=utcnow(),
                            revoked_at=None)
            session.add(row)
            session.flush()
            return _record(row)

    def all(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones too, oldest first."""
        with self._session("listing API keys") as session:
            return [_record(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, key_id: int) -> ApiKeyRecord:
        """Mark the key revoked (revoking twice keeps the first time) and delete its sessions, in one
        transaction; ``NotFoundError`` if there is no such key."""
        with self._session("revoking an API key") as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"API key {key_id} does not exist")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            session.execute(delete(WebSessionRow).where(WebSessionRow.api_key_id == key_id))
            return _record(row)

    def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, revoked or not (one indexed lookup)."""
        with self._session("checking an API key") as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)).first()
            return None if row is None else _record(row)

    def valid(self) -> list[ValidKey]:
        """Every key not revoked, with its hash."""
        with self._session("listing valid API keys") as session:
            rows = session.execute(select(ApiKeyRow.key_hash, ApiKeyRow.id, ApiKeyRow.name, ApiKeyRow.role)
                                   .where(ApiKeyRow.revoked_at.is_(None))).all()
        return [ValidKey(key_hash, key_id, name, role) for key_hash, key_id, name, role in rows]

    # -- review page sessions ---------------------------------------------------------------------------

    def add_session(self, token_hash: str, key_id: int, created_at: datetime, expires_at: datetime) -> None:
        """Store a session; sessions that expired before ``created_at`` are deleted in the same transaction,
        so the table holds no more than the sessions still open."""
        with self._session("starting a session") as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < created_at))
            session.add(WebSessionRow(token_hash=token_hash, api_key_id=key_id, created_at=created_at,
                                      expires_at=expires_at))

    def session(self, token_hash: str) -> SessionRecord | None:
        """The session with this token hash and its key, whether or not either is still valid."""
        with self._session("checking a session") as session:
            found = session.execute(
                select(WebSessionRow, ApiKeyRow).join(ApiKeyRow, ApiKeyRow.id == WebSessionRow.api_key_id)
                .where(WebSessionRow.token_hash == token_hash)).first()
            if found is None:
                return None
            web, key = found
            return SessionRecord(web.expires_at, _record(key))

    def end_session(self, token_hash: str) -> None:
        """Delete the session (nothing happens if there is none)."""
        with self._session("ending a session") as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.token_hash == token_hash))


__all__ = ["ApiKeyRecord", "ApiKeyRepository", "SessionRecord", "ValidKey"]

"""API keys per role, stored hashed, and review page sessions.

Roles are disjoint duties, not a ladder: a camera key can only send frames, so a key copied out of a
camera's config cannot change a model. ``admin`` manages keys and may do everything else, so one person
can recover a station whose other keys are lost.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from inspection.errors import NotFoundError, QCError, StoreError
from inspection.store.db import Database, open_database
from inspection.store.outbox import Outbox
from inspection.store.tables.base import utcnow
from inspection.store.tables.service import ApiKeyRow, WebSessionRow

log = logging.getLogger(__name__)

KEY_PREFIX = "qck_"
SESSION_COOKIE = "qc_session"


class Role(enum.StrEnum):
    CAMERA = "camera"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    ADMIN = "admin"
    METRICS = "metrics"
    """May only read ``/metrics`` (a Prometheus scraper's key)."""

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise QCError(f"role {text!r} must be one of {', '.join(r.value for r in cls)}") from None


class AuthError(QCError):
    """No credentials, or credentials that are unknown, revoked or expired (HTTP 401)."""


class ForbiddenError(QCError):
    """Valid credentials whose role may not do this (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name (recorded as the actor of reviews and promotions) and role."""

    key_id: int
    name: str
    role: Role

    def allowed(self, roles: frozenset[Role]) -> bool:
        return self.role is Role.ADMIN or self.role in roles


@dataclass(frozen=True)
class KeyRecord:
    """An API key as stored: never its secret, only the first characters to recognise it by."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    revoked_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "prefix": self.prefix,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyService(Database):
    """Create, list, revoke and check API keys; sign review-page sessions in and out.

    Every request checks its key against the database (one indexed lookup, well under a millisecond): a
    key revoked by any process (``qcline keys revoke``, another service worker) stops working at once in
    every process. ``cache_s`` > 0 caches verified keys in this process for that long, trading that
    guarantee for one query less per request; it is off by default.
    """

    label = "key store"

    def __init__(self, engine: Engine, *, cache_s: float = 0.0, local: Outbox | None = None) -> None:
        super().__init__(engine)
        self.cache_s = cache_s
        self.local = local
        """The station's outbox file: keys checked centrally are cached there (hashes only), so cameras keep
        working while the central database is unreachable."""
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._cached_locally: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> ApiKeyService:
        return cls(open_database(url))

    # -- keys -------------------------------------------------------------------------------------------

    def create(self, role: Role | str, name: str = "") -> tuple[str, KeyRecord]:
        """A new key of ``role``: returns the secret (shown once, never stored) and its record."""
        role = role if isinstance(role, Role) else Role.parse(role)
        name = (name or f"{role.value}-key").strip()
        if not 0 < len(name) <= 128:
            raise QCError("a key name must be 1-128 characters")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._session("creating an API key") as session:
            row = ApiKeyRow(name=name, role=role.value, key_hash=hash_secret(secret), prefix=secret[:10],
                            created_at=utcnow(), revoked_at=None)
            session.add(row)
            session.flush()
            record = self._record(row)
        log.info("API key %d (%s, role %s) created", record.id, name, role.value)
        return secret, record

    @staticmethod
    def _record(row: ApiKeyRow) -> KeyRecord:
        return KeyRecord(row.id, row.name, row.role, row.prefix, row.created_at.isoformat(),
                         row.revoked_at.isoformat() if row.revoked_at else None)

    def list(self) -> list[KeyRecord]:
        with self._session("listing API keys") as session:
            return [self._record(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, key_id: int) -> KeyRecord:
        """Revoke a key and end its review-page sessions. Revoking twice keeps the first time."""
        with self._session("revoking an API key") as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"API key {key_id} does not exist")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            session.execute(delete(WebSessionRow).where(WebSessionRow.api_key_id == key_id))
            record = self._record(row)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].key_id != key_id}
        log.info("API key %d revoked", key_id)
        return record

    def authenticate(self, secret: str) -> Principal:
        """The principal of a bearer key; ``AuthError`` if it is unknown or revoked."""
        if not secret or len(secret) > 256:
            raise AuthError("invalid API key")
        digest = hash_secret(secret)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and self.cache_s > 0 and now - cached[0] < self.cache_s:
            return cached[1]
        try:
            with self._session("checking an API key") as session:
                row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest)).first()
                if row is None or row.revoked_at is not None:
                    raise AuthError("invalid or revoked API key")
                principal = Principal(row.id, row.name, Role(row.role))
        except StoreError:
            if self.local is None:
                raise
            known = self.local.cached_key(digest)  # the central database is away: what this station knows
            if known is None:
                raise
            return Principal(known[0], known[1], Role(known[2]))
        if self.local is not None and digest not in self._cached_locally:  # one local write per key, not per call
            try:
                self.local.cache_key(digest, principal.key_id, principal.name, principal.role.value)
                with self._lock:
                    if len(self._cached_locally) > 10_000:
                        self._cached_locally.clear()
                    self._cached_locally.add(digest)
            except Exception as e:  # resilience lost, not this request
                log.warning("cannot cache API key %d locally: %s", principal.key_id, e)
        if self.cache_s > 0:  # off by default: a revocation must bite at once in every process
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, principal)
        return principal

    def sync_local(self) -> int:
        """Refresh the station's local key cache from the central database: valid keys in, revoked ones out."""
        if self.local is None:
            return 0
        with self._session("listing valid API keys") as session:
            rows = session.execute(select(ApiKeyRow.key_hash, ApiKeyRow.id, ApiKeyRow.name, ApiKeyRow.role)
                                   .where(ApiKeyRow.revoked_at.is_(None))).all()
        self.local.forget_keys_except([r[0] for r in rows])
        for key_hash, key_id, name, role in rows:
            self.local.cache_key(key_hash, key_id, name, role)
        return len(rows)

    # -- review page sessions ---------------------------------------------------------------------------

    def start_session(self, secret: str, hours: float) -> tuple[str, Principal]:
        """Sign in with a key: a random session token for the cookie (its hash is stored)."""
        principal = self.authenticate(secret)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self._session("starting a session") as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < now))
            session.add(WebSessionRow(token_hash=hash_secret(token), api_key_id=principal.key_id, created_at=now,
                                      expires_at=now + timedelta(hours=hours)))
        return token, principal

    def session_principal(self, token: str) -> Principal:
        if not token or len(token) > 256:
            raise AuthError("not signed in")
        with self._session("checking a session") as session:
            found = session.execute(
                select(WebSessionRow, ApiKeyRow).join(ApiKeyRow, ApiKeyRow.id == WebSessionRow.api_key_id)
                .where(WebSessionRow.token_hash == hash_secret(token))).first()
            if found is None:
                raise AuthError("not signed in (or the session ended)")
            web, key = found
            if key.revoked_at is not None or web.expires_at < utcnow():
                raise AuthError("the session has expired: sign in again")
            return Principal(key.id, key.name, Role(key.role))

    def end_session(self, token: str) -> None:
        with self._session("ending a session") as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.token_hash == hash_secret(token)))



__all__ = ["KEY_PREFIX", "SESSION_COOKIE", "ApiKeyService", "AuthError", "ForbiddenError", "Principal", "Role",
           "hash_secret"]

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
from types import TracebackType
from typing import Any, Self

from inspection.errors import QCError, StoreError
from inspection.store.api_keys import ApiKeyRecord, ApiKeyRepository
from inspection.store.db import open_database
from inspection.store.outbox import Outbox
from inspection.store.tables.base import utcnow

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
    """An API key as the service shows it (times as ISO text): never its secret, only the first characters to
    recognise it by."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def of(cls, stored: ApiKeyRecord) -> KeyRecord:
        return cls(stored.id, stored.name, stored.role, stored.prefix, stored.created_at.isoformat(),
                   stored.revoked_at.isoformat() if stored.revoked_at else None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "prefix": self.prefix,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyService:
    """Create, list, revoke and check API keys; sign review-page sessions in and out.

    Every request checks its key against the database (one indexed lookup, well under a millisecond): a
    key revoked by any process (``qcline keys revoke``, another service worker) stops working at once in
    every process. ``cache_s`` > 0 caches verified keys in this process for that long, trading that
    guarantee for one query less per request; it is off by default. The rows are read and written by
    ``inspection.store.api_keys.ApiKeyRepository``; this class holds the rules (secrets, hashes, roles,
    expiry, the caches).
    """

    def __init__(self, repository: ApiKeyRepository, *, cache_s: float = 0.0, local: Outbox | None = None) -> None:
        self.repository = repository
        self.cache_s = cache_s
        self.local = local
        """The station's outbox file: keys checked centrally are cached there (hashes only), so cameras keep
        working while the central database is unreachable."""
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._cached_locally: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> ApiKeyService:
        return cls(ApiKeyRepository(open_database(url)))

    def close(self) -> None:
        """Release the repository's pooled connections."""
        self.repository.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- keys -------------------------------------------------------------------------------------------

    def create(self, role: Role | str, name: str = "") -> tuple[str, KeyRecord]:
        """A new key of ``role``: returns the secret (shown once, never stored) and its record."""
        role = role if isinstance(role, Role) else Role.parse(role)
        name = (name or f"{role.value}-key").strip()
        if not 0 < len(name) <= 128:
            raise QCError("a key name must be 1-128 characters")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord.of(self.repository.add(name, role.value, hash_secret(secret), secret[:10]))
        log.info("API key %d (%s, role %s) created", record.id, name, role.value)
        return secret, record

    def list(self) -> list[KeyRecord]:
        return [KeyRecord.of(r) for r in self.repository.all()]

    def revoke(self, key_id: int) -> KeyRecord:
        """Revoke a key and end its review-page sessions. Revoking twice keeps the first time."""
        record = KeyRecord.of(self.repository.revoke(key_id))
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
            key = self.repository.by_hash(digest)
        except StoreError:
            if self.local is None:
                raise
            known = self.local.cached_key(digest)  # the central database is away: what this station knows
            if known is None:
                raise
            return Principal(known[0], known[1], Role(known[2]))
        if key is None or key.revoked_at is not None:
            raise AuthError("invalid or revoked API key")
        principal = Principal(key.id, key.name, Role(key.role))
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
        valid = self.repository.valid()
        self.local.forget_keys_except([k.key_hash for k in valid])
        for key in valid:
            self.local.cache_key(key.key_hash, key.id, key.name, key.role)
        return len(valid)

    # -- review page sessions ---------------------------------------------------------------------------

    def start_session(self, secret: str, hours: float) -> tuple[str, Principal]:
        """Sign in with a key: a random session token for the cookie (its hash is stored)."""
        principal = self.authenticate(secret)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        self.repository.add_session(hash_secret(token), principal.key_id, now, now + timedelta(hours=hours))
        return token, principal

    def session_principal(self, token: str) -> Principal:
        if not token or len(token) > 256:
            raise AuthError("not signed in")
        found = self.repository.session(hash_secret(token))
        if found is None:
            raise AuthError("not signed in (or the session ended)")
        if found.key.revoked_at is not None or found.expires_at < utcnow():
            raise AuthError("the session has expired: sign in again")
        return Principal(found.key.id, found.key.name, Role(found.key.role))

    def end_session(self, token: str) -> None:
        self.repository.end_session(hash_secret(token))


__all__ = ["KEY_PREFIX", "SESSION_COOKIE", "ApiKeyService", "AuthError", "ForbiddenError", "Principal", "Role",
           "hash_secret"]

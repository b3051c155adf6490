"""Idempotency keys: the first answer to a request is kept and replayed to its retries.

A camera that times out and resends the same frame with the same ``Idempotency-Key`` gets the first
answer back and nothing is stored twice. Reusing a key for a *different* request is refused (409), since
replaying the wrong answer would silently mislabel a unit. Keys are scoped per API key, so two cameras
choosing the same key never see each other's answers. Only successful answers are kept: a request refused
(bad image, unknown order, queue full) stored nothing, so its retry is simply tried again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from inspection.errors import ConflictError, QCError, StoreError
from inspection.store.idempotency import IdempotencyRepository
from inspection.store.outbox import Outbox
from inspection.store.tables.base import utcnow

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 256


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: dict[str, Any]


class IdempotencyStore:
    """The replay rules over the kept answers (``inspection.store.idempotency.IdempotencyRepository``), the
    station's local answers while the central database is away, and the requests still being answered."""

    def __init__(self, repository: IdempotencyRepository, *, local: Outbox | None = None) -> None:
        self.repository = repository
        self.local = local
        """The station's outbox file: answers given while the central database was away are kept there."""
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Future[StoredAnswer]]] = {}

    @staticmethod
    def check_key(key: str) -> str:
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise QCError(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
        return key

    def lookup(self, scope: str, key: str, request_hash: str) -> StoredAnswer | None:
        found: tuple[str, int, dict[str, Any]] | None
        try:
            kept = self.repository.get(scope, key)
            found = None if kept is None else (kept.request_hash, kept.status_code, kept.response)
        except StoreError:
            if self.local is None:
                raise
            found = None  # the central database is away: the local answers below are what this station knows
        if found is None and self.local is not None:
            found = self.local.answer(scope, key)
        if found is None:
            return None
        if found[0] != request_hash:
            raise ConflictError(f"Idempotency-Key {key!r} was already used for a different request")
        return StoredAnswer(found[1], found[2])

    def save(self, scope: str, key: str, request_hash: str, answer: StoredAnswer) -> None:
        """Keep the first answer; called only once the result it answers is committed. Another process that
        answered the same key first (a retry sent elsewhere) wins, atomically."""
        try:
            self.repository.add_first(scope, key, request_hash, answer.status_code, answer.body)
        except StoreError:
            if self.local is None:
                raise
            self.local.save_answer(scope, key, request_hash, answer.status_code, answer.body)

    def purge(self, older_than_hours: float) -> int:
        """Forget the answers kept longer than ``older_than_hours``; how many."""
        return self.repository.purge(utcnow() - timedelta(hours=older_than_hours))

    def count(self) -> int:
        return self.repository.count()

    # -- concurrent retries in this process ---------------------------------------------------------

    def join_inflight(self, scope: str, key: str, request_hash: str) -> asyncio.Future[StoredAnswer] | None:
        """The future of an identical request still being answered, if any (a retry racing the original)."""
        found = self._inflight.get((scope, key))
        if found is None:
            return None
        if found[0] != request_hash:
            raise ConflictError(f"Idempotency-Key {key!r} is in use by a different request")
        return found[1]

    def begin(self, scope: str, key: str, request_hash: str) -> asyncio.Future[StoredAnswer]:
        future: asyncio.Future[StoredAnswer] = asyncio.get_running_loop().create_future()
        self._inflight[(scope, key)] = (request_hash, future)
        return future

    def end(self, scope: str, key: str) -> None:
        self._inflight.pop((scope, key), None)

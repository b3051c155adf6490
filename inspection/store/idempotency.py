"""The first answers to requests that carried an ``Idempotency-Key`` (table ``idempotency_keys``).

Rows only: the replay rules (same request or 409, scoping per API key, what is kept, the station's local
fallback while the database is away) are the idempotency service's (``api/services/idempotency.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from inspection.store.db import Database, insert_ignore
from inspection.store.tables.base import utcnow
from inspection.store.tables.service import IdempotencyRow


@dataclass(frozen=True)
class IdempotencyRecord:
    """A kept answer: the hash of the request it answered, its status code and its JSON body."""

    scope: str
    key: str
    request_hash: str
    status_code: int
    response: dict[str, Any]
    created_at: datetime


class IdempotencyRepository(Database):
    """Reads and writes ``idempotency_keys`` on the service's database."""

    label = "idempotency store"

    def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        with self._session("reading an idempotency key") as session:
            row = session.get(IdempotencyRow, (scope, key))
            if row is None:
                return None
            return IdempotencyRecord(row.scope, row.key, row.request_hash, row.status_code, dict(row.response),
                                     row.created_at)

    def add_first(self, scope: str, key: str, request_hash: str, status_code: int, response: dict[str, Any]) -> None:
        """Keep this answer unless one is already kept for ``(scope, key)``: ``INSERT .. ON CONFLICT DO NOTHING``,
        so of two processes answering the same key at once the first one wins, atomically."""
        with self._session("storing an idempotency key") as session:
            session.execute(insert_ignore(self.dialect, IdempotencyRow.__table__,  # type: ignore[arg-type]
                                          ["scope", "key"]).values(
                scope=scope, key=key, request_hash=request_hash, status_code=status_code, response=response,
                created_at=utcnow()))

    def purge(self, older_than: datetime) -> int:
        """Delete the answers kept before ``older_than``; how many were deleted."""
        with self._session("purging idempotency keys") as session:
            result = session.execute(delete(IdempotencyRow).where(IdempotencyRow.created_at < older_than))
            return int(getattr(result, "rowcount", 0) or 0)

    def count(self) -> int:
        with self._session("counting idempotency keys") as session:
            return int(session.scalar(select(func.count()).select_from(IdempotencyRow)) or 0)


__all__ = ["IdempotencyRecord", "IdempotencyRepository"]

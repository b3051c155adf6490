"""Tables of the service's own state: API keys, web sessions, idempotency keys and training jobs
(read and written by ``inspection/store/api_keys.py``, ``idempotency.py`` and ``training_jobs.py``; the rules
over them are ``api/services/auth.py``, ``idempotency.py`` and ``jobs.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.store.tables.base import ID_LEN, SHA_LEN, Base, BigId, utcnow


class ApiKeyRow(Base):
    """An API key of one role. Only the sha256 of the key is stored: keys are 256-bit random tokens, so a
    fast hash is enough (nothing to brute-force), and a leaked database holds no usable key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(ID_LEN))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(SHA_LEN), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class WebSessionRow(Base):
    """A signed-in review page: the cookie carries a random token, the table its hash and its key."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(SHA_LEN), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class IdempotencyRow(Base):
    """The first answer to a request carrying an ``Idempotency-Key``, replayed to every retry of it."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingJobRow(Base):
    """A training run started through the service, with its progress as the trainer reports it."""

    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(ID_LEN), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


# -- conformance and traceability (migration 0006) ------------------------------------------------------------

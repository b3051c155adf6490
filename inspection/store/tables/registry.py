"""Tables of the model registry: registered model versions, their audit trail and registry settings
(repository: ``models/registry/repository.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.store.tables.base import ID_LEN, SHA_LEN, Base, BigId, utcnow


class RegisteredModelRow(Base):
    """One content-addressed model package (``sha256`` pins the ONNX bytes) and its lifecycle stage.

    ``champion_lock`` is TRUE on the champion and NULL everywhere else: its UNIQUE constraint (NULLs never
    collide) makes two champions impossible even when two promotions race, on SQLite and PostgreSQL alike,
    without a backend-specific partial index.
    """

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(SHA_LEN), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    stage: Mapped[str] = mapped_column(String(16), index=True)
    champion_lock: Mapped[bool | None] = mapped_column(Boolean, unique=True)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    previous_champion_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("registered_models.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAuditRow(Base):
    """Append-only: one row per stage change (registration included), with the evidence it was based on."""

    __tablename__ = "model_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("registered_models.id"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(ID_LEN), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class RegistrySettingRow(Base):
    """Small registry-wide settings by key, e.g. ``holdout``: the frozen benchmark snapshot of the gate."""

    __tablename__ = "registry_settings"

    key: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- operator reviews (migration 0003) ----------------------------------------------------------------------
# Append-only like the audit trail above: a changed mind is a new row, so the labels a dataset was built
# from can always be traced back to who decided what, and when.

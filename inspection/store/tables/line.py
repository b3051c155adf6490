"""The line's trigger records (``inspection/store/triggers.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.store.tables.base import ID_LEN, Base, BigId


class LineTriggerRow(Base):
    """One trigger a line station received ("unit U of order O is here") and how it was answered: also the
    ones refused, unknown, or whose frames never came. No foreign keys on purpose: a trigger for a unit that
    was never recorded (unknown unit, queue full) is a record too."""

    __tablename__ = "line_triggers"
    __table_args__ = (UniqueConstraint("station_id", "trigger_id"),
                      Index("ix_line_triggers_station_id_received_at", "station_id", "received_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(ID_LEN))
    trigger_id: Mapped[str] = mapped_column(String(ID_LEN))
    channel: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    order_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    at: Mapped[datetime]
    received_at: Mapped[datetime]
    answered_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[float] = mapped_column(Float)
    frames: Mapped[dict[str, Any]] = mapped_column(default=dict)

"""Tables of operator reviews and unit dispositions (repository: ``inspection/store/reviews.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.store.tables.base import ID_LEN, Base, BigId, utcnow


class ReviewRow(Base):
    """One operator decision about one inspection (``inspection.reviews.Decision``); never updated.

    ``boxes`` is a JSON list of ``[class, x1, y1, x2, y2]`` (only for ``correct``). ``frame_width`` and
    ``frame_height`` are the evidence image's size when the decision was checked against it: inspections do
    not record their frame size, and the dataset builder should not have to trust a later re-read.
    """

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inspections.id"), index=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    boxes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    frame_width: Mapped[int | None] = mapped_column(Integer)
    frame_height: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(ID_LEN))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnitDispositionRow(Base):
    """What was done with a flagged unit (release, rework or scrap); append-only, the latest row counts."""

    __tablename__ = "unit_dispositions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    disposition: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(ID_LEN))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


# -- the service (migration 0004) -----------------------------------------------------------------------------

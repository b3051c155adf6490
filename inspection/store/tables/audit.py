"""Tables of the tamper-evident audit chain (``inspection/store/audit.py``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.store.tables.base import ID_LEN, SHA_LEN, Base, BigId, utcnow


class AuditChainRow(Base):
    """One link of a station's traceability chain: a unit's whole record, as canonical JSON, at one event.

    ``entry_hash = sha256(prev_hash || record_hash)`` and ``record_hash = sha256(record)``: editing, inserting
    or deleting a link, or the rows the record was built from, breaks the chain where ``qcline audit verify``
    can name it. No foreign keys on purpose: a deleted unit must leave its links behind as evidence.
    """

    __tablename__ = "audit_chain"
    __table_args__ = (UniqueConstraint("station_id", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(ID_LEN))
    seq: Mapped[int] = mapped_column(BigInteger)
    unit_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    order_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    event: Mapped[str] = mapped_column(String(32))
    record: Mapped[str] = mapped_column(Text)
    record_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    prev_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    entry_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditHeadRow(Base):
    """The newest link of each station's chain: a deleted last link is missed without it."""

    __tablename__ = "audit_heads"

    station_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(SHA_LEN))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- line triggers (migration 0008) --------------------------------------------------------------------------

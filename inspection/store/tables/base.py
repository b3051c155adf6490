"""What every table module shares: the declarative ``Base`` (one metadata, deterministic constraint names),
``UTCDateTime`` and the id types. The tables themselves sit one module per domain beside this one.

The schema is owned by the Alembic migrations in ``migrations/versions``; these models are how the code
reads and writes it. ``tests/inspection/store/test_db.py`` checks that both agree, so a column
added here without a migration fails a test instead of a station.

Every timestamp is stored timezone-aware and read back as UTC (``UTCDateTime``): SQLite has no time zone
type, and a naive datetime in an audit log is a bug waiting for daylight saving time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Integer,
    MetaData,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations can drop or alter them on every backend."""

ID_LEN = 128
SHA_LEN = 64

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC, whatever the backend stores.

    Naive datetimes are refused on the way in: guessing their zone would silently shift records.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored: make it timezone-aware (UTC)")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset; keep it naive-UTC there so comparisons stay lexical.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}

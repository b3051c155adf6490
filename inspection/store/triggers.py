"""The record of every trigger a line station received (table ``line_triggers``, migration 0008).

One row per trigger, written when it is answered, whatever the answer: judged, views missing, unknown unit,
refused (queue full, duplicate, stopping) or failed. It says which channel it came on, when the unit was in
place, when it was received and answered, the verdict or the reason there is none, and which frame of each
view was bound to the unit (camera, sequence number, capture time), so "why did unit U fail at 10:42" and
"did the PLC ever get an answer" are queries, not log archaeology.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from inspection.errors import NotFoundError
from inspection.store.db import Database, insert_ignore
from inspection.store.models import LineTriggerRow

log = logging.getLogger(__name__)

MAX_LIST = 1000


@dataclass(frozen=True)
class TriggerRecord:
    """A stored trigger and its answer, as read back."""

    trigger_id: str
    station_id: str
    channel: str
    unit_id: str
    order_id: str | None
    at: datetime
    received_at: datetime
    answered_at: datetime
    outcome: str
    verdict: str | None
    error: str
    latency_ms: float
    frames: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"trigger_id": self.trigger_id, "station_id": self.station_id, "channel": self.channel,
                "unit_id": self.unit_id, "order_id": self.order_id, "at": self.at.isoformat(),
                "received_at": self.received_at.isoformat(), "answered_at": self.answered_at.isoformat(),
                "outcome": self.outcome, "verdict": self.verdict, "error": self.error,
                "latency_ms": round(self.latency_ms, 1), "frames": self.frames}


def _record(row: LineTriggerRow) -> TriggerRecord:
    return TriggerRecord(row.trigger_id, row.station_id, row.channel, row.unit_id, row.order_id, row.at,
                         row.received_at, row.answered_at, row.outcome, row.verdict, row.error, row.latency_ms,
                         dict(row.frames or {}))


class TriggerLog(Database):
    """Writes and reads ``line_triggers`` for one station (``station_id``) on the results database."""

    label = "trigger log"

    def __init__(self, engine: Engine, station_id: str) -> None:
        super().__init__(engine)
        self.station_id = station_id

    def record(self, record: TriggerRecord) -> bool:
        """Store one answered trigger (once: a trigger id already recorded keeps its first answer); its
        ``station_id`` is this log's. Returns whether a row was inserted."""
        values = {"station_id": self.station_id, "trigger_id": record.trigger_id[:128], "channel": record.channel,
                  "unit_id": record.unit_id[:128], "order_id": record.order_id, "at": record.at,
                  "received_at": record.received_at, "answered_at": record.answered_at, "outcome": record.outcome,
                  "verdict": record.verdict, "error": record.error, "latency_ms": record.latency_ms,
                  "frames": record.frames}
        table = LineTriggerRow.__table__
        statement = insert_ignore(self.dialect, table, ["station_id", "trigger_id"])  # type: ignore[arg-type]
        with self._session("recording a trigger") as session:
            inserted = session.execute(statement.values(**values).returning(LineTriggerRow.id)).scalar()
        return inserted is not None

    def get(self, trigger_id: str) -> TriggerRecord:
        with self._session("reading a trigger") as session:
            row = session.scalars(select(LineTriggerRow).where(LineTriggerRow.station_id == self.station_id,
                                                               LineTriggerRow.trigger_id == trigger_id)).first()
            if row is None:
                raise NotFoundError(f"no trigger {trigger_id!r} recorded at station {self.station_id}")
            return _record(row)

    def recent(self, limit: int = 50, *, unit_id: str | None = None) -> list[TriggerRecord]:
        """The newest triggers first (at most ``MAX_LIST``)."""
        query = select(LineTriggerRow).where(LineTriggerRow.station_id == self.station_id)
        if unit_id is not None:
            query = query.where(LineTriggerRow.unit_id == unit_id)
        query = query.order_by(LineTriggerRow.received_at.desc(), LineTriggerRow.id.desc())
        with self._session("listing triggers") as session:
            return [_record(r) for r in session.scalars(query.limit(max(1, min(limit, MAX_LIST))))]


__all__ = ["TriggerLog", "TriggerRecord"]

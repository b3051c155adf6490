"""The record of every trigger a line station received (table ``line_triggers``, migration 0008).

One row per trigger, written when it is answered, whatever the answer: judged, views missing, unknown unit,
refused (queue full, duplicate, stopping) or failed. It says which channel it came on, when the unit was in
place, when it was received and answered, the verdict or the reason there is none, and which frame of each
view was bound to the unit (camera, sequence number, capture time), so "why did unit U fail at 10:42" and
"did the PLC ever get an answer" are queries, not log archaeology.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from inspection.blobs import write_atomic
from inspection.errors import NotFoundError, StoreError
from inspection.store.db import Database, insert_ignore
from inspection.store.tables.line import LineTriggerRow

log = logging.getLogger(__name__)

MAX_LIST = 1000
TRIGGER_SPOOL = Path("line") / "unrecorded-triggers.jsonl"
"""Under ``QC_DATA_DIR``: trigger records answered while the database was away, written once it is back."""
SPOOL_MAX_BYTES = 64 * 1024 * 1024
"""A station cut off from its database for a whole shift spools at most this much trigger history (a record is
well under 1 KB: tens of thousands of triggers); beyond it, new records are counted and logged as lost."""


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TriggerRecord:
        return cls(str(data["trigger_id"]), str(data["station_id"]), str(data["channel"]), str(data["unit_id"]),
                   data.get("order_id"), datetime.fromisoformat(data["at"]),
                   datetime.fromisoformat(data["received_at"]), datetime.fromisoformat(data["answered_at"]),
                   str(data["outcome"]), data.get("verdict"), str(data.get("error", "")),
                   float(data["latency_ms"]), dict(data.get("frames") or {}))

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
    """Writes and reads ``line_triggers`` for one station (``station_id``) on the results database.

    With a ``spool`` file, a record the database cannot take (it is away) is appended there, fsynced, and
    written to the table by the next record that gets through (or ``replay``), so a trigger answered during
    an outage still leaves its row; only beyond ``SPOOL_MAX_BYTES`` is a record lost, counted in ``lost``.
    """

    label = "trigger log"

    def __init__(self, engine: Engine, station_id: str, *, spool: Path | None = None,
                 spool_max_bytes: int = SPOOL_MAX_BYTES) -> None:
        super().__init__(engine)
        self.station_id = station_id
        self.spool = spool
        self.spool_max_bytes = spool_max_bytes
        self.spooled = 0
        self.lost = 0
        self._spool_lock = threading.Lock()

    def record(self, record: TriggerRecord) -> bool:
        """Store one answered trigger (once: a trigger id already recorded keeps its first answer); its
        ``station_id`` is this log's. Returns whether a row was inserted. With a spool, a database error puts
        the record in the spool instead (``False``); without one it raises ``StoreError``."""
        try:
            inserted = self._insert(record)
        except StoreError as exc:
            if self.spool is None:
                raise
            self._append_to_spool(record, exc)
            return False
        if self.spool is not None and self.spool.exists():
            self.replay()
        return inserted

    def _append_to_spool(self, record: TriggerRecord, why: Exception) -> None:
        assert self.spool is not None
        line = (json.dumps(record.as_json(), separators=(",", ":")) + "\n").encode()
        with self._spool_lock:
            size = self.spool.stat().st_size if self.spool.exists() else 0
            if size + len(line) > self.spool_max_bytes:
                self.lost += 1
                log.error("trigger %s NOT recorded: the database is away (%s) and the spool %s is full",
                          record.trigger_id, why, self.spool)
                return
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            with self.spool.open("ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self.spooled += 1
        log.warning("trigger %s spooled to %s (the database is away: %s)", record.trigger_id, self.spool, why)

    def replay(self) -> int:
        """Write the spooled records to the table, oldest first; those the database still refuses stay.
        Returns how many were written (a record already in the table counts as written)."""
        if self.spool is None:
            return 0
        with self._spool_lock:
            if not self.spool.exists():
                return 0
            lines = [line for line in self.spool.read_bytes().splitlines() if line.strip()]
            written, left = 0, []
            for n, line in enumerate(lines):
                try:
                    record = TriggerRecord.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:  # a torn last line after a crash
                    log.error("spooled trigger record %d in %s unreadable, skipped: %s", n + 1, self.spool, exc)
                    continue
                try:
                    self._insert(record)
                    written += 1
                except StoreError:
                    left = lines[n:]
                    break
            if left:
                write_atomic(self.spool, b"\n".join(left) + b"\n")
            else:
                self.spool.unlink(missing_ok=True)
        if written:
            log.info("%d spooled trigger records written to the database", written)
        return written

    def _insert(self, record: TriggerRecord) -> bool:
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


__all__ = ["TRIGGER_SPOOL", "TriggerLog", "TriggerRecord"]

"""The training jobs started through the service and their progress (table ``training_jobs``).

Rows only: which statuses exist and which moves between them are allowed (one job at a time, cancel only
what is active, recovery after a restart), and the trainer process itself, are the jobs service's
(``api/services/jobs.py``).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from inspection.store.db import Database
from inspection.store.tables.base import utcnow
from inspection.store.tables.service import TrainingJobRow


@dataclass(frozen=True)
class TrainingJobRecord:
    """A training job as stored; ``params``, ``progress`` and ``result`` are the JSON the service wrote."""

    id: int
    status: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str
    actor: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _record(row: TrainingJobRow) -> TrainingJobRecord:
    return TrainingJobRecord(row.id, row.status, dict(row.params), dict(row.progress), dict(row.result), row.error,
                             row.actor, row.created_at, row.started_at, row.finished_at)


class TrainingJobRepository(Database):
    """Reads and writes ``training_jobs`` on the service's database."""

    label = "training jobs"

    def get(self, job_id: int) -> TrainingJobRecord | None:
        with self._session("reading a training job") as session:
            row = session.get(TrainingJobRow, job_id)
            return None if row is None else _record(row)

    def latest(self, limit: int) -> builtins.list[TrainingJobRecord]:
        """The newest ``limit`` jobs, newest first."""
        with self._session("listing training jobs") as session:
            rows = session.scalars(select(TrainingJobRow).order_by(TrainingJobRow.id.desc()).limit(limit))
            return [_record(r) for r in rows]

    def add_unless(self, busy: Collection[str], *, status: str, params: dict[str, Any],
                   actor: str) -> tuple[TrainingJobRecord, bool]:
        """A new job in ``status``, started now, unless a job is in one of the ``busy`` statuses: checked and
        inserted in one transaction. Returns ``(the new job, True)`` or ``(the first busy job, False)``."""
        with self._session("starting a training job") as session:
            found = session.scalars(select(TrainingJobRow).where(TrainingJobRow.status.in_(busy))).first()
            if found is not None:
                return _record(found), False
            row = TrainingJobRow(status=status, params=params, progress={}, result={}, error="", actor=actor,
                                 created_at=utcnow(), started_at=utcnow())
            session.add(row)
            session.flush()
            return _record(row), True

    def set_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        """Replace the job's progress (nothing happens if there is no such job)."""
        with self._session("recording job progress") as session:
            row = session.get(TrainingJobRow, job_id)
            if row is not None:
                row.progress = progress

    def finish(self, job_id: int, status: str, *, result: dict[str, Any], error: str) -> None:
        """Record the job's end, now (nothing happens if there is no such job)."""
        with self._session("finishing a training job") as session:
            row = session.get(TrainingJobRow, job_id)
            if row is not None:
                row.status = status
                row.result = result
                row.error = error
                row.finished_at = utcnow()

    def finish_all(self, statuses: Collection[str], status: str, *, error: str) -> int:
        """End, now, every job in one of ``statuses`` with ``status`` and ``error``; how many."""
        with self._session("recovering training jobs") as session:
            result = session.execute(update(TrainingJobRow).where(TrainingJobRow.status.in_(statuses))
                                     .values(status=status, error=error, finished_at=utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["TrainingJobRecord", "TrainingJobRepository"]

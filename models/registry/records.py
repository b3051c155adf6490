"""The registry's records: stages, a registered model, the frozen holdout.

Stages: ``candidate`` (registered, never served), ``champion`` (exactly one or none: what stations run),
``retired`` (was champion once, or withdrawn). Records are never deleted: an inspection from last year
must still resolve to its model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from inspection.store.tables.registry import ModelAuditRow

Stage = Literal["candidate", "champion", "retired"]
STAGES: tuple[Stage, ...] = ("candidate", "champion", "retired")
CANDIDATE: Stage = "candidate"
CHAMPION: Stage = "champion"
RETIRED: Stage = "retired"

DetectionMetricsJSON = dict[str, Any]
"""``models.metrics.DetectionMetrics.to_json()``: ``map50``, ``map50_95``, ``per_class`` {class: {ap50, ..}},
optionally ``snapshot_id`` / ``split`` as ``models.evaluation.evaluate_for_gate`` adds them."""


@dataclass(frozen=True)
class RegisteredModel:
    """A registry record; ``path`` is the registry's own verified copy, never the folder it came from."""

    id: int
    stage: Stage
    sha256: str
    name: str
    path: Path
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    previous_champion_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "stage": self.stage, "sha256": self.sha256, "name": self.name,
                "path": str(self.path), "metrics": self.metrics, "lineage": self.lineage,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "previous_champion_id": self.previous_champion_id}


@dataclass(frozen=True)
class Holdout:
    """The frozen benchmark snapshot every promotion is judged on."""

    snapshot_id: str
    manifest: Path | None = None
    marked_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelAuditEntry:
    """One stage change of a registered model: who, when, why, forced or not, on which numbers."""

    id: int
    model_id: int
    from_stage: str | None
    to_stage: str
    actor: str
    reason: str
    forced: bool
    metrics: dict[str, Any]
    at: str

    @classmethod
    def of(cls, row: ModelAuditRow) -> ModelAuditEntry:
        return cls(row.id, row.model_id, row.from_stage, row.to_stage, row.actor, row.reason, row.forced,
                   dict(row.metrics or {}), row.at.isoformat())

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "model_id": self.model_id, "from_stage": self.from_stage, "to_stage": self.to_stage,
                "actor": self.actor, "reason": self.reason, "forced": self.forced, "metrics": self.metrics,
                "at": self.at}

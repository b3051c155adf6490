"""Operator review decisions: what a person said about a frame the line flagged.

Every decision is kept (append-only) and becomes labeled data: a confirmed defect keeps the model's
boxes, a false alarm makes the frame a negative example, a correction replaces the boxes (and may
name a class the model does not know yet). The CLI and the review page record them through the same
``ReviewService``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inspection.boxes import Box, BoxError
from inspection.errors import QCError

_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


class ReviewError(QCError):
    """A review decision that cannot be recorded as given."""


class Decision(enum.StrEnum):
    CONFIRM = "confirm"          # the model's findings are right
    FALSE_ALARM = "false_alarm"  # there is no defect: a negative example
    CORRECT = "correct"          # the boxes below replace the model's

    @classmethod
    def parse(cls, text: str) -> Decision:
        """A decision as people type it: ``confirm``, ``false-alarm`` / ``false_alarm``, ``correct``."""
        key = str(text).strip().lower().replace("-", "_").replace(" ", "_")
        try:
            return cls(key)
        except ValueError:
            raise ReviewError(f"decision {text!r} must be one of {', '.join(d.value for d in cls)}") from None

    @property
    def labels_frame(self) -> bool:
        """Whether the decision turns the frame into a labeled sample (so its evidence must be readable).

        Every decision does today; a future "skip" / "unsure" would not.
        """
        return self in (Decision.CONFIRM, Decision.FALSE_ALARM, Decision.CORRECT)


class Disposition(enum.StrEnum):
    """What happens to a flagged unit after review."""

    RELEASE = "release"
    REWORK = "rework"
    SCRAP = "scrap"

    @classmethod
    def parse(cls, text: str) -> Disposition:
        key = str(text).strip().lower()
        try:
            return cls(key)
        except ValueError:
            raise ReviewError(f"disposition {text!r} must be one of {', '.join(d.value for d in cls)}") from None


@dataclass(frozen=True)
class ReviewedBox:
    """A box an operator drew: a class name people may type and a ``Box`` with area, from the frame's origin."""

    class_name: str
    box: Box

    def __post_init__(self) -> None:
        if not _CLASS_NAME.match(self.class_name):
            raise ReviewError(f"class name {self.class_name!r} must be 1-64 letters, digits, space, '_', '.' or '-'")
        if self.box.x1 < 0 or self.box.y1 < 0:
            raise ReviewError(f"box {tuple(self.box)} must be finite, non-negative pixel coordinates")
        try:
            self.box.require_area()
        except BoxError as exc:
            raise ReviewError(str(exc)) from None

    @classmethod
    def of(cls, class_name: str, x1: float, y1: float, x2: float, y2: float) -> ReviewedBox:
        """From plain coordinates; every problem is a ``ReviewError`` (a 422 on the API, a line in a batch)."""
        try:
            box = Box.with_area(x1, y1, x2, y2)
        except BoxError as exc:
            raise ReviewError(str(exc)) from None
        return cls(class_name, box)

    @classmethod
    def parse(cls, text: str) -> ReviewedBox:
        """``"class,x1,y1,x2,y2"`` as typed on the command line."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 5:
            raise ReviewError(f"box {text!r} must be 'class,x1,y1,x2,y2'")
        try:
            coords = [float(p) for p in parts[1:]]
        except ValueError as exc:
            raise ReviewError(f"box {text!r} has a coordinate that is not a number") from exc
        return cls.of(parts[0], *coords)

    def to_json(self) -> list[object]:
        return [self.class_name, *self.box]


@dataclass(frozen=True)
class ReviewDecision:
    inspection_id: int
    decision: Decision
    boxes: tuple[ReviewedBox, ...] = ()
    actor: str = "cli"
    note: str = ""

    def __post_init__(self) -> None:
        if self.inspection_id < 1:
            raise ReviewError(f"inspection id must be a positive integer, got {self.inspection_id}")
        if self.decision is Decision.CORRECT and not self.boxes:
            raise ReviewError("a correction needs at least one box (use false_alarm for 'no defect')")
        if self.decision is not Decision.CORRECT and self.boxes:
            raise ReviewError(f"{self.decision.value} takes no boxes; use 'correct' to change them")
        if not self.actor.strip():
            raise ReviewError("a review needs the name of who decided (actor)")
        if len(self.actor) > 128:
            raise ReviewError("actor name is longer than 128 characters")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, default_actor: str = "cli") -> ReviewDecision:
        """One JSONL line of ``qcline review file``: ``{"inspection_id", "decision", "boxes", "actor", "note"}``.

        Every malformed field is a ``ReviewError`` naming it, so a batch file reports the line and moves on.
        """
        if not isinstance(data, Mapping):
            raise ReviewError(f"a decision must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"inspection_id", "decision", "boxes", "actor", "note"}
        if unknown:
            raise ReviewError(f"unknown field(s) {sorted(unknown)}")
        raw_id = data.get("inspection_id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
            raise ReviewError(f"inspection_id must be an integer, got {raw_id!r}")
        try:
            inspection_id = int(raw_id)
        except ValueError:
            raise ReviewError(f"inspection_id must be an integer, got {raw_id!r}") from None
        if "decision" not in data:
            raise ReviewError("missing field 'decision'")
        raw_boxes = data.get("boxes") or []
        if not isinstance(raw_boxes, list):
            raise ReviewError("boxes must be a list of [class, x1, y1, x2, y2]")
        boxes = []
        for raw in raw_boxes:
            if not isinstance(raw, list) or len(raw) != 5 or not isinstance(raw[0], str) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in raw[1:]):
                raise ReviewError(f"box {raw!r} must be [class, x1, y1, x2, y2] with numeric coordinates")
            boxes.append(ReviewedBox.of(raw[0], *(float(v) for v in raw[1:])))
        actor = data.get("actor", default_actor)
        note = data.get("note", "")
        if not isinstance(actor, str) or not isinstance(note, str):
            raise ReviewError("actor and note must be strings")
        return cls(inspection_id, Decision.parse(str(data["decision"])), tuple(boxes), actor, note)

    def to_json(self) -> dict[str, Any]:
        return {"inspection_id": self.inspection_id, "decision": self.decision.value,
                "boxes": [b.to_json() for b in self.boxes], "actor": self.actor, "note": self.note}

"""Operator review decisions: what a person said about a frame the line flagged.

Every decision is kept (append-only) and becomes labeled data: a confirmed defect keeps the model's
boxes, a false alarm makes the frame a negative example, a correction replaces the boxes (and may
name a class the model does not know yet). The CLI and the review page record them through the same
``ReviewService``.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from inspection.errors import QCError

_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")


class ReviewError(QCError):
    """A review decision that cannot be recorded as given."""


class Decision(enum.StrEnum):
    CONFIRM = "confirm"          # the model's findings are right
    FALSE_ALARM = "false_alarm"  # there is no defect: a negative example
    CORRECT = "correct"          # the boxes below replace the model's


@dataclass(frozen=True)
class ReviewedBox:
    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        if not _CLASS_NAME.match(self.class_name):
            raise ReviewError(f"class name {self.class_name!r} must be 1-64 letters, digits, space, '_', '.' or '-'")
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(c) for c in coords) or min(coords) < 0:
            raise ReviewError(f"box {coords} must be finite, non-negative pixel coordinates")
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ReviewError(f"box {coords} needs x2 > x1 and y2 > y1")

    @classmethod
    def parse(cls, text: str) -> ReviewedBox:
        """``"class,x1,y1,x2,y2"`` as typed on the command line."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 5:
            raise ReviewError(f"box {text!r} must be 'class,x1,y1,x2,y2'")
        try:
            return cls(parts[0], *(float(p) for p in parts[1:]))
        except ValueError as exc:
            raise ReviewError(f"box {text!r} has a coordinate that is not a number") from exc

    def to_json(self) -> list[object]:
        return [self.class_name, self.x1, self.y1, self.x2, self.y2]


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

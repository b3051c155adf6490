"""Typed records shared by every importer and exporter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inspection.boxes import Box, BoxError


@dataclass(frozen=True)
class LabeledBox:
    """One annotated defect: its class and its ``Box`` in original image pixels (which must cover pixels)."""

    class_name: str
    box: Box

    def __post_init__(self) -> None:
        if not self.class_name:
            raise BoxError("LabeledBox.class_name must be a non-empty string")
        self.box.require_area()

    @classmethod
    def of(cls, class_name: str, x1: float, y1: float, x2: float, y2: float) -> LabeledBox:
        """From plain coordinates (``BoxError`` says what is wrong with them)."""
        return cls(class_name, Box.with_area(x1, y1, x2, y2))

    def to_json(self) -> list[object]:
        """``[class, x1, y1, x2, y2]``: the shape snapshot manifests store."""
        return [self.class_name, *self.box]


@dataclass(frozen=True)
class LabeledImage:
    """An image file with its size and boxes; an empty ``boxes`` is a negative (defect-free) example."""

    path: Path
    width: int
    height: int
    boxes: tuple[LabeledBox, ...]
    sha256: str

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"LabeledImage size must be positive, got {self.width}x{self.height}")
        if len(self.sha256) != 64:
            raise ValueError(f"LabeledImage.sha256 must be 64 hex characters, got {self.sha256!r}")


@dataclass(frozen=True)
class ImportIssue:
    """Something an importer skipped, and why: importers never drop data silently."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImportResult:
    """What an importer read. ``splits`` (image sha256 -> ``"train"``/``"val"``) is the source's own split,
    where it has one (YOLO ``data.yaml`` / ``images/{train,val}``, one COCO file per split, VOC
    ``ImageSets/Main``): kept so results compare with the dataset authors' numbers. ``found`` says in plain
    lines what the importer found (which yaml, which split folders), printed before the skip report."""

    images: tuple[LabeledImage, ...]
    skipped: tuple[ImportIssue, ...] = field(default_factory=tuple)
    splits: Mapping[str, str] = field(default_factory=dict, hash=False)
    found: tuple[str, ...] = field(default_factory=tuple)

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in order of first appearance sorted alphabetically, so ids are stable."""
        return tuple(sorted({b.class_name for im in self.images for b in im.boxes}))

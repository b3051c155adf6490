"""What every importer shares, so all formats validate boxes, read images and skip duplicates by the same
rules (the ones ``voc.py`` set): a box that is one format's "valid" must not be another's "outside the image".

Format modules import this module, never the package's dispatcher (``datasets.formats.import_dataset``),
which imports them: the dependency runs one way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2

from datasets.records import ImportIssue, ImportResult, LabeledBox, LabeledImage
from inspection.errors import DatasetError
from inspection.hashing import sha256_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

BORDER_SLACK_PX = 1.0
"""Annotation tools round to the pixel grid: a box this far past the border is clipped, not refused."""


def read_image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a decodable, non-empty image, else None (validates the file, not just its header)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    height, width = image.shape[:2]
    return int(width), int(height)


def checked_box(where: str, class_name: str, x1: float, y1: float, x2: float, y2: float,
                width: int, height: int) -> LabeledBox | ImportIssue:
    """A box clipped to the image, or the reason it was refused (outside beyond the slack, degenerate)."""
    slack = BORDER_SLACK_PX
    coords = (x1, y1, x2, y2)
    if not all(c == c and abs(c) != float("inf") for c in coords):
        return ImportIssue(where, f"box coordinates are not finite numbers: {coords}")
    if x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack:
        return ImportIssue(where, f"box ({x1:g},{y1:g},{x2:g},{y2:g}) lies outside the {width}x{height} image")
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(width), x2), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        return ImportIssue(where, f"degenerate box ({x1:g},{y1:g},{x2:g},{y2:g})")
    return LabeledBox.of(class_name, x1, y1, x2, y2)


def polygon_bounds(coords: Sequence[float]) -> tuple[float, float, float, float]:
    """Bounding box (x1, y1, x2, y2) of a flat ``x1 y1 x2 y2 ...`` polygon (caller checks its length)."""
    xs, ys = coords[0::2], coords[1::2]
    return min(xs), min(ys), max(xs), max(ys)


class ResultBuilder:
    """Collects images and issues for one import; refuses a second image with the same sha256.

    Duplicates are refused because a snapshot is keyed by content: two copies of one image would either
    leak across the train/val split or silently merge two different label sets.
    """

    def __init__(self) -> None:
        self.images: list[LabeledImage] = []
        self.skipped: list[ImportIssue] = []
        self.splits: dict[str, str] = {}
        self.found: list[str] = []
        self._seen: dict[str, Path] = {}

    def skip(self, where: str | Path, reason: str) -> None:
        self.skipped.append(ImportIssue(str(where), reason))

    def add(self, image_path: Path, width: int, height: int, boxes: Sequence[LabeledBox],
            sha256: str | None = None, split: str | None = None) -> LabeledImage | None:
        digest = sha256 or sha256_file(image_path)
        if digest in self._seen:
            self.skip(image_path, f"duplicate of {self._seen[digest]} (same sha256)")
            return None
        labeled = LabeledImage(image_path.resolve(), width, height, tuple(boxes), digest)
        self._seen[digest] = labeled.path
        self.images.append(labeled)
        if split is not None:
            self.splits[digest] = split
        return labeled

    def result(self, fmt: str, root: Path) -> ImportResult:
        log.info("%s import of %s: %d images, %d issues", fmt, root, len(self.images), len(self.skipped))
        return ImportResult(tuple(self.images), tuple(self.skipped), dict(self.splits), tuple(self.found))


def require_folder(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    return root


def restrict_classes(result: ImportResult, classes: Sequence[str]) -> ImportResult:
    """Drop (and report) boxes whose class is not in ``classes``: the user named the classes they want."""
    allowed = set(classes)
    skipped = list(result.skipped)
    images: list[LabeledImage] = []
    for image in result.images:
        kept = tuple(b for b in image.boxes if b.class_name in allowed)
        for box in image.boxes:
            if box.class_name not in allowed:
                reason = f"unknown class {box.class_name!r} (not in {list(classes)})"
                skipped.append(ImportIssue(str(image.path), reason))
        images.append(image if len(kept) == len(image.boxes) else
                      LabeledImage(image.path, image.width, image.height, kept, image.sha256))
    return replace(result, images=tuple(images), skipped=tuple(skipped))


SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}
"""Folder / file-name words that name a source split; ``test`` is mapped by ``source_split``."""


def split_word(text: str) -> str | None:
    """``"train"``/``"val"``/``"test"`` when ``text`` (a folder name, a file stem such as ``instances_val2017``)
    names a split, else ``None``."""
    for token in re.split(r"[^a-z]+", text.lower()):
        if token in SPLIT_WORDS:
            return SPLIT_WORDS[token]
    return None


def source_split(splits_present: set[str], split: str) -> str | None:
    """Where a source split goes in a snapshot (train / val only): ``test`` is the val split when the source
    has no val; with both, the test images stay out (``None``) so val means what the authors' val means."""
    if split == "test":
        return "val" if "val" not in splits_present else None
    return split

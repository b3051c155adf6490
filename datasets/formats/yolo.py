"""YOLO txt importer (ultralytics layout): ``images/`` + ``labels/`` with one ``.txt`` per image.

Accepts ``images/x.jpg`` + ``labels/x.txt``, split layouts (``images/train/x.jpg`` + ``labels/train/x.txt``)
and labels beside their images. Class names come from ``--classes``, else ``data.yaml`` / ``dataset.yaml``
(``names`` as a list or an ``{id: name}`` dict), else ``classes.txt``. Rows are ``cls cx cy w h`` boxes or
``cls x1 y1 x2 y2 ...`` segmentation polygons (normalised), turned into their bounding box. An image with
an empty or missing label file is a negative example, as in ultralytics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import yaml

from datasets.formats import (
    IMAGE_SUFFIXES,
    ResultBuilder,
    checked_box,
    polygon_bounds,
    read_image_size,
    require_folder,
)
from datasets.records import ImportIssue, ImportResult, LabeledBox
from inspection import safe_yaml
from inspection.errors import DatasetError

log = logging.getLogger(__name__)

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


def _names_from_yaml(path: Path) -> tuple[str, ...]:
    try:
        raw = safe_yaml.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path} does not parse as YAML: {exc}") from exc
    names = raw.get("names") if isinstance(raw, dict) else None
    if isinstance(names, list) and all(isinstance(n, str | int) for n in names):
        return tuple(str(n) for n in names)
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: 'names' keys must be class ids 0..n-1") from exc
        if sorted(by_id) != list(range(len(by_id))):
            raise DatasetError(f"{path}: 'names' ids must be 0..{len(by_id) - 1} without gaps, got {sorted(by_id)}")
        return tuple(by_id[i] for i in range(len(by_id)))
    raise DatasetError(f"{path} has no 'names' list or {{id: name}} mapping")


def class_names(root: Path, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """Class id -> name, from the override, ``data.yaml`` or ``classes.txt`` (in that order)."""
    if classes:
        return tuple(classes)
    for name in _YAML_NAMES:
        if (root / name).is_file():
            return _names_from_yaml(root / name)
    for candidate in (root / "classes.txt", root / "labels" / "classes.txt"):
        if candidate.is_file():
            names = tuple(line.strip() for line in candidate.read_text(encoding="utf-8").splitlines() if line.strip())
            if names:
                return names
    raise DatasetError(f"no class names for the YOLO dataset {root}: looked for {', '.join(_YAML_NAMES)} with "
                       "'names' and classes.txt; pass the names with --classes")


def _label_path(root: Path, image: Path) -> Path:
    """ultralytics' rule: swap the last ``images`` folder for ``labels``; else the ``.txt`` beside the image."""
    rel = image.relative_to(root)
    parts = list(rel.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return (root / Path(*parts)).with_suffix(".txt")
    return image.with_suffix(".txt")


def _parse_row(where: str, row: str, names: tuple[str, ...], width: int,
               height: int) -> LabeledBox | ImportIssue:
    fields = row.split()
    try:
        cls_value = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return ImportIssue(where, f"malformed row (not numbers): {row!r}")
    if not cls_value.is_integer():
        return ImportIssue(where, f"malformed row (class id {fields[0]!r} is not an integer)")
    cls_id = int(cls_value)
    if len(values) == 4:
        cx, cy, w, h = values
        coords = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    elif len(values) % 2 == 1:
        return ImportIssue(where, f"malformed row (odd number of polygon coordinates: {len(values)})")
    elif len(values) < 6:
        return ImportIssue(where, f"malformed row (a polygon needs at least 3 points, got {len(values) // 2})")
    else:
        x1, y1, x2, y2 = polygon_bounds(values)
        coords = (x1 * width, y1 * height, x2 * width, y2 * height)
    if not 0 <= cls_id < len(names):
        return ImportIssue(where, f"unknown class id {cls_id} (classes are 0..{len(names) - 1})")
    return checked_box(where, names[cls_id], *coords, width, height)


def import_yolo(root: Path, *, classes: Sequence[str] | None = None) -> ImportResult:
    """Read every image (and its label file) under ``root``; skipped files and rows are listed with a reason."""
    root = require_folder(root).resolve()
    image_root = root / "images" if (root / "images").is_dir() else root
    images = sorted(p for p in image_root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    label_files = {p for p in root.rglob("*.txt") if p.name != "classes.txt"}
    if not images and not label_files:
        raise DatasetError(f"no YOLO dataset under {root}: looked for images ({', '.join(IMAGE_SUFFIXES)}) under "
                           "images/ and label .txt files under labels/")
    names = class_names(root, classes)
    builder = ResultBuilder()
    used: set[Path] = set()
    for image_path in images:
        label = _label_path(root, image_path)
        used.add(label)
        size = read_image_size(image_path)
        if size is None:
            builder.skip(image_path, "image is unreadable or empty")
            continue
        width, height = size
        boxes: list[LabeledBox] = []
        if label.is_file():
            try:
                text = label.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                builder.skip(label, f"malformed label file (not UTF-8 text): {exc}")
                continue
            for line_no, row in enumerate(text.splitlines(), start=1):
                if not row.strip():
                    continue
                parsed = _parse_row(f"{label}:{line_no}", row, names, width, height)
                if isinstance(parsed, ImportIssue):
                    builder.skipped.append(parsed)
                else:
                    boxes.append(parsed)
        builder.add(image_path, width, height, boxes)
    for orphan in sorted(label_files - used):
        builder.skip(orphan, "no image file found for this label file")
    return builder.result("YOLO", root)

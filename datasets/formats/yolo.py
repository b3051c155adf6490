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
from typing import Any

import yaml

from datasets.formats.common import (
    IMAGE_SUFFIXES,
    ResultBuilder,
    checked_box,
    polygon_bounds,
    read_image_size,
    require_folder,
    source_split,
    split_word,
)
from datasets.records import ImportIssue, ImportResult, LabeledBox
from inspection import safe_yaml
from inspection.boxes import yolo_to_xyxy
from inspection.errors import DatasetError

log = logging.getLogger(__name__)

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
_SPLIT_KEYS = ("train", "val", "test")
_MAX_LIST_LINES = 1_000_000


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = safe_yaml.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path} does not parse as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path} is not a YOLO dataset yaml (a mapping with 'names', 'train', 'val')")
    return raw


def _names_from_yaml(path: Path, raw: dict[str, Any] | None = None) -> tuple[str, ...]:
    raw = _load_yaml(path) if raw is None else raw
    names = raw.get("names")
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


def find_data_yaml(path: Path) -> Path | None:
    """The dataset yaml: ``path`` itself, one in ``path``, or one in a folder one level down (the common
    ``Datasets/data.yaml`` + ``Datasets/images/...`` layout of published sets). Two one level down are
    ambiguous: the user must name one."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    for name in _YAML_NAMES:
        if (path / name).is_file():
            return path / name
    below = [child / name for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
             for name in _YAML_NAMES if (child / name).is_file()]
    if len(below) > 1:
        raise DatasetError(f"several dataset yaml files one level below {path}: "
                           f"{', '.join(str(p.relative_to(path)) for p in below)}; pass the one to import")
    return below[0] if below else None


def class_names(root: Path, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """Class id -> name, from the override, ``data.yaml`` (here or one level down) or ``classes.txt``."""
    if classes:
        return tuple(classes)
    found = find_data_yaml(root)
    if found is not None:
        return _names_from_yaml(found)
    for candidate in (root / "classes.txt", root / "labels" / "classes.txt"):
        if candidate.is_file():
            names = tuple(line.strip() for line in candidate.read_text(encoding="utf-8").splitlines() if line.strip())
            if names:
                return names
    raise DatasetError(f"no class names for the YOLO dataset {root}: looked for {', '.join(_YAML_NAMES)} with "
                       "'names' (here and one folder down) and classes.txt; pass the names with --classes")


def _resolve(base: Path, yaml_dir: Path, value: str) -> Path | None:
    """A yaml path value as ultralytics reads it: absolute, else under ``path``; also the Roboflow quirk
    (``train: ../train/images`` written relative to a folder inside the dataset)."""
    candidates = [Path(value)] if Path(value).is_absolute() else []
    candidates += [base / value, yaml_dir / value]
    if value.startswith("../"):
        candidates += [base / value[3:], yaml_dir / value[3:]]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    return None


def _images_of(entry: Path) -> list[Path]:
    """Images named by one split entry: a folder (searched recursively), a ``.txt`` list, or one image."""
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if entry.suffix.lower() == ".txt":
        lines = entry.read_text(encoding="utf-8").splitlines()[:_MAX_LIST_LINES]
        paths = [(entry.parent / line.strip()).resolve() for line in lines if line.strip()]
        return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    return [entry] if entry.suffix.lower() in IMAGE_SUFFIXES else []


def _yaml_layout(yaml_path: Path, builder: ResultBuilder) -> tuple[Path, dict[str, list[Path]]]:
    """The dataset root and images per split, from the yaml's ``path`` / ``train`` / ``val`` / ``test``."""
    raw = _load_yaml(yaml_path)
    yaml_dir = yaml_path.parent.resolve()
    base = yaml_dir
    declared = raw.get("path")
    if isinstance(declared, str) and declared.strip():
        resolved = _resolve(yaml_dir, yaml_dir, declared.strip())
        if resolved is not None and resolved.is_dir():
            base = resolved
        else:
            builder.found.append(f"path: {declared!r} does not exist here; reading the splits relative to {yaml_dir}")
    splits: dict[str, list[Path]] = {}
    missing: list[str] = []
    for key in _SPLIT_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        for item in entries:
            if not isinstance(item, str):
                builder.skip(yaml_path, f"{key}: {item!r} is not a path")
                continue
            target = _resolve(base, yaml_dir, item)
            if target is None:
                missing.append(f"{key}: {item!r} not found under {base}")
                continue
            images = _images_of(target)
            builder.found.append(f"{key}: {item} -> {target} ({len(images)} images)")
            splits.setdefault(key, []).extend(images)
    if splits:
        for message in missing:
            builder.skip(yaml_path, message)
    else:  # none of the declared splits is here (a yaml written for another machine): read the folder instead
        builder.found.extend(f"{message}; reading the folder beside the yaml instead" for message in missing)
    return base, splits


def _label_path_of(image: Path) -> Path:
    """ultralytics' rule on the whole path: swap the last ``images`` folder for ``labels``; else the ``.txt``
    beside the image."""
    parts = list(image.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


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
        coords = yolo_to_xyxy(cx, cy, w, h, width, height)
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


def _read_labels(builder: ResultBuilder, label: Path, names: tuple[str, ...], width: int,
                 height: int) -> list[LabeledBox] | None:
    boxes: list[LabeledBox] = []
    if not label.is_file():
        return boxes
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        builder.skip(label, f"malformed label file (not UTF-8 text): {exc}")
        return None
    for line_no, row in enumerate(text.splitlines(), start=1):
        if not row.strip():
            continue
        parsed = _parse_row(f"{label}:{line_no}", row, names, width, height)
        if isinstance(parsed, ImportIssue):
            builder.skipped.append(parsed)
        else:
            boxes.append(parsed)
    return boxes


def _tree_layout(root: Path) -> dict[str, list[Path]]:
    """No split keys in a yaml: every image under ``images/`` (or the root), its split named by a folder
    on the way (``images/train/...``, ``train/images/...``, ``valid/...``), else ``""`` (none)."""
    image_root = root / "images" if (root / "images").is_dir() else root
    splits: dict[str, list[Path]] = {}
    for image in sorted(p for p in image_root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        rel_dirs = image.relative_to(root).parts[:-1]
        split = next((w for w in map(split_word, rel_dirs) if w is not None), None)
        splits.setdefault(split or "", []).append(image)
    return splits


def import_yolo(root: Path, *, classes: Sequence[str] | None = None) -> ImportResult:
    """Read every image (and its label file) of a YOLO dataset; skipped files and rows are listed with a reason.

    ``root`` is the dataset folder, a folder whose child holds the ``data.yaml``, or the yaml itself. The
    yaml's ``path`` / ``train`` / ``val`` / ``test`` are resolved as ultralytics does, and each image keeps
    the split it came from (``ImportResult.splits``).
    """
    builder = ResultBuilder()
    yaml_path = find_data_yaml(Path(root)) if Path(root).exists() else None
    if yaml_path is None:
        root = require_folder(root).resolve()
        builder.found.append(f"YOLO folder {root} (no data.yaml here or one folder down)")
        base, splits = root, _tree_layout(root)
        if not any(splits.values()) and not any(root.rglob("*.txt")):
            raise DatasetError(f"no YOLO dataset under {root}: looked for images ({', '.join(IMAGE_SUFFIXES)}) "
                               "under images/ and label .txt files under labels/, and data.yaml here or one "
                               "folder down")
        names = class_names(root, classes)
    else:
        yaml_path = yaml_path.resolve()
        builder.found.append(f"YOLO dataset yaml {yaml_path}")
        raw = _load_yaml(yaml_path)
        names = tuple(classes) if classes else _names_from_yaml(yaml_path, raw)
        builder.found.append(f"classes ({len(names)}): {', '.join(names)}"
                             + (" (from --classes)" if classes else f" (from {yaml_path.name})"))
        base, splits = _yaml_layout(yaml_path, builder)
        if not splits:  # a yaml with names only: the folder beside it, split by folder names
            base = yaml_path.parent
            splits = _tree_layout(base)
    present = {k for k, v in splits.items() if k and v}
    if present:
        builder.found.append("splits kept from the source: " + ", ".join(
            f"{k} {len(splits[k])}" for k in _SPLIT_KEYS if k in present)
            + ("; test becomes val" if "test" in present and "val" not in present else "")
            + ("; test kept out (the source has its own val)" if {"test", "val"} <= present else ""))
    label_files = {p.resolve() for p in base.rglob("*.txt") if "labels" in p.parts or p.parent.name == "labels"}
    if not any(splits.values()) and not label_files:
        raise DatasetError(f"no YOLO dataset under {base}: looked for images ({', '.join(IMAGE_SUFFIXES)}) under "
                           "images/ and label .txt files under labels/")
    used: set[Path] = set()
    for split in [k for k in (*_SPLIT_KEYS, "") if k in splits]:
        target = source_split(present, split) if split else None
        for image_path in splits[split]:
            label = _label_path_of(image_path.resolve())
            used.add(label)
            if split and target is None:
                builder.skip(image_path, "in the source's test split (kept out: the source has its own val split)")
                continue
            size = read_image_size(image_path)
            if size is None:
                builder.skip(image_path, "image is unreadable or empty")
                continue
            width, height = size
            boxes = _read_labels(builder, label, names, width, height)
            if boxes is None:
                continue
            builder.add(image_path, width, height, boxes, split=target)
    for orphan in sorted(label_files - used):
        if orphan.name != "classes.txt":
            builder.skip(orphan, "no image file found for this label file")
    return builder.result("YOLO", base)

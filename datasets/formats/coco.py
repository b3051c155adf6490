"""COCO JSON importer: ``images`` (file_name, width, height), ``annotations`` (bbox [x, y, w, h]), ``categories``.

``path`` is a COCO ``.json`` file or a folder holding one or more (``instances_train.json`` and
``instances_val.json`` are merged, each image keeping the split its file names). Image files are resolved
relative to the JSON's folder, an ``images/`` folder beside it or above it. ``iscrowd`` boxes are kept
(for defect detection they are still defects); ``segmentation`` is used only when ``bbox`` is missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from datasets.formats.common import (
    ResultBuilder,
    checked_box,
    polygon_bounds,
    read_image_size,
    source_split,
    split_word,
)
from datasets.records import ImportIssue, ImportResult, LabeledBox
from inspection.boxes import xywh_to_xyxy
from inspection.errors import DatasetError

log = logging.getLogger(__name__)


def _is_coco(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get("images"), list) and "annotations" in data


def _find_json(path: Path, builder: ResultBuilder) -> list[tuple[Path, dict[str, Any]]]:
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"COCO file {path} does not parse as JSON: {exc}") from exc
        if not _is_coco(data):
            raise DatasetError(f"{path} is not a COCO file: it needs 'images' and 'annotations'")
        return [(path, data)]
    if not path.is_dir():
        raise DatasetError(f"dataset path {path} does not exist")
    found: list[tuple[Path, dict[str, Any]]] = []
    for candidate in sorted(path.rglob("*.json")):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            builder.skip(candidate, f"malformed annotation file (JSON does not parse): {exc}")
            continue
        if _is_coco(data):
            found.append((candidate, data))
        else:
            log.debug("ignoring %s: not a COCO file", candidate)
    if not found:
        raise DatasetError(f"no COCO annotations under {path}: looked for *.json files with 'images' and "
                           "'annotations'")
    return found


def _resolve_image(json_path: Path, file_name: str) -> Path | None:
    rel = Path(file_name)
    if rel.is_absolute() or ".." in rel.parts:
        return None  # a label file must not point the importer at arbitrary files
    folder = json_path.parent
    for base in (folder, folder / "images", folder.parent / "images", folder.parent):
        for candidate in (base / rel, base / rel.name):
            if candidate.is_file():
                return candidate
    return None


def _box_of(ann: dict[str, Any]) -> tuple[float, float, float, float] | str:
    bbox = ann.get("bbox")
    if bbox:
        if not isinstance(bbox, list) or len(bbox) != 4:
            return f"malformed bbox {bbox!r} (expected [x, y, w, h])"
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            return f"malformed bbox {bbox!r} (not numbers)"
        return xywh_to_xyxy(x, y, w, h)
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        coords: list[float] = []
        for poly in seg:
            if not isinstance(poly, list) or len(poly) % 2 or len(poly) < 6:
                return "malformed segmentation polygon (needs an even number of coordinates, >= 3 points)"
            try:
                coords.extend(float(v) for v in poly)
            except (TypeError, ValueError):
                return "malformed segmentation polygon (not numbers)"
        return polygon_bounds(coords)
    if isinstance(seg, dict):
        return "RLE segmentation without a bbox is not supported"
    return "annotation has neither bbox nor segmentation"


def _import_one(json_path: Path, data: dict[str, Any], builder: ResultBuilder) -> None:
    categories: dict[Any, str] = {}
    for cat in data.get("categories") or []:
        if isinstance(cat, dict) and "id" in cat and cat.get("name"):
            categories[cat["id"]] = str(cat["name"])
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for index, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict) or "image_id" not in ann:
            builder.skip(f"{json_path}#annotations[{index}]", "malformed annotation (no image_id)")
            continue
        by_image.setdefault(ann["image_id"], []).append({**ann, "_index": index})
    seen_ids: set[Any] = set()
    for info in data["images"]:
        if not isinstance(info, dict) or "id" not in info or not info.get("file_name"):
            builder.skip(json_path, f"malformed image entry {info!r} (needs id and file_name)")
            continue
        where_image = f"{json_path}#image{info['id']}"
        if info["id"] in seen_ids:
            builder.skip(where_image, f"image id {info['id']} appears twice in {json_path.name}")
            continue
        seen_ids.add(info["id"])
        image_path = _resolve_image(json_path, str(info["file_name"]))
        if image_path is None:
            builder.skip(where_image, f"no image file found for {info['file_name']!r}")
            continue
        size = read_image_size(image_path)
        if size is None:
            builder.skip(image_path, "image is unreadable or empty")
            continue
        width, height = size
        declared = (info.get("width"), info.get("height"))
        if all(isinstance(v, int) for v in declared) and declared != size:
            builder.skip(image_path, f"image is {width}x{height} but the annotation says {declared[0]}x{declared[1]}")
            continue
        boxes: list[LabeledBox] = []
        for ann in by_image.pop(info["id"], []):
            where = f"{json_path}#annotations[{ann['_index']}]"
            name = categories.get(ann.get("category_id"))
            if name is None:
                builder.skip(where, f"unknown category_id {ann.get('category_id')!r}")
                continue
            coords = _box_of(ann)
            if isinstance(coords, str):
                builder.skip(where, coords)
                continue
            box = checked_box(where, name, *coords, width, height)
            if isinstance(box, ImportIssue):
                builder.skipped.append(box)
            else:
                boxes.append(box)
        builder.add(image_path, width, height, boxes)
    for image_id, anns in by_image.items():
        for ann in anns:
            if image_id not in seen_ids:
                builder.skip(f"{json_path}#annotations[{ann['_index']}]", f"unknown image_id {image_id!r}")


def _split_of_file(json_path: Path) -> str | None:
    """``instances_val2017.json`` -> val; Roboflow's ``valid/_annotations.coco.json`` -> val; else None."""
    return split_word(json_path.stem) or split_word(json_path.parent.name)


def import_coco(path: Path) -> ImportResult:
    """Read a COCO file (or every COCO file under a folder); skipped images and boxes are listed with a reason.

    With one annotation file per split (named by its file or its folder: train / val / valid / test), each
    image keeps its file's split (``ImportResult.splits``)."""
    path = Path(path)
    builder = ResultBuilder()
    files = _find_json(path, builder)
    file_splits = {json_path: _split_of_file(json_path) for json_path, _ in files} if len(files) > 1 else {}
    present = {s for s in file_splits.values() if s}
    for json_path, data in files:
        split = file_splits.get(json_path)
        target = source_split(present, split) if split else None
        builder.found.append(f"COCO file {json_path} ({len(data.get('images') or [])} images"
                             + (f", split {split}" + (f" -> {target}" if target and target != split else "")
                                if split else "") + ")")
        if split and target is None:
            builder.skip(json_path, "the source's test split is kept out (the source has its own val split)")
            continue
        before = len(builder.images)
        _import_one(json_path, data, builder)
        if target:
            for image in builder.images[before:]:
                builder.splits[image.sha256] = target
    if present:
        builder.found.append(f"splits kept from the source: {', '.join(sorted(present))}")
    return builder.result("COCO", path)

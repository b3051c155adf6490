"""labelme importer: one ``.json`` per image with ``shapes`` (rectangle / polygon) and ``imagePath``.

``imagePath`` is relative to the JSON file. When the image file is missing but the JSON embeds it
(``imageData``, base64), the decoded bytes are stored in the dataset library's content-addressed image
store (``image_store``), so the snapshot has a real file to point at; without a store such images are
skipped with that reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.formats.common import (
    IMAGE_SUFFIXES,
    ResultBuilder,
    checked_box,
    polygon_bounds,
    read_image_size,
    require_folder,
)
from datasets.records import ImportIssue, ImportResult, LabeledBox
from inspection.blobs import ContentStore
from inspection.errors import DatasetError
from inspection.hashing import sha256_bytes

log = logging.getLogger(__name__)

_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"BM", ".bmp"), (b"II*\x00", ".tif"),
          (b"MM\x00*", ".tif"), (b"RIFF", ".webp"))


def _sniff_suffix(data: bytes) -> str:
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    return ".png"


def _embedded_image(json_path: Path, image_data: str, image_store: ContentStore | None,
                    builder: ResultBuilder) -> tuple[Path, str] | None:
    if image_store is None:
        builder.skip(json_path, "image file missing and embedded imageData needs the dataset library's image store")
        return None
    try:
        data = base64.b64decode(image_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        builder.skip(json_path, f"malformed annotation file (imageData is not base64): {exc}")
        return None
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        builder.skip(json_path, "embedded imageData is not a readable image")
        return None
    digest = sha256_bytes(data)
    try:
        return image_store.put_bytes(digest, data, _sniff_suffix(data)), digest
    except OSError as exc:
        raise DatasetError(f"cannot store the image embedded in {json_path} in {image_store.root}: {exc}") from exc


def _find_image(root: Path, json_path: Path, image_path: str) -> Path | None:
    """``imagePath`` relative to the JSON, else its name or the JSON's stem beside it.

    labelme writes ``..\\images\\x.jpg`` when annotations live in their own folder, so ``..`` is allowed,
    but only while the result stays inside the dataset folder: a label file must not point the importer at
    arbitrary files (an extracted archive's JSON could name ``/etc/...``).
    """
    candidates: list[Path] = []
    rel = Path(image_path.replace("\\", "/"))
    if image_path and not rel.is_absolute():
        candidates += [json_path.parent / rel, json_path.parent / rel.name]
    candidates += sorted(p for p in json_path.parent.glob(f"{json_path.stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES)
    inside = root.resolve()
    return next((c for c in candidates if c.is_file() and c.resolve().is_relative_to(inside)), None)


def _shape_box(where: str, shape: Any, width: int, height: int) -> LabeledBox | ImportIssue:
    if not isinstance(shape, dict):
        return ImportIssue(where, "malformed shape (not an object)")
    label = str(shape.get("label") or "").strip()
    if not label:
        return ImportIssue(where, "shape without a label")
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points")
    if not isinstance(points, list):
        return ImportIssue(where, f"malformed shape (points {points!r} is not a list)")
    try:
        coords = [float(v) for point in points for v in point]
        if any(len(point) != 2 for point in points):
            raise ValueError("points must be [x, y] pairs")
    except (TypeError, ValueError) as exc:
        return ImportIssue(where, f"malformed points {points!r}: {exc}")
    if kind == "rectangle":
        if len(coords) != 4:
            return ImportIssue(where, f"malformed rectangle: needs 2 points, got {len(coords) // 2}")
    elif kind == "polygon":
        if len(coords) < 6:
            return ImportIssue(where, f"malformed polygon: needs at least 3 points, got {len(coords) // 2}")
    else:
        return ImportIssue(where, f"unsupported shape_type {kind!r} (rectangle and polygon are imported)")
    return checked_box(where, label, *polygon_bounds(coords), width, height)


def _import_one(root: Path, json_path: Path, text: str, image_store: ContentStore | None,
                builder: ResultBuilder) -> None:
    try:
        data = json.loads(text)
    except ValueError as exc:
        builder.skip(json_path, f"malformed annotation file (JSON does not parse): {exc}")
        return
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        builder.skip(json_path, "malformed annotation file (no 'shapes' list)")
        return
    digest: str | None = None
    image_path = _find_image(root, json_path, str(data.get("imagePath") or ""))
    if image_path is None:
        if not data.get("imageData"):
            builder.skip(json_path, f"no image file found (imagePath {data.get('imagePath')!r}, no imageData)")
            return
        stored = _embedded_image(json_path, str(data["imageData"]), image_store, builder)
        if stored is None:
            return
        image_path, digest = stored
    size = read_image_size(image_path)
    if size is None:
        builder.skip(image_path, "image is unreadable or empty")
        return
    width, height = size
    boxes: list[LabeledBox] = []
    for index, shape in enumerate(data["shapes"]):
        box = _shape_box(f"{json_path}#shape{index}", shape, width, height)
        if isinstance(box, ImportIssue):
            builder.skipped.append(box)
        else:
            boxes.append(box)
    builder.add(image_path, width, height, boxes, digest)


def import_labelme(root: Path, *, image_store: ContentStore | None = None) -> ImportResult:
    """Read every labelme JSON under ``root``; skipped files and shapes are listed with a reason."""
    root = require_folder(root)
    builder = ResultBuilder()
    found = 0
    for path in sorted(root.rglob("*.json")):  # each file read once (embedded imageData can be large)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            builder.skip(path, f"annotation file cannot be read: {exc}")
            continue
        # Only files that look like labelme count; a broken one that mentions shapes is reported.
        if '"shapes"' in text or '"imagePath"' in text:
            found += 1
            _import_one(root, path, text, image_store, builder)
    if not found:
        raise DatasetError(f"no labelme annotations under {root}: looked for *.json files with 'shapes'")
    return builder.result("labelme", root)

"""Pascal VOC XML importer (one ``.xml`` per image, ``<object><name>`` + ``<bndbox>``).

Accepts the common layouts: ``annotations/`` + ``images/`` (NEU-DET), ``Annotations/`` +
``JPEGImages/`` (VOC devkit), or XML files beside their images.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

from datasets.formats.common import IMAGE_SUFFIXES, checked_box, read_image_size
from datasets.records import ImportIssue, ImportResult, LabeledBox, LabeledImage
from inspection.errors import DatasetError
from inspection.hashing import sha256_file

log = logging.getLogger(__name__)

_ANNOTATION_DIRS = ("annotations", "Annotations", "labels", "xml")
_IMAGE_DIRS = ("images", "JPEGImages", "imgs", ".")


def _find_annotation_files(root: Path) -> list[Path]:
    for name in _ANNOTATION_DIRS:
        folder = root / name
        if folder.is_dir():
            files = sorted(folder.rglob("*.xml"))
            if files:
                return files
    return sorted(root.rglob("*.xml"))


def _find_image(root: Path, xml_path: Path, filename: str | None) -> Path | None:
    candidates: list[Path] = []
    stems = [Path(filename).name] if filename else []
    for folder in [xml_path.parent, *(root / d for d in _IMAGE_DIRS)]:
        for name in stems:
            candidates.append(folder / name)
        for suffix in IMAGE_SUFFIXES:
            candidates.append(folder / f"{xml_path.stem}{suffix}")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _text(node: ET.Element | None, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _parse_one(root: Path, xml_path: Path) -> tuple[LabeledImage | None, list[ImportIssue]]:
    issues: list[ImportIssue] = []
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, OSError) as exc:
        return None, [ImportIssue(str(xml_path), f"XML does not parse: {exc}")]
    ann = tree.getroot()
    image_path = _find_image(root, xml_path, _text(ann, "filename"))
    if image_path is None:
        return None, [ImportIssue(str(xml_path), "no image file found for this annotation")]
    size = read_image_size(image_path)
    if size is None:
        return None, [ImportIssue(str(image_path), "image is unreadable or empty")]
    width, height = size
    boxes: list[LabeledBox] = []
    for index, obj in enumerate(ann.findall("object")):
        name = _text(obj, "name")
        bnd = obj.find("bndbox")
        where = f"{xml_path}#object{index}"
        if not name or bnd is None:
            issues.append(ImportIssue(where, "object without <name> or <bndbox>"))
            continue
        try:
            x1, y1, x2, y2 = (float(_text(bnd, t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            issues.append(ImportIssue(where, "box coordinates are not numbers"))
            continue
        # VOC coordinates are 1-based inclusive pixels: the shared check's one pixel of border slack covers it,
        # and a missing coordinate (nan) is refused there instead of being clipped into a box to the edge.
        box = checked_box(where, name.strip(), x1, y1, x2, y2, width, height)
        if isinstance(box, ImportIssue):
            issues.append(box)
            continue
        boxes.append(box)
    labeled = LabeledImage(image_path.resolve(), width, height, tuple(boxes), sha256_file(image_path))
    return labeled, issues


def _image_sets(root: Path) -> tuple[dict[str, str], list[str]]:
    """Image id -> split from VOC's ``ImageSets/Main/{train,val,trainval,test}.txt`` (here or one folder
    down, as in ``VOCdevkit/VOC2007``), with lines saying what was found. ``trainval`` + ``test`` (no
    separate val) become train + val; with a val list, test ids are marked ``test`` and kept out."""
    folders = [root / "ImageSets" / "Main", *sorted(p / "ImageSets" / "Main" for p in root.iterdir() if p.is_dir())]
    main = next((f for f in folders if f.is_dir()), None)
    if main is None:
        return {}, []
    lists: dict[str, list[str]] = {}
    for name in ("train", "val", "trainval", "test"):
        file = main / f"{name}.txt"
        if file.is_file():
            lists[name] = [line.split()[0] for line in file.read_text(encoding="utf-8").splitlines() if line.split()]
    of: dict[str, str] = {}
    if "train" in lists or "val" in lists:
        for name in ("test", "train", "val"):  # later wins: an id in train and test is train
            for image_id in lists.get(name, []):
                of[image_id] = name if name != "test" or "val" not in lists else "test"
        if "val" not in lists:
            for image_id in lists.get("test", []):
                of[image_id] = "val"
    elif "trainval" in lists:
        for image_id in lists.get("test", []):
            of[image_id] = "val"
        for image_id in lists["trainval"]:
            of[image_id] = "train"
    found = [f"VOC image sets {main}: " + ", ".join(f"{k} {len(v)}" for k, v in lists.items())] if lists else []
    return of, found


def import_voc(root: Path) -> ImportResult:
    """Read every VOC annotation under ``root``; skipped files and boxes are listed with a reason."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    xml_files = _find_annotation_files(root)
    if not xml_files:
        raise DatasetError(f"no Pascal VOC .xml annotations found under {root}")
    images: list[LabeledImage] = []
    skipped: list[ImportIssue] = []
    seen: dict[str, Path] = {}
    split_of_id, found = _image_sets(root)
    splits: dict[str, str] = {}
    for xml_path in xml_files:
        split = split_of_id.get(xml_path.stem)
        if split == "test":
            skipped.append(ImportIssue(str(xml_path), "in the source's test set (kept out: the source has its own "
                                                      "val set)"))
            continue
        labeled, issues = _parse_one(root, xml_path)
        skipped.extend(issues)
        if labeled is None:
            continue
        if labeled.sha256 in seen:
            skipped.append(ImportIssue(str(labeled.path), f"duplicate of {seen[labeled.sha256]}"))
            continue
        seen[labeled.sha256] = labeled.path
        images.append(labeled)
        if split is not None:
            splits[labeled.sha256] = split
    found = [f"Pascal VOC: {len(xml_files)} annotation files under {root}", *found]
    if splits:
        found.append(f"splits kept from the source: {sum(v == 'train' for v in splits.values())} train, "
                     f"{sum(v == 'val' for v in splits.values())} val")
    log.info("VOC import of %s: %d images, %d issues", root, len(images), len(skipped))
    return ImportResult(tuple(images), tuple(skipped), splits, tuple(found))

"""Importers, one module per annotation format, and ``import_dataset`` to pick one by name.

``IMPORTERS`` maps each format name to its importer; the format modules share the helpers of
``datasets.formats.common`` and never import this module, so there is no cycle to hide.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

from datasets.formats.coco import import_coco
from datasets.formats.common import require_folder, restrict_classes
from datasets.formats.labelme import import_labelme
from datasets.formats.voc import import_voc
from datasets.formats.yolo import import_yolo
from datasets.records import ImportResult
from inspection.blobs import ContentStore
from inspection.errors import DatasetError

log = logging.getLogger(__name__)

Importer = Callable[[Path, Sequence[str] | None, ContentStore | None], ImportResult]
"""``(path, classes, image_store) -> result``: one importer per format, called by ``import_dataset``."""


def _restricted(result: ImportResult, classes: Sequence[str] | None) -> ImportResult:
    return restrict_classes(result, classes) if classes else result


IMPORTERS: dict[str, Importer] = {
    "voc": lambda path, classes, store: _restricted(import_voc(path), classes),
    # YOLO labels are class ids: ``classes`` names ids 0..n-1 instead of filtering
    "yolo": lambda path, classes, store: import_yolo(path, classes=classes),
    "coco": lambda path, classes, store: _restricted(import_coco(path), classes),
    "labelme": lambda path, classes, store: _restricted(import_labelme(path, image_store=store), classes),
}
FORMATS = tuple(IMPORTERS)
"""Formats ``import_dataset`` reads; ``"auto"`` is also accepted and detects one of these."""

_DETECT_MAX_JSON = 200
_DETECT_MAX_BYTES = 64 << 20


def _load_small_json(path: Path) -> object:
    if path.stat().st_size > _DETECT_MAX_BYTES:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def detect_format(root: Path) -> str:
    """Guess the annotation format of a folder from its files; DatasetError says what was looked for.

    Order matters: COCO and labelme are both JSON (told apart by their keys), and a YOLO tree is the
    weakest signal (any ``.txt``), so it is checked last.
    """
    root = require_folder(root)
    for index, path in enumerate(sorted(root.rglob("*.json"))):
        if index >= _DETECT_MAX_JSON:
            break
        data = _load_small_json(path)
        if isinstance(data, dict):
            if "images" in data and "annotations" in data:
                return "coco"
            if "shapes" in data:
                return "labelme"
    for path in sorted(root.rglob("*.xml")):
        try:
            if ET.parse(path).getroot().tag == "annotation":
                return "voc"
        except (ET.ParseError, OSError):
            continue
    yaml_names = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
    if any(p.name in yaml_names for p in root.iterdir()) or (root / "labels").is_dir():
        return "yolo"
    if any((child / name).is_file() for child in root.iterdir() if child.is_dir() for name in yaml_names):
        return "yolo"  # the published-set layout: Datasets/data.yaml one folder down
    if any(p.name != "classes.txt" for p in root.rglob("*.txt")):
        return "yolo"
    raise DatasetError(
        f"cannot detect the annotation format of {root}: looked for COCO JSON (images + annotations), labelme "
        "JSON (shapes), Pascal VOC .xml (<annotation>) and YOLO labels (labels/*.txt, data.yaml); "
        "pass --format to say which it is")


def import_dataset(path: Path, fmt: str = "auto", *, classes: Sequence[str] | None = None,
                   image_store: ContentStore | None = None) -> ImportResult:
    """Import a dataset folder (or a COCO ``.json`` file) in format ``fmt`` (one of FORMATS, or ``"auto"``).

    ``classes``: for YOLO the names of class ids 0..n-1 (overriding data.yaml / classes.txt); for the
    name-based formats the classes to keep (others are skipped and reported). ``image_store``: the dataset
    library's content-addressed image store, used by labelme for images that only exist embedded in the JSON.
    Archives are extracted first by ``datasets.formats.archive.extracted``.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist")
    if fmt == "auto" and path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        fmt = "yolo"  # a path to data.yaml itself
    if fmt == "auto":
        fmt = "coco" if path.is_file() and path.suffix.lower() == ".json" else detect_format(path)
        log.info("detected format %s for %s", fmt, path)
    importer = IMPORTERS.get(fmt)
    if importer is None:
        raise DatasetError(f"unknown dataset format {fmt!r}: expected one of {', '.join((*FORMATS, 'auto'))}")
    return importer(path, classes, image_store)

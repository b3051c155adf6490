"""Write a snapshot as an ultralytics YOLO dataset (images/, labels/, data.yaml) or as COCO instances JSON."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from datasets.snapshot import Snapshot, SnapshotEntry
from inspection.blobs import write_atomic


def _place_image(entry: SnapshotEntry, image_dir: Path, *, copy_images: bool) -> Path:
    """Hard-link (or copy) the image under ``<stem>_<sha12><ext>``, so two sources with one name never collide."""
    image = entry.image
    image_dir.mkdir(parents=True, exist_ok=True)
    target = image_dir / f"{Path(image.path).stem}_{image.sha256[:12]}{Path(image.path).suffix.lower()}"
    if not target.exists():
        try:
            if copy_images:
                raise OSError("copy requested")
            os.link(image.path, target)
        except OSError:
            shutil.copyfile(image.path, target)
    return target


def export_yolo(snapshot: Snapshot, out_dir: Path, *, copy_images: bool = False) -> Path:
    """Lay out ``images/{train,val}`` and ``labels/{train,val}`` (and ``test`` when the snapshot has one);
    return the ``data.yaml`` path.

    ``data.yaml`` names ``val`` as ultralytics' validation set, so its best epoch is chosen on val only;
    ``test`` is listed for completeness (ultralytics reads it only for ``val(split="test")``, which qcline
    never runs: test figures come from the station runtime, ``models.evaluation``). Images are hard-linked
    (or copied when asked, or across file systems) under their sha256 so two source files with one name
    cannot collide. ``data.yaml`` carries an absolute ``path`` because ultralytics otherwise resolves
    relative paths against its own settings folder.
    """
    out_dir = Path(out_dir).resolve()
    class_index = {name: i for i, name in enumerate(snapshot.classes)}
    for entry in snapshot.entries:
        image = entry.image
        target = _place_image(entry, out_dir / "images" / entry.split, copy_images=copy_images)
        stem = target.stem
        label_dir = out_dir / "labels" / entry.split
        label_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for box in image.boxes:
            cx, cy, w, h = box.box.to_yolo(image.width, image.height)
            lines.append(f"{class_index[box.class_name]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (label_dir / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out_dir),
        "train": "images/train",
        "val": "images/val",
        **({"test": "images/test"} if snapshot.has_test else {}),
        "names": dict(enumerate(snapshot.classes)),
        "snapshot": snapshot.id,
    }, sort_keys=False))
    return data_yaml


def export_coco(snapshot: Snapshot, out_dir: Path, *, copy_images: bool = False) -> Path:
    """Write ``images/<split>/`` and ``annotations/instances_<split>.json`` (train, val, and test when the
    snapshot has one); return ``out_dir``.

    Category ids are 1-based (COCO convention; 0 is background in many tools) in snapshot class order, so
    ``import_coco`` reads back the same class map. ``file_name`` is ``<split>/<name>``, resolved by the
    importer through the ``images/`` folder beside ``annotations/``. ``info.snapshot`` names the source.
    """
    out_dir = Path(out_dir).resolve()
    categories = [{"id": i + 1, "name": name, "supercategory": "defect"} for i, name in enumerate(snapshot.classes)]
    category_id = {name: i + 1 for i, name in enumerate(snapshot.classes)}
    annotation_id = 0
    for split in snapshot.split_counts():
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_id, entry in enumerate(snapshot.split(split), start=1):
            target = _place_image(entry, out_dir / "images" / split, copy_images=copy_images)
            image = entry.image
            images.append({"id": image_id, "file_name": f"{split}/{target.name}", "width": image.width,
                           "height": image.height, "sha256": image.sha256})
            for box in image.boxes:
                annotation_id += 1
                annotations.append({"id": annotation_id, "image_id": image_id,
                                    "category_id": category_id[box.class_name],
                                    "bbox": list(box.box.to_xywh()), "area": box.box.area, "iscrowd": 0})
        document = {"info": {"description": f"qcline snapshot {snapshot.id}", "snapshot": snapshot.id,
                             "split": split},
                    "images": images, "annotations": annotations, "categories": categories}
        write_atomic(out_dir / "annotations" / f"instances_{split}.json", json.dumps(document))
    return out_dir

"""Write a snapshot as an ultralytics YOLO dataset (images/, labels/, data.yaml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from datasets.snapshot import Snapshot


def export_yolo(snapshot: Snapshot, out_dir: Path, *, copy_images: bool = False) -> Path:
    """Lay out ``images/{train,val}`` and ``labels/{train,val}``; return the ``data.yaml`` path.

    Images are hard-linked (or copied when asked, or across file systems) under their sha256 so two
    source files with one name cannot collide. ``data.yaml`` carries an absolute ``path`` because
    ultralytics otherwise resolves relative paths against its own settings folder.
    """
    out_dir = Path(out_dir).resolve()
    class_index = {name: i for i, name in enumerate(snapshot.classes)}
    for entry in snapshot.entries:
        image = entry.image
        stem = f"{Path(image.path).stem}_{image.sha256[:12]}"
        image_dir = out_dir / "images" / entry.split
        label_dir = out_dir / "labels" / entry.split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        target = image_dir / f"{stem}{Path(image.path).suffix.lower()}"
        if not target.exists():
            try:
                if copy_images:
                    raise OSError("copy requested")
                os.link(image.path, target)
            except OSError:
                shutil.copyfile(image.path, target)
        lines = []
        for box in image.boxes:
            cx = (box.x1 + box.x2) / 2 / image.width
            cy = (box.y1 + box.y2) / 2 / image.height
            w = (box.x2 - box.x1) / image.width
            h = (box.y2 - box.y1) / image.height
            lines.append(f"{class_index[box.class_name]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (label_dir / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out_dir),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(snapshot.classes)),
        "snapshot": snapshot.id,
    }, sort_keys=False))
    return data_yaml

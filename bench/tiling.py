"""Tiling benchmark: recall of defects on large panels, tiled vs whole-frame vs supervision's InferenceSlicer.

Prints one JSON line. Panels are 4x4 mosaics of held-out NEU-DET images (the snapshot's val split, never
trained on) upscaled ``--scale`` x (default 2: 1600 x 1600, 2.6 MP), with their human-annotated boxes mapped
into panel pixels. The same detector (same package, engine and precision) runs three ways:

* ``tiled``: ``inspection.tiling.detect_tiled``, overlapping tiles at the model input size, one batch per panel;
* ``whole``: the panel letterboxed whole into the model input (what a station does without tiling);
* ``slicer``: ``supervision.InferenceSlicer`` (the peer) with the same slice size, overlap and batch, its own
  NMS merge, calling the same detector.

Recall at IoU >= 0.5 and the same class, at the package's confidence threshold, over all boxes and over small
ones (shorter side < ``--small-px`` panel pixels). Needs the dataset imported:
``qcline datasets import /work/shared/datasets/neu-det``.

Usage: python bench/tiling.py [--data-dir data] [--snapshot ID] [--model PKG] [--engine auto] [--scale 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inspection.boxes import box_iou  # noqa: E402
from inspection.detector import OnnxDetector  # noqa: E402
from inspection.tiling import detect_tiled  # noqa: E402
from inspection.types import Detections  # noqa: E402

GRID = 4


def panels(snapshot: Any, classes: tuple[str, ...], scale: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(panel, gt xyxy, gt class ids) per 16 val images, in file order."""
    entries = list(snapshot.split("val"))
    out = []
    for start in range(0, len(entries) - GRID * GRID + 1, GRID * GRID):
        cell = 200
        canvas = np.zeros((GRID * cell, GRID * cell, 3), np.uint8)
        boxes, labels = [], []
        for k, entry in enumerate(entries[start:start + GRID * GRID]):
            image: Any = cv2.imread(str(entry.image.path))
            h, w = image.shape[:2]
            sx, sy = cell / w, cell / h
            x0, y0 = (k % GRID) * cell, (k // GRID) * cell
            canvas[y0:y0 + cell, x0:x0 + cell] = cv2.resize(image, (cell, cell))
            for b in entry.image.boxes:
                boxes.append([b.box.x1 * sx + x0, b.box.y1 * sy + y0, b.box.x2 * sx + x0, b.box.y2 * sy + y0])
                labels.append(classes.index(b.class_name))
        size = int(GRID * cell * scale)
        panel = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR)
        out.append((panel, np.array(boxes, np.float64) * scale, np.array(labels, np.int64)))
    return out


def recall(found: list[Detections], truth: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
           small_px: float) -> tuple[float, float, int, int]:
    hits = small_hits = total = small_total = 0
    for dets, (_, gt, cls) in zip(found, truth, strict=True):
        short = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1])
        iou = box_iou(gt, dets.xyxy.astype(np.float64)) if len(dets) else np.zeros((len(gt), 0))
        same = cls[:, None] == dets.class_id[None, :]
        hit = ((iou >= 0.5) & same).any(axis=1) if len(dets) else np.zeros(len(gt), bool)
        hits += int(hit.sum())
        total += len(gt)
        small = short < small_px
        small_hits += int(hit[small].sum())
        small_total += int(small.sum())
    return hits / max(total, 1), small_hits / max(small_total, 1), total, small_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--snapshot", default=None, help="snapshot id (default: the model's training snapshot)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "neu-det-yolov8n")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--small-px", type=float, default=100.0)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    import supervision as sv

    from datasets.library import DatasetLibrary

    detector = OnnxDetector.from_package(args.model, engine=args.engine, precision=args.precision,
                                         max_batch=args.batch)
    detector.warmup()
    snapshot_id = str(args.snapshot or detector.metadata.dataset.get("snapshot", ""))
    try:
        snapshot = DatasetLibrary(args.data_dir / "datasets").get(snapshot_id)
    except Exception as exc:
        raise SystemExit(f"snapshot {snapshot_id} not in {args.data_dir}: qcline datasets import "
                         f"/work/shared/datasets/neu-det --data-dir {args.data_dir} ({exc})") from exc
    truth = panels(snapshot, detector.class_names, args.scale)
    tw, th = detector.input_size
    overlap_px = (int(tw * args.overlap), int(th * args.overlap))

    def slicer_callback(tiles: list[np.ndarray]) -> list[sv.Detections]:
        return [sv.Detections(xyxy=d.xyxy.astype(np.float32), confidence=d.confidence, class_id=d.class_id)
                for d in detector.detect(tiles)]

    slicer = sv.InferenceSlicer(callback=slicer_callback, slice_wh=(tw, th), overlap_wh=overlap_px,
                                iou_threshold=detector.metadata.thresholds.iou, batch_size=args.batch)

    def run_slicer(panel: np.ndarray) -> Detections:
        d = slicer(panel)
        if len(d) == 0:
            return Detections.empty(detector.class_names)
        return Detections(np.asarray(d.xyxy, np.float32), np.asarray(d.confidence, np.float32),
                          np.asarray(d.class_id, np.int64), detector.class_names)

    methods = {
        "tiled": lambda p: detect_tiled(detector, p, tw, th, overlap=args.overlap),
        "whole": lambda p: detector.detect([p])[0],
        "slicer": run_slicer,
    }
    line: dict[str, Any] = {}
    for name, method in methods.items():
        start = time.perf_counter()
        found = [method(panel) for panel, _, _ in truth]
        elapsed = time.perf_counter() - start
        r_all, r_small, total, small_total = recall(found, truth, args.small_px)
        line[f"{name}_recall"] = round(r_all, 4)
        line[f"{name}_recall_small"] = round(r_small, 4)
        line[f"{name}_panels_per_s"] = round(len(truth) / elapsed, 3)
    line.update({
        "tiled_vs_whole_recall_small": round(line["tiled_recall_small"] - line["whole_recall_small"], 4),
        "tiled_vs_slicer_speed": round(line["tiled_panels_per_s"] / line["slicer_panels_per_s"], 3),
        "panels": len(truth), "panel_px": int(GRID * 200 * args.scale), "boxes": total, "small_boxes": small_total,
        "small_px": args.small_px, "overlap": args.overlap, "engine": detector.engine_name,
        "precision": detector.precision, "supervision": sv.__version__})
    print(json.dumps(line))


if __name__ == "__main__":
    main()

"""Reproduce the default model: NEU-DET (Pascal VOC) -> snapshot -> YOLO dataset -> training from the
yaml -> ONNX -> package evaluated through the runtime. See ``models/neu-det-yolov8n/MODEL_CARD.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets.export import export_yolo
from datasets.formats.voc import import_voc
from datasets.snapshot import build_snapshot
from inspection.model_package import ModelPackage, Thresholds
from training.package import build_package
from training.train import train_detector

log = logging.getLogger(__name__)


def build_default_model(data: Path, out_dir: Path, *, work_dir: Path, device: str = "cpu", imgsz: int = 416,
                        epochs: int = 88, batch: int = 32, threads: int | None = None,
                        workers: int | None = None) -> ModelPackage:
    """``yolov8n.yaml`` from scratch (no pretrained weights exist offline), evaluated through the runtime."""
    result = import_voc(data)
    for issue in result.skipped:
        log.warning("skipped %s: %s", issue.path, issue.reason)
    snapshot = build_snapshot(result, source=str(data))
    snapshot.save(work_dir / "snapshots")
    data_yaml = export_yolo(snapshot, work_dir / "yolo")
    run = train_detector(data_yaml, model="yolov8n.yaml", epochs=epochs, imgsz=imgsz, device=device, batch=batch,
                         project=work_dir / "runs", name="train", threads=threads, workers=workers, cache="ram",
                         plots=False)
    training = {"model": "yolov8n.yaml", "epochs": epochs, **{k: str(v) for k, v in run.args.items()},
                "checkpoint_selection": "ultralytics best.pt by fitness on the val split"}
    return build_package(run.best_weights, snapshot=snapshot, out_dir=out_dir, name=f"neu-det-yolov8n-{imgsz}",
                         imgsz=imgsz, training=training, thresholds=Thresholds(confidence=0.25, iou=0.45),
                         extra_files={"results.csv": run.run_dir / "results.csv"}, keep_weights=False)

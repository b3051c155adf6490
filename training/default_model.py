"""Reproduce the default model: NEU-DET (Pascal VOC) -> snapshot -> YOLO dataset -> two training
stages -> ONNX -> package evaluated through the runtime. See ``models/neu-det-yolov8n/MODEL_CARD.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets.export import export_yolo
from datasets.formats.voc import import_voc
from datasets.snapshot import build_snapshot
from models.package import ModelPackage, Thresholds
from training.package import build_package
from training.train import train_detector

log = logging.getLogger(__name__)


def build_default_model(data: Path, out_dir: Path, *, work_dir: Path, device: str = "cpu", imgsz: int = 416,
                        epochs: int = 85, finetune_epochs: int = 88, batch: int = 32, threads: int | None = None,
                        workers: int | None = None) -> ModelPackage:
    """Stage 1 trains ``yolov8n.yaml`` from scratch; stage 2 restarts the schedule from stage 1's best."""
    result = import_voc(data)
    for issue in result.skipped:
        log.warning("skipped %s: %s", issue.path, issue.reason)
    snapshot = build_snapshot(result, source=str(data))
    snapshot.save(work_dir / "snapshots")
    data_yaml = export_yolo(snapshot, work_dir / "yolo")
    common = {"imgsz": imgsz, "device": device, "batch": batch, "project": work_dir / "runs", "threads": threads,
              "workers": workers, "cache": "ram", "plots": False}
    stage1 = train_detector(data_yaml, model="yolov8n.yaml", epochs=epochs, name="stage1", **common)  # type: ignore[arg-type]
    stage2 = train_detector(data_yaml, model=str(stage1.best_weights), epochs=finetune_epochs, name="stage2",
                            **common)  # type: ignore[arg-type]
    training = {"stages": [
        {"model": "yolov8n.yaml", "epochs": epochs, **{k: str(v) for k, v in stage1.args.items()}},
        {"model": "stage-1 best.pt", "epochs": finetune_epochs, **{k: str(v) for k, v in stage2.args.items()}},
    ], "checkpoint_selection": "ultralytics best.pt by fitness on the val split"}
    return build_package(stage2.best_weights, snapshot=snapshot, out_dir=out_dir, name=f"neu-det-yolov8n-{imgsz}",
                         imgsz=imgsz, training=training, thresholds=Thresholds(confidence=0.25, iou=0.45),
                         extra_files={"results_stage1.csv": stage1.run_dir / "results.csv",
                                      "results_stage2.csv": stage2.run_dir / "results.csv"},
                         keep_weights=False)

"""Turn trained weights into a model package: ONNX export, evaluation through the runtime, metadata."""

from __future__ import annotations

import json
import logging
import platform
import shutil
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from datasets.snapshot import Snapshot
from inspection.detector import OnnxDetector
from inspection.model_package import ModelMetadata, ModelPackage, Thresholds, write_package
from models.evaluation import evaluate_package
from models.metrics import DetectionMetrics
from training.export import export_onnx

log = logging.getLogger(__name__)


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("ultralytics-opencv-headless", "ultralytics", "torch", "onnx", "onnxruntime",
                 "opencv-python-headless", "numpy"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def record_runtime_metrics(package_dir: Path, snapshot: Snapshot, *, engine: str = "auto",
                           precision: str = "auto") -> DetectionMetrics:
    """Evaluate a written package on the snapshot's val split through the stations' own runtime and store the
    figures in its ``metadata.json`` (the sha256 covers ``model.onnx`` only, so this leaves it valid)."""
    detector = OnnxDetector.from_package(package_dir, engine=engine, precision=precision)
    metrics = evaluate_package(detector, snapshot, split="val")
    meta_path = Path(package_dir) / "metadata.json"
    data = json.loads(meta_path.read_text())
    data["metrics"] = {**metrics.to_json(), "split": "val", "snapshot": snapshot.id,
                       "engine": detector.engine_name, "engine_precision": detector.precision,
                       "evaluated_with": f"qcline runtime ({detector.engine_name} {detector.precision}, package "
                                         "thresholds, conf 0.001)"}
    meta_path.write_text(json.dumps(data, indent=2) + "\n")
    return metrics


def build_package(weights: Path, *, snapshot: Snapshot, out_dir: Path, name: str, imgsz: int,
                  training: dict[str, Any], thresholds: Thresholds | None = None,
                  extra_files: dict[str, Path] | None = None, keep_weights: bool = True) -> ModelPackage:
    """Export ``weights`` to ONNX, evaluate it on the snapshot's val split with the stations' own
    runtime, and write ``model.onnx`` + ``metadata.json`` (with the ``.pt`` kept beside for fine-tuning).
    """
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    onnx_path = export_onnx(weights, imgsz=imgsz, out_dir=staging)
    shutil.rmtree(staging / ".ultralytics", ignore_errors=True)
    meta = ModelMetadata(
        name=name, classes=snapshot.classes, input_width=imgsz, input_height=imgsz, sha256="0" * 64,
        thresholds=thresholds or Thresholds(), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset={"snapshot": snapshot.id, "source": snapshot.source,
                 "images": {"train": len(snapshot.split("train")), "val": len(snapshot.split("val"))}},
        training={**training, "software": software_versions()},
    )
    package = write_package(staging, onnx_path, meta)
    metrics = record_runtime_metrics(package.path, snapshot)
    if keep_weights:  # for fine-tuning later; the committed default package leaves it out to stay small
        shutil.copyfile(weights, staging / "weights.pt")
    for target_name, source in (extra_files or {}).items():
        shutil.copyfile(source, staging / target_name)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.replace(out_dir)
    log.info("packaged %s: mAP50 %.3f mAP50-95 %.3f", out_dir, metrics.map50, metrics.map50_95)
    return ModelPackage.load(out_dir)

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


SELECTION_ROLE = "used for selection (ultralytics keeps best.pt by fitness on val): optimistic, not the accuracy"
ACCURACY_ROLE = "accuracy: the test split, never used for any choice"
VAL_ONLY_ROLE = ("the val split, also used for selection (the snapshot has no test split): optimistic, not an "
                 "unbiased accuracy")


def record_runtime_metrics(package_dir: Path, snapshot: Snapshot, *, engine: str = "auto",
                           precision: str = "auto") -> DetectionMetrics:
    """Evaluate a written package through the stations' own runtime and store the figures in its
    ``metadata.json`` (the sha256 covers ``model.onnx`` only, so this leaves it valid); returns the figures
    stored as ``metrics``.

    With a test split, ``metrics`` are the test figures (the model's accuracy) and ``metrics.selection``
    the val figures, marked as what chose the epoch. Without one, ``metrics`` are the val figures, marked
    as optimistic. ``metrics`` is what the registry shows for a registered package.
    """
    detector = OnnxDetector.from_package(package_dir, engine=engine, precision=precision)
    tags = {"snapshot": snapshot.id, "engine": detector.engine_name, "engine_precision": detector.precision,
            "evaluated_with": f"qcline runtime ({detector.engine_name} {detector.precision}, package "
                              "thresholds, conf 0.001)"}
    val = evaluate_package(detector, snapshot, split="val")
    if snapshot.has_test:
        metrics = evaluate_package(detector, snapshot, split="test")
        recorded = {**metrics.to_json(), "split": "test", "role": ACCURACY_ROLE, **tags,
                    "selection": {**val.to_json(), "split": "val", "role": SELECTION_ROLE}}
    else:
        metrics = val
        recorded = {**val.to_json(), "split": "val", "role": VAL_ONLY_ROLE, **tags}
    meta_path = Path(package_dir) / "metadata.json"
    data = json.loads(meta_path.read_text())
    data["metrics"] = recorded
    meta_path.write_text(json.dumps(data, indent=2) + "\n")
    return metrics


def build_package(weights: Path, *, snapshot: Snapshot, out_dir: Path, name: str, imgsz: int,
                  training: dict[str, Any], thresholds: Thresholds | None = None,
                  extra_files: dict[str, Path] | None = None, keep_weights: bool = True) -> ModelPackage:
    """Export ``weights`` to ONNX, evaluate it with the stations' own runtime (on test, and on val as the
    selection split, see ``record_runtime_metrics``), and write ``model.onnx`` + ``metadata.json`` (with the
    ``.pt`` kept beside for fine-tuning).
    """
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    onnx_path = export_onnx(weights, imgsz=imgsz, out_dir=staging)
    shutil.rmtree(staging / ".ultralytics", ignore_errors=True)
    meta = ModelMetadata(
        name=name, classes=snapshot.classes, input_width=imgsz, input_height=imgsz, sha256="0" * 64,
        thresholds=thresholds or Thresholds(), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dataset={"snapshot": snapshot.id, "source": snapshot.source, "images": dict(snapshot.split_counts()),
                 **({"split_rule": snapshot.split_rule.to_json()} if snapshot.split_rule else {})},
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
    log.info("packaged %s: %s mAP50 %.3f mAP50-95 %.3f", out_dir, "test" if snapshot.has_test else "val",
             metrics.map50, metrics.map50_95)
    return ModelPackage.load(out_dir)

"""Evaluate a model package on a dataset snapshot through the stations' own runtime (not ultralytics).

No torch here: training uses it for the numbers it writes into a package, the registry's promotion gate
(through the evaluator the composition root gives the engineering service) for holdout metrics."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from datasets.snapshot import Snapshot, SnapshotEntry, Split
from inspection.detector import OnnxDetector
from inspection.errors import DatasetError, ModelPackageError
from models.metrics import DetectionMetrics, ImageEval, evaluate_detections
from models.registry import DetectionMetricsJSON, RegisteredModel

EVAL_CONFIDENCE = 0.001
"""Score floor while evaluating: AP integrates the whole PR curve, as ``yolo val`` does (conf=0.001)."""


def evaluation_classes(detector: OnnxDetector, snapshot: Snapshot) -> tuple[str, ...]:
    """The model's classes, then any class only the snapshot labels: a model never taught a class is
    scored on it (AP 0) instead of the class silently vanishing from the report."""
    return detector.class_names + tuple(c for c in snapshot.classes if c not in detector.class_names)


def training_overlap(trained_on: Snapshot, snapshot: Snapshot, split: Split) -> dict[str, int]:
    """Where the images of ``snapshot``'s ``split`` sat in the snapshot a model was trained on: counts per
    split there (``train``: the model learned from them; ``val``: they chose its epoch) and ``absent``.
    A figure on images the model trained on is not an accuracy; this says how many there were."""
    split_of = {e.image.sha256: e.split for e in trained_on.entries}
    counts = {"train": 0, "val": 0, "test": 0, "absent": 0}
    for entry in snapshot.split(split):
        counts[split_of.get(entry.image.sha256, "absent")] += 1
    return counts


def predict_snapshot(detector: OnnxDetector, snapshot: Snapshot, *, split: Split = "val",
                     progress: Callable[[int], None] | None = None,
                     exclude: Collection[str] = ()) -> list[ImageEval]:
    """Run the station runtime over a split; predictions and ground truth per image, in the ids of
    ``evaluation_classes``. Only that split's images are read; ``exclude`` (image sha256s) leaves some
    of them out (e.g. those a model trained on, see ``training_overlap``)."""
    entries = tuple(e for e in snapshot.split(split) if e.image.sha256 not in exclude)
    if not entries:
        left = " outside the excluded images" if exclude else ""
        raise DatasetError(f"snapshot {snapshot.id[:12]} has no {split!r} images{left}")
    return predict_entries(detector, entries, evaluation_classes(detector, snapshot), progress=progress,
                           source=f"snapshot {snapshot.id[:12]}")


def predict_entries(detector: OnnxDetector, entries: Sequence[SnapshotEntry], classes: Sequence[str], *,
                    progress: Callable[[int], None] | None = None, source: str = "the snapshot") -> list[ImageEval]:
    """``predict_snapshot`` for given entries, class ids in ``classes`` (an accuracy search scores subsets)."""
    model_index = {name: i for i, name in enumerate(classes)}
    evals: list[ImageEval] = []
    batch = detector.max_batch
    for start in range(0, len(entries), batch):
        chunk = entries[start:start + batch]
        images = []
        for entry in chunk:
            image = cast(npt.NDArray[np.uint8] | None, cv2.imread(str(entry.image.path), cv2.IMREAD_COLOR))
            if image is None:
                raise DatasetError(f"cannot read {entry.image.path} ({source})")
            images.append(image)
        for entry, dets in zip(chunk, detector.detect(images, confidence=EVAL_CONFIDENCE), strict=True):
            boxes = entry.image.boxes
            evals.append(ImageEval(
                pred_xyxy=dets.xyxy.astype(np.float64), pred_conf=dets.confidence.astype(np.float64),
                pred_cls=dets.class_id.astype(np.int64),
                gt_xyxy=np.array([tuple(b.box) for b in boxes], np.float64).reshape(-1, 4),
                gt_cls=np.array([model_index[b.class_name] for b in boxes], np.int64)))
        if progress:
            progress(len(chunk))
    return evals


def evaluate_package(detector: OnnxDetector, snapshot: Snapshot, *, split: Split = "val",
                     progress: Callable[[int], None] | None = None,
                     exclude: Collection[str] = ()) -> DetectionMetrics:
    evals = predict_snapshot(detector, snapshot, split=split, progress=progress, exclude=exclude)
    return evaluate_detections(evals, evaluation_classes(detector, snapshot), detector.metadata.thresholds.confidence)


def evaluate_for_gate(registry_model: RegisteredModel, snapshot: Snapshot, *, split: Split = "val",
                      threads: int | None = None, engine: str = "auto", precision: str = "auto",
                      cache_dir: Path | None = None) -> DetectionMetricsJSON:
    """Holdout metrics of a registered model through the station runtime, tagged with the snapshot.

    Loading through ``OnnxDetector.from_package`` re-verifies the sha256 of the registry copy, so the
    numbers belong to exactly the bytes a station would run, on the engine and precision the stations run
    (pass the station settings' ``engine`` / ``precision``); ``snapshot_id`` lets the gate refuse numbers
    measured on anything but the frozen holdout.
    """
    detector = OnnxDetector.from_package(registry_model.path, threads=threads, engine=engine, precision=precision,
                                         cache_dir=cache_dir)
    if detector.model_sha256 != registry_model.sha256:
        raise ModelPackageError(f"registry copy {registry_model.path} holds {detector.model_sha256[:12]}, "
                                f"not model {registry_model.id} ({registry_model.sha256[:12]})")
    metrics = evaluate_package(detector, snapshot, split=split).to_json()
    return {**metrics, "snapshot_id": snapshot.id, "split": split, "model_sha256": registry_model.sha256,
            "engine": detector.engine_name, "engine_precision": detector.precision}

"""Our detector against ultralytics' own ``YOLO(model.onnx).predict`` on the same ONNX and images.

Needs the ``[train]`` extra (ultralytics); runs on the committed default model with generated images,
plus NEU-DET images when ``../shared/datasets/neu-det`` is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.boxes import box_iou
from inspection.detector import OnnxDetector
from inspection.settings import DEFAULT_MODEL_DIR, REPO_ROOT

NEU_IMAGES = REPO_ROOT.parent / "shared" / "datasets" / "neu-det" / "images"


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    images = []
    for i in range(6):  # steel-like textures: gray noise with dark streaks and blotches
        image = rng.normal(128, 20, (200, 200)).clip(0, 255).astype(np.uint8)
        for _ in range(4 + i):
            x, y = rng.integers(0, 200, 2)
            cv2.line(image, (int(x), int(y)), (int(x) + 60, int(y) + int(rng.integers(-10, 10))), 40, 2)
            cv2.circle(image, (int(rng.integers(0, 200)), int(rng.integers(0, 200))), 6, 70, -1)
        images.append(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    images.append(cv2.resize(images[0], (320, 180)))  # non-square: exercises letterbox padding
    if NEU_IMAGES.is_dir():
        for path in sorted(NEU_IMAGES.glob("*.jpg"))[::120]:
            images.append(cv2.imread(str(path)))
    return images


def test_matches_ultralytics_predict(tmp_path: Path) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    ultralytics = pytest.importorskip("ultralytics", reason="parity with ultralytics needs the [train] extra")
    YOLO = ultralytics.YOLO  # noqa: N806

    # the same engine as YOLO(model.onnx): this proves pre/post-processing; tests/inspection/test_engines.py
    # proves the other engines agree with this one
    detector = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine="onnxruntime")
    conf, iou = 0.05, detector.metadata.thresholds.iou
    reference = YOLO(str(DEFAULT_MODEL_DIR / "model.onnx"), task="detect")
    images = _images()
    ours = detector.detect(images, confidence=conf)
    total = 0
    for image, mine in zip(images, ours, strict=True):
        [theirs] = reference.predict(image, imgsz=detector.metadata.input_width, conf=conf, iou=iou,
                                     verbose=False, device="cpu", rect=False)
        # rect=False: the station letterboxes to the package's fixed square input, as exported
        boxes = theirs.boxes
        their_xyxy = boxes.xyxy.numpy().astype(np.float64)
        their_cls = boxes.cls.numpy().astype(np.int64)
        assert len(mine) == len(their_xyxy), "different number of detections"
        if not len(mine):
            continue
        total += len(mine)
        iou_matrix = box_iou(mine.xyxy.astype(np.float64), their_xyxy)
        best = iou_matrix.argmax(axis=1)
        assert (iou_matrix.max(axis=1) >= 0.99).all()
        np.testing.assert_array_equal(mine.class_id, their_cls[best])
        np.testing.assert_allclose(mine.confidence, boxes.conf.numpy()[best], atol=1e-3)
    assert total > 0, "the comparison saw no detections at all; it would prove nothing"

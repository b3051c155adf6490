"""Test fixtures built in code: a tiny ONNX "detector" whose boxes the test chooses, images, profiles.

The tiny model outputs a fixed set of YOLOv8-style candidates ``[B, 4 + nc, N]``; each candidate's class
scores are multiplied by ``2 x mean brightness`` of the input, so a white frame shows the defects and a
black frame shows none. That makes end-to-end verdicts predictable without training anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inspection.model_package import ModelMetadata, Thresholds, write_package


@dataclass(frozen=True)
class Candidate:
    """One anchor's prediction in letterboxed input pixels (cx, cy, w, h) and its score at full brightness."""

    cx: float
    cy: float
    w: float
    h: float
    class_id: int
    score: float


def tiny_onnx(path: Path, candidates: Sequence[Candidate], n_classes: int, *, opset: int = 17,
              static_batch: bool = False) -> Path:
    n = max(1, len(candidates))
    boxes = np.zeros((1, 4, n), np.float32)
    scores = np.zeros((1, n_classes, n), np.float32)
    for i, c in enumerate(candidates):
        boxes[0, :, i] = (c.cx, c.cy, c.w, c.h)
        scores[0, c.class_id, i] = c.score / 2.0  # x 2 x mean brightness (1.0 for white) at run time
    batch_dim: int | str = 1 if static_batch else "batch"
    graph = helper.make_graph(
        nodes=[
            helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "shape_b11"], ["mean_b11"]),
            helper.make_node("Mul", ["mean_b11", "two"], ["gain"]),
            helper.make_node("Mul", ["scores", "gain"], ["scaled_scores"]),
            helper.make_node("Mul", ["mean_b11", "zero"], ["zero_b11"]),
            helper.make_node("Add", ["boxes", "zero_b11"], ["boxes_b"]),
            helper.make_node("Concat", ["boxes_b", "scaled_scores"], ["output0"], axis=1),
        ],
        name="tiny_yolo",
        inputs=[helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch_dim, 3, "h", "w"])],
        outputs=[helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch_dim, 4 + n_classes, n])],
        initializer=[
            numpy_helper.from_array(boxes, "boxes"),
            numpy_helper.from_array(scores, "scores"),
            numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape_b11"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_package(folder: Path, candidates: Sequence[Candidate], classes: Sequence[str] = ("scratch", "dent"),
                 *, size: int = 64, confidence: float = 0.25, static_batch: bool = False) -> Path:
    onnx_path = tiny_onnx(folder.parent / f"{folder.name}.onnx", candidates, len(classes),
                          static_batch=static_batch)
    meta = ModelMetadata(name=folder.name, classes=tuple(classes), input_width=size, input_height=size,
                         sha256="0" * 64, thresholds=Thresholds(confidence=confidence, iou=0.45))
    write_package(folder, onnx_path, meta)
    return folder


def solid_image(value: int, width: int = 64, height: int = 64) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path

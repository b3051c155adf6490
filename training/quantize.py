"""int8 variant of a package: NNCF post-training quantization of its ONNX, calibrated on training images.

The result is still a package (``model.onnx`` with QuantizeLinear / DequantizeLinear pairs + metadata, its
own sha256), evaluated, gated and registered like any model, and judged by mAP through the runtime on the
same split, never by speed alone. Choices, and why:

* NNCF's ONNX backend, ``MIXED`` preset: weights int8 symmetric per channel, activations uint8 asymmetric (the
  U8S8 layout x86 int8 kernels want; the earlier onnxruntime static QDQ of Convs only was not faster).
* The YOLO head's box arithmetic stays float, as ultralytics' own OpenVINO int8 export keeps it: the DFL and
  every Add / Sub / Mul / Div of the last module, and all Sigmoids. Box coordinates (up to the input size) and
  class scores (0..1) meet in one Concat; one int8 scale for both would erase the scores.
* Calibration images come from the snapshot's train split, letterboxed exactly as a station feeds them.

An int8 variant is only kept when it is worth having: faster than its float model on the engine that runs it
(onnxruntime: OpenVINO 2026.4 misreads QDQ ONNX, see ``inspection.engines``) and within ``MAX_MAP_DROP`` of
its mAP. Otherwise ``QuantizationRefusedError`` says what was measured (``keep=True`` keeps it anyway, for
experiments). Measured here (README, "int8"): the QDQ graph ran ~2x *slower* than fp32 on onnxruntime.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from datasets.snapshot import Snapshot
from inspection.detector import OnnxDetector, pre_process
from inspection.engines import to_network_input
from inspection.errors import TrainingError
from inspection.model_package import ModelPackage, write_package
from models.evaluation import evaluate_package
from training.package import record_runtime_metrics

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300
"""NNCF's default subset size: enough for stable activation ranges on a six-class steel set."""
MAX_MAP_DROP = 0.01
"""How much mAP@0.5 or mAP@0.5:0.95 the int8 variant may lose against its float model."""


class QuantizationRefusedError(TrainingError):
    """The int8 variant was made and measured, and is not worth keeping (slower, or less accurate)."""


def forward_fps(package_dir: Path, images: list[npt.NDArray[np.uint8]], *, engine: str = "onnxruntime",
                rounds: int = 5) -> float:
    """Frames/s of the bare forward pass on one batch, best of ``rounds`` (best-of damps a shared machine)."""
    detector = OnnxDetector.from_package(package_dir, engine=engine, max_batch=len(images))
    batch, _ = detector.pre_process(images)
    detector.forward(batch)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        detector.forward(batch)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def calibration_paths(snapshot: Snapshot, count: int) -> list[Path]:
    """A fixed (seeded) sample of the train split: the same calibration set for the same snapshot."""
    entries = list(snapshot.split("train")) or list(snapshot.entries)
    random.Random(0).shuffle(entries)
    return [e.image.path for e in entries[:count]]


def _calibration_items(package: ModelPackage, paths: list[Path], input_name: str) -> Iterator[dict[str, Any]]:
    meta = package.metadata
    for path in paths:
        image = cast(npt.NDArray[np.uint8] | None, cv2.imread(str(path), cv2.IMREAD_COLOR))
        if image is None:
            log.warning("calibration image %s unreadable: skipped", path)
            continue
        batch, _ = pre_process([image], meta.input_width, meta.input_height, meta.pad_value)
        yield {input_name: to_network_input(batch)}


def head_ignored_scope(model: Any) -> Any:
    """What stays float: the last module's (the detection head's) DFL and box arithmetic, and every Sigmoid.

    The head is found from the graph, not from a name in code: the module that produces the model's output
    (``/model.22/...`` in an ultralytics export). Without such a prefix only the Sigmoids are kept float.
    """
    import nncf  # the [train] extra (quantize_package checked it is there)

    output = model.graph.output[0].name
    producer = next((n.name for n in model.graph.node if output in n.output), "")
    match = re.match(r"^(/model\.\d+)/", producer)
    if not match:
        log.warning("no ultralytics head prefix in %r: only Sigmoids are kept in float", producer)
        return nncf.IgnoredScope(types=["Sigmoid"], validate=False)
    head = re.escape(match.group(1))
    return nncf.IgnoredScope(
        patterns=[f"{head}/.*dfl.*", f"{head}/(Add|Sub|Mul|Div)[^/]*$", f"{head}/Concat[^/]*$"],
        types=["Sigmoid"], validate=False)


def quantize_package(package: ModelPackage, snapshot: Snapshot, *, out_dir: Path,
                     calibration_images: int = CALIBRATION_IMAGES, keep: bool = False) -> ModelPackage:
    """Write the int8 variant of ``package`` to ``out_dir`` (evaluated on the snapshot's val split), if it is
    faster than ``package`` and as accurate (or ``keep``)."""
    try:  # the [train] extra; this module is imported by training.run, which CLI commands import without it
        import nncf
        import onnx
    except ImportError as exc:
        raise TrainingError("int8 quantization needs NNCF and onnx: pip install 'qcline[train]'") from exc
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model = onnx.load_model_from_string(package.model_path.read_bytes())
    input_name = model.graph.input[0].name
    paths = calibration_paths(snapshot, calibration_images)
    if not paths:
        raise TrainingError(f"snapshot {snapshot.id[:12]} has no images to calibrate on")
    dataset = nncf.Dataset(list(_calibration_items(package, paths, input_name)))
    try:
        quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(paths),
                                  ignored_scope=head_ignored_scope(model))
    except Exception as exc:  # NNCF raises its own (and onnxruntime's) untyped errors
        raise TrainingError(f"int8 quantization of {package.path} failed: {exc}") from exc
    quantized_path = staging / "int8.onnx"
    onnx.save_model(quantized, str(quantized_path))
    meta = package.metadata
    int8_meta = type(meta)(**{**meta.__dict__, "name": f"{meta.name}-int8", "metrics": {},
                              "training": {**meta.training, "quantized_from": meta.sha256,
                                           "quantization": f"NNCF {nncf.__version__} post-training, ONNX QDQ, "
                                                           "MIXED preset (u8 activations, s8 per-channel weights), "
                                                           f"head box arithmetic and Sigmoids in float, "
                                                           f"{len(paths)} train images"}})
    result = write_package(staging / "package", quantized_path, int8_meta)
    record_runtime_metrics(result.path, snapshot)
    # Keep-or-refuse is a choice: it is made on val, never on test (test figures are only recorded).
    metrics = evaluate_package(OnnxDetector.from_package(result.path), snapshot, split="val")
    recorded = meta.metrics.get("selection") if meta.metrics.get("split") == "test" else meta.metrics
    float_metrics = recorded if isinstance(recorded, dict) and "map50" in recorded \
        and meta.metrics.get("snapshot") in (None, snapshot.id) else evaluate_package(
        OnnxDetector.from_package(package.path), snapshot, split="val").to_json()
    sample = [cast(npt.NDArray[np.uint8], cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in paths[:8]]
    float_fps, int8_fps = forward_fps(package.path, sample), forward_fps(result.path, sample)
    float_fps = max(float_fps, forward_fps(package.path, sample))  # interleaved: load on the box hits both
    int8_fps = max(int8_fps, forward_fps(result.path, sample))
    check = {"engine": "onnxruntime", "float_fps": round(float_fps, 2), "int8_fps": round(int8_fps, 2),
             "float_map50": float_metrics["map50"], "int8_map50": metrics.map50,
             "float_map50_95": float_metrics["map50_95"], "int8_map50_95": metrics.map50_95}
    log.info("int8 check: %s", check)
    worse = [f"{int8_fps:.1f} frames/s vs {float_fps:.1f} float on onnxruntime"] if int8_fps <= float_fps else []
    for key in ("map50", "map50_95"):
        if float_metrics[key] - getattr(metrics, key) > MAX_MAP_DROP:
            worse.append(f"{key} {getattr(metrics, key):.3f} vs {float_metrics[key]:.3f} float")
    if worse and not keep:
        shutil.rmtree(staging, ignore_errors=True)
        raise QuantizationRefusedError(f"int8 variant of {meta.name} not kept: " + "; ".join(worse))
    meta_path = result.path / "metadata.json"
    data = json.loads(meta_path.read_text())
    data["training"]["quantization_check"] = check
    meta_path.write_text(json.dumps(data, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (staging / "package").replace(out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("int8 package %s: mAP50 %.3f (float %.3f)", out_dir, metrics.map50,
             meta.metrics.get("map50", float("nan")))
    return ModelPackage.load(out_dir)

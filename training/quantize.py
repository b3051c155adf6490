"""int8 variant of a package: NNCF post-training quantization of its ONNX, calibrated on training images.

The result is still a package (``model.onnx`` with QuantizeLinear / DequantizeLinear pairs + metadata, its
own sha256), evaluated, gated and registered like any model, and judged by mAP through the runtime on the
same split, never by speed alone. Choices, and why:

* NNCF's ONNX backend, ``MIXED`` preset: weights int8 symmetric per channel, activations asymmetric. NNCF writes
  those activations *signed* (int8 with a zero point); ``unsigned_activations`` rewrites every such pair to
  uint8 with the zero point moved by 128, which is the same function exactly (same scale, same grid, same
  range) in the U8S8 layout x86 int8 kernels want, and the one OpenVINO reads correctly: OpenVINO 2026.4 misreads
  the signed form (measured: activations wrong from the first signed pair on, mAP@0.5 0.15).
* The YOLO head's box arithmetic stays float, as ultralytics' own OpenVINO int8 export keeps it: the DFL and
  every Add / Sub / Mul / Div of the last module, and all Sigmoids. Box coordinates (up to the input size) and
  class scores (0..1) meet in one Concat; one int8 scale for both would erase the scores.
* Calibration images come from the snapshot's train split, letterboxed exactly as a station feeds them.

An int8 variant is only kept when it is worth having: its bare forward faster than the float model's, each on
the engine a station would run it on (``auto``: OpenVINO int8 against OpenVINO bf16 or fp32 where OpenVINO is
installed), and within ``MAX_MAP_DROP`` of the float model's mAP on val, both evaluated on those engines.
Otherwise ``QuantizationRefusedError`` says what was measured (``keep=True`` keeps it anyway, for
experiments). On onnxruntime the QDQ graph runs ~1.6x *slower* than fp32 (README, "int8").
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from datasets.snapshot import Snapshot, SnapshotEntry
from inspection.detector import OnnxDetector, pre_process
from inspection.engines import decline_openvino_telemetry, open_engine, to_network_input
from inspection.errors import TrainingError
from inspection.model_package import ModelMetadata, ModelPackage, write_package
from models.evaluation import evaluate_package, evaluation_classes, predict_entries
from models.metrics import evaluate_detections
from training.package import record_runtime_metrics

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300
"""NNCF's default subset size: enough for stable activation ranges on a six-class steel set."""
MAX_MAP_DROP = 0.01
"""How much mAP@0.5 or mAP@0.5:0.95 the int8 variant may lose against its float model."""
RANKING_IMAGES = 100
"""Val images (those int8 hurts most) on which NNCF's accuracy search ranks the ~60 quantizer groups, one mAP
per group: on 2 cores ~2 s a group with 100, so the ranking takes a few
minutes; every candidate it then keeps or reverts is judged by mAP on the whole val split."""


class QuantizationRefusedError(TrainingError):
    """The int8 variant was made and measured, and is not worth keeping (slower, or less accurate)."""


def forward_fps(package_dir: Path, images: list[npt.NDArray[np.uint8]], *, engine: str = "auto",
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


def _network_input(package: ModelPackage, path: Path, input_name: str) -> dict[str, Any] | None:
    """One image as the network takes it, letterboxed exactly as a station feeds it; ``None`` if unreadable."""
    meta = package.metadata
    image = cast(npt.NDArray[np.uint8] | None, cv2.imread(str(path), cv2.IMREAD_COLOR))
    if image is None:
        return None
    batch, _ = pre_process([image], meta.input_width, meta.input_height, meta.pad_value)
    return {input_name: to_network_input(batch)}


def _calibration_items(package: ModelPackage, paths: list[Path], input_name: str) -> Iterator[dict[str, Any]]:
    for path in paths:
        item = _network_input(package, path, input_name)
        if item is None:
            log.warning("calibration image %s unreadable: skipped", path)
            continue
        yield item


class Validator:
    """NNCF's ``validation_fn`` for the accuracy search: mAP@0.5:0.95 of one candidate graph on val images.

    Each candidate runs through the station runtime on the engine a station would give it (``auto``: the float
    model on OpenVINO bf16 / fp32, an int8 candidate, made unsigned first, on OpenVINO int8), so the search
    controls the accuracy the line will see. The second value, each image's own mAP, lets NNCF pick the images
    int8 hurts most; it ranks quantizer groups by the mAP on those (``RANKING_IMAGES``), one call per group.
    """

    def __init__(self, float_meta: ModelMetadata, int8_meta: ModelMetadata, classes: tuple[str, ...]) -> None:
        self._float_meta, self._int8_meta, self._classes = float_meta, int8_meta, classes
        self.calls = 0

    def __call__(self, model: Any, items: Iterable[SnapshotEntry]) -> tuple[float, list[float]]:
        import onnx  # the [train] extra (quantize_package checked it is there)

        entries = list(items)
        candidate = onnx.ModelProto()
        candidate.CopyFrom(model)  # NNCF goes on with its own graph: the unsigned rewrite is the copy's
        quantized = any(node.op_type == "QuantizeLinear" for node in candidate.graph.node)
        if quantized:
            unsigned_activations(candidate)
        meta = self._int8_meta if quantized else self._float_meta
        engine = open_engine(candidate.SerializeToString(), meta, max_batch=8, source="an int8 candidate")
        detector = OnnxDetector(engine, meta, max_batch=8)
        evals = predict_entries(detector, entries, self._classes, source="int8 validation")
        self.calls += 1
        confidence = meta.thresholds.confidence
        metric = evaluate_detections(evals, self._classes, confidence).map50_95
        per_image = [evaluate_detections([e], self._classes, confidence).map50_95 for e in evals]
        return float(metric), per_image


def unsigned_activations(model: Any) -> int:
    """Rewrite signed asymmetric activation quantizers to unsigned ones, in place; how many were rewritten.

    A ``QuantizeLinear`` / ``DequantizeLinear`` pair with an int8 zero point ``z`` maps ``x`` to
    ``clamp(round(x / s) + z, -128, 127)``; with the uint8 zero point ``z + 128`` and the range ``0..255`` every
    level is the same number shifted by 128, so the pair computes exactly the same function. Only per-tensor
    zero points of activations are moved (weights stay signed symmetric: U8S8), and the declared type of the
    quantized tensor changes with them.
    """
    import onnx  # the [train] extra (quantize_package checked it is there)
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    zero_points = {n.input[2] for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[0] not in initializers
                   and n.input[2] in initializers
                   and initializers[n.input[2]].data_type == onnx.TensorProto.INT8
                   and not list(initializers[n.input[2]].dims)}
    for name in zero_points:
        signed = numpy_helper.to_array(initializers[name]).astype(np.int16)
        initializers[name].CopyFrom(numpy_helper.from_array((signed + 128).astype(np.uint8), name))
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in zero_points}
    for info in model.graph.value_info:
        if info.name in quantized:
            info.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return len(zero_points)


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


def _worst_class_drop(float_metrics: Mapping[str, Any], int8_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The class whose AP@0.5 and the one whose AP@0.5:0.95 int8 lowers most, and by how much."""
    worst: dict[str, Any] = {}
    before, after = float_metrics.get("per_class", {}), int8_metrics.get("per_class", {})
    for key in ("ap50", "ap50_95"):
        drops = {name: before[name][key] - after[name][key] for name in before if name in after}
        if drops:
            name = max(drops, key=lambda n: drops[n])
            worst[key] = {"class": name, "drop": round(drops[name], 4)}
    return worst


def quantize_package(package: ModelPackage, snapshot: Snapshot, *, out_dir: Path,
                     calibration_images: int = CALIBRATION_IMAGES, keep: bool = False) -> ModelPackage:
    """Write the int8 variant of ``package`` to ``out_dir`` (evaluated on the snapshot's val split), if it is
    faster than ``package`` and as accurate (or ``keep``)."""
    decline_openvino_telemetry()  # NNCF imports OpenVINO (and has telemetry of its own on the same library)
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
    calibration = nncf.Dataset(list(_calibration_items(package, paths, input_name)))
    val_entries = list(snapshot.split("val"))
    if not val_entries:
        raise TrainingError(f"snapshot {snapshot.id[:12]} has no val images to control int8 accuracy on")
    meta = package.metadata
    int8_meta = type(meta)(**{**meta.__dict__, "name": f"{meta.name}-int8", "metrics": {},
                              "training": {**meta.training, "quantized_from": meta.sha256,
                                           "int8_activations": "u8",
                                           "quantization": f"NNCF {nncf.__version__} post-training with "
                                                           "accuracy control (mAP@0.5:0.95 on val within "
                                                           f"{MAX_MAP_DROP}), ONNX QDQ, MIXED preset (u8 "
                                                           "activations, s8 per-channel weights), head box "
                                                           "arithmetic and Sigmoids in float, "
                                                           f"{len(paths)} train images"}})
    validation = nncf.Dataset(val_entries, lambda entry: _network_input(package, entry.image.path, input_name))
    float_detector = OnnxDetector.from_package(package.path)  # the float model on the engine a station runs
    validator = Validator(meta, int8_meta, evaluation_classes(float_detector, snapshot))
    # NNCF logs every node it leaves alone at INFO (a hundred lines a model); its warnings still show, and the
    # outcome is logged here
    logging.getLogger("nncf").setLevel(max(logging.WARNING, logging.getLogger("nncf").level))
    try:
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, validation, validator, max_drop=MAX_MAP_DROP, drop_type=nncf.DropType.ABSOLUTE,
            preset=nncf.QuantizationPreset.MIXED, subset_size=len(paths), fast_bias_correction=False,
            ignored_scope=head_ignored_scope(model),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                ranking_subset_size=min(RANKING_IMAGES, len(val_entries))))
    except Exception as exc:  # NNCF raises its own (and onnxruntime's) untyped errors
        raise TrainingError(f"int8 quantization of {package.path} failed: {exc}") from exc
    weights_int8 = {n.output[0] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    in_float = [n.name for n in quantized.graph.node if n.op_type == "Conv" and n.input[1] not in weights_int8]
    log.info("int8 accuracy search: %d candidate graphs validated; convolutions left in float: %s",
             validator.calls, ", ".join(in_float) or "none")
    moved = unsigned_activations(quantized)
    log.info("int8: %d activation quantizers written unsigned (U8S8)", moved)
    quantized_path = staging / "int8.onnx"
    onnx.save_model(quantized, str(quantized_path))
    result = write_package(staging / "package", quantized_path, int8_meta)
    record_runtime_metrics(result.path, snapshot)
    # Keep-or-refuse is a choice: it is made on val, never on test (test figures are only recorded). Both models
    # are measured on the engine a station would run them on (auto), the float one now, not from its record:
    # its recorded figures may come from another engine.
    int8_detector = OnnxDetector.from_package(result.path)
    metrics = evaluate_package(int8_detector, snapshot, split="val")
    float_metrics = evaluate_package(float_detector, snapshot, split="val").to_json()
    sample = [cast(npt.NDArray[np.uint8], cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in paths[:8]]
    float_fps, int8_fps = forward_fps(package.path, sample), forward_fps(result.path, sample)
    float_fps = max(float_fps, forward_fps(package.path, sample))  # interleaved: load on the box hits both
    int8_fps = max(int8_fps, forward_fps(result.path, sample))
    check = {"engine": int8_detector.engine_name, "float_engine": float_detector.engine_name,
             "float_precision": float_detector.precision,
             "float_fps": round(float_fps, 2), "int8_fps": round(int8_fps, 2),
             "float_map50": float_metrics["map50"], "int8_map50": metrics.map50,
             "float_map50_95": float_metrics["map50_95"], "int8_map50_95": metrics.map50_95,
             # recorded, not gated: the gate is overall mAP; a class int8 hurts more than others shows here
             "worst_class_drop": _worst_class_drop(float_metrics, metrics.to_json())}
    log.info("int8 check: %s", check)
    float_run = f"{float_detector.engine_name} {float_detector.precision}"
    worse = [f"{int8_fps:.1f} frames/s on {int8_detector.engine_name} int8 vs {float_fps:.1f} float "
             f"({float_run})"] if int8_fps <= float_fps else []
    for key in ("map50", "map50_95"):
        if float_metrics[key] - getattr(metrics, key) > MAX_MAP_DROP:
            worse.append(f"{key} {getattr(metrics, key):.3f} vs {float_metrics[key]:.3f} float ({float_run})")
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
    log.info("int8 package %s: mAP50 %.3f, mAP50-95 %.3f (float on %s: %.3f, %.3f)", out_dir, metrics.map50,
             metrics.map50_95, float_run, float_metrics["map50"], float_metrics["map50_95"])
    return ModelPackage.load(out_dir)

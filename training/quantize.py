"""int8 variant of a package: onnxruntime static quantization (QDQ), calibrated on training images.

On CPUs with VNNI / AMX int8 kernels this is where speed lies, but it is judged like any other model:
by mAP through the runtime on the same split, never by speed alone.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from datasets.snapshot import Snapshot
from inspection.detector import pre_process
from inspection.errors import TrainingError
from models.package import ModelPackage, write_package
from training.package import record_runtime_metrics

log = logging.getLogger(__name__)


class _Calibration:
    """Feeds letterboxed training images, exactly as the station will see them, to the calibrator."""

    def __init__(self, package: ModelPackage, snapshot: Snapshot, input_name: str, count: int) -> None:
        entries = list(snapshot.split("train")) or list(snapshot.entries)
        random.Random(0).shuffle(entries)
        self._paths = [e.image.path for e in entries[:count]]
        self._meta = package.metadata
        self._input = input_name
        self._iter: Iterator[dict[str, Any]] | None = None

    def _batches(self) -> Iterator[dict[str, Any]]:
        for path in self._paths:
            image = cast(npt.NDArray[np.uint8] | None, cv2.imread(str(path), cv2.IMREAD_COLOR))
            if image is None:
                continue
            tensor, _ = pre_process([image], self._meta.input_width, self._meta.input_height, self._meta.pad_value)
            yield {self._input: np.array(tensor)}

    def get_next(self) -> dict[str, Any] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)


def quantize_package(package: ModelPackage, snapshot: Snapshot, *, out_dir: Path,
                     calibration_images: int = 200) -> ModelPackage:
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:  # pragma: no cover
        raise TrainingError("int8 quantization needs onnxruntime's quantization tools") from exc
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    prepared = staging / "prepared.onnx"
    quant_pre_process(str(package.model_path), str(prepared), skip_symbolic_shape=True)
    input_name = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    reader = _Calibration(package, snapshot, input_name, calibration_images)
    CalibrationDataReader.register(_Calibration)
    quantized = staging / "int8.onnx"
    try:
        # Only convolutions: the head's box decoding (coordinates up to the input size) and the class
        # scores (0..1) meet in one Concat, and one int8 scale for both erases the scores.
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv"])
    except Exception as exc:
        raise TrainingError(f"int8 quantization of {package.path} failed: {exc}") from exc
    meta = package.metadata
    int8_meta = type(meta)(**{**meta.__dict__, "name": f"{meta.name}-int8", "metrics": {},
                              "training": {**meta.training, "quantized_from": meta.sha256,
                                           "quantization": "onnxruntime static QDQ, u8 activations, s8 "
                                                           f"per-channel weights, {calibration_images} images"}})
    result = write_package(staging / "package", quantized, int8_meta)
    metrics = record_runtime_metrics(result.path, snapshot)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (staging / "package").replace(out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("int8 package %s: mAP50 %.3f (fp32 %.3f)", out_dir, metrics.map50, meta.metrics.get("map50", float("nan")))
    return ModelPackage.load(out_dir)

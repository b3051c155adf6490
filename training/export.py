"""Export trained weights to ONNX with a dynamic batch axis, the form the stations run."""

from __future__ import annotations

import logging
from pathlib import Path

from inspection.errors import TrainingError
from training.offline import prepare_offline_ultralytics, ultralytics_logs_to_stderr

log = logging.getLogger(__name__)


def export_onnx(weights: Path, *, imgsz: int, out_dir: Path, opset: int = 17, simplify: bool = True) -> Path:
    """``YOLO(weights).export(format="onnx", dynamic=True)``: output ``[B, 4 + nc, N]``, NMS left to us.

    NMS stays outside the graph on purpose: an in-graph NMS fixes the score threshold at export time,
    while each order's profile needs its own.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prepare_offline_ultralytics(out_dir / ".ultralytics")
    try:
        from ultralytics import YOLO
    except ImportError as exc:  # pragma: no cover
        raise TrainingError("export needs the [train] extra: pip install 'qcline[train]'") from exc
    ultralytics_logs_to_stderr()
    try:
        exported = YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=simplify,
                                             opset=opset, batch=1, device="cpu")
    except Exception as exc:
        raise TrainingError(f"ONNX export of {weights} failed: {exc}") from exc
    target = out_dir / "model.onnx"
    Path(exported).replace(target)
    log.info("exported %s -> %s", weights, target)
    return target

"""Detection metrics in numpy (no torch): mAP@0.5, mAP@0.5:0.95, per-class AP, precision / recall.

Follows the COCO / ultralytics recipe so our numbers are comparable with ``yolo val``: greedy matching
by IoU within a class at ten IoU thresholds, the precision envelope, and AP as the area under the
101-point interpolated PR curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inspection.boxes import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ImageEval:
    """Predictions and ground truth of one image, in the same pixel space."""

    pred_xyxy: FloatArray
    pred_conf: FloatArray
    pred_cls: npt.NDArray[np.int64]
    gt_xyxy: FloatArray
    gt_cls: npt.NDArray[np.int64]


def match_predictions(image: ImageEval) -> npt.NDArray[np.bool_]:
    """(N_pred, 10) true-positive matrix: each ground truth box matches at most one prediction."""
    n_pred = len(image.pred_conf)
    correct = np.zeros((n_pred, len(IOU_THRESHOLDS)), dtype=bool)
    if n_pred == 0 or len(image.gt_cls) == 0:
        return correct
    by_conf = np.argsort(-image.pred_conf, kind="stable")
    pred_xyxy, pred_cls = image.pred_xyxy[by_conf], image.pred_cls[by_conf]
    iou = box_iou(image.gt_xyxy, pred_xyxy) * (image.gt_cls[:, None] == pred_cls[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        gt_idx, pred_idx = np.nonzero(iou >= threshold)
        if gt_idx.size == 0:
            continue
        order = np.argsort(-iou[gt_idx, pred_idx], kind="stable")
        gt_idx, pred_idx = gt_idx[order], pred_idx[order]
        # Each prediction keeps its best-IoU ground truth; then each ground truth goes to the most
        # confident of the predictions that chose it (pairs are now in prediction = confidence order).
        _, first_pred = np.unique(pred_idx, return_index=True)
        gt_idx, pred_idx = gt_idx[first_pred], pred_idx[first_pred]
        _, first_gt = np.unique(gt_idx, return_index=True)
        correct[by_conf[pred_idx[first_gt]], t] = True
    return correct


def _average_precision(recall: FloatArray, precision: FloatArray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


@dataclass(frozen=True)
class DetectionMetrics:
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]
    precision: float
    recall: float
    images: int
    instances: int

    def to_json(self) -> dict[str, object]:
        return {"map50": round(self.map50, 4), "map50_95": round(self.map50_95, 4),
                "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "images": self.images, "instances": self.instances,
                "per_class": {k: {m: round(v, 4) for m, v in row.items()} for k, row in self.per_class.items()}}


def evaluate_detections(images: Sequence[ImageEval], class_names: Sequence[str],
                        operating_confidence: float = 0.25) -> DetectionMetrics:
    """AP per class over all images; precision / recall at ``operating_confidence`` (the package's)."""
    tps, confs, classes, gts = [], [], [], []
    for image in images:
        tps.append(match_predictions(image))
        confs.append(image.pred_conf)
        classes.append(image.pred_cls)
        gts.append(image.gt_cls)
    tp = np.concatenate(tps) if tps else np.zeros((0, 10), bool)
    conf = np.concatenate(confs) if confs else np.zeros(0)
    pred_cls = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    gt_cls = np.concatenate(gts) if gts else np.zeros(0, np.int64)
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    per_class: dict[str, dict[str, float]] = {}
    ap_rows, p_rows, r_rows = [], [], []
    for c, name in enumerate(class_names):
        n_gt = int((gt_cls == c).sum())
        mask = pred_cls == c
        if n_gt == 0:
            continue
        ap = np.zeros(len(IOU_THRESHOLDS))
        p_at, r_at = 0.0, 0.0
        if mask.any():
            tpc = np.cumsum(tp[mask], axis=0)
            fpc = np.cumsum(~tp[mask], axis=0)
            recall = tpc / n_gt
            precision = tpc / (tpc + fpc)
            for t in range(len(IOU_THRESHOLDS)):
                ap[t] = _average_precision(recall[:, t], precision[:, t])
            at = conf[mask] >= operating_confidence
            if at.any():
                last = int(np.nonzero(at)[0][-1])
                p_at, r_at = float(precision[last, 0]), float(recall[last, 0])
        per_class[name] = {"ap50": float(ap[0]), "ap50_95": float(ap.mean()), "precision": p_at,
                           "recall": r_at, "instances": float(n_gt)}
        ap_rows.append(ap)
        p_rows.append(p_at)
        r_rows.append(r_at)
    aps = np.array(ap_rows) if ap_rows else np.zeros((1, 10))
    return DetectionMetrics(
        map50=float(aps[:, 0].mean()), map50_95=float(aps.mean()), per_class=per_class,
        precision=float(np.mean(p_rows)) if p_rows else 0.0, recall=float(np.mean(r_rows)) if r_rows else 0.0,
        images=len(images), instances=len(gt_cls))

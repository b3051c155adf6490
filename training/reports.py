"""Evaluation reports a reviewer can look at: PR curves per class and a confusion matrix, as PNG files.

The mAP numbers decide the promotion gate; the pictures explain them. A PR curve shows *where* a model
loses precision (one class collapsing at high recall), and the confusion matrix shows *what* it confuses:
a dent called a scratch still fails the unit, a missed defect (-> background) is an escape to the
customer, a background box called a defect is a false reject on the line.

Both are computed from the per-image predictions and ground truth (``models.metrics.ImageEval``), with
the same IoU matching rules as the metrics. matplotlib is imported lazily and only through its
object-oriented API on the Agg canvas: no display, no pyplot global state, safe in a worker thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from inspection.boxes import box_iou
from inspection.errors import TrainingError
from models.metrics import ImageEval, _average_precision, match_predictions

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

BACKGROUND = "background"
PR_CURVE_FILE = "pr_curve.png"
CONFUSION_FILE = "confusion_matrix.png"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class PRCurve:
    """One class's precision/recall as the confidence threshold falls (at IoU 0.5), and its AP50."""

    class_name: str
    recall: npt.NDArray[np.float64]
    precision: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    ap50: float
    instances: int


@dataclass(frozen=True)
class EvaluationReport:
    pr_curve: Path
    confusion_matrix: Path
    summary: Path
    matrix: npt.NDArray[np.int64]
    curves: tuple[PRCurve, ...]


def pr_curves(images: Sequence[ImageEval], class_names: Sequence[str]) -> list[PRCurve]:
    """PR curve per class with ground truth, matched exactly as ``models.metrics`` does at IoU 0.5, so
    the area under each curve is the AP50 the gate compares."""
    tps, confs, classes, gts = [], [], [], []
    for image in images:
        tps.append(match_predictions(image)[:, 0])
        confs.append(image.pred_conf)
        classes.append(image.pred_cls)
        gts.append(image.gt_cls)
    tp = np.concatenate(tps) if tps else np.zeros(0, bool)
    conf = np.concatenate(confs).astype(np.float64) if confs else np.zeros(0)
    pred_cls = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    gt_cls = np.concatenate(gts) if gts else np.zeros(0, np.int64)
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    curves = []
    for c, name in enumerate(class_names):
        n_gt = int((gt_cls == c).sum())
        if n_gt == 0:
            continue
        mask = pred_cls == c
        tpc = np.cumsum(tp[mask]).astype(np.float64)
        fpc = np.cumsum(~tp[mask]).astype(np.float64)
        recall = tpc / n_gt
        precision = tpc / np.maximum(tpc + fpc, 1e-9)
        ap = _average_precision(recall, precision) if mask.any() else 0.0
        curves.append(PRCurve(name, recall, precision, conf[mask], ap, n_gt))
    return curves


def confusion_matrix(images: Sequence[ImageEval], n_classes: int, *, confidence: float,
                     iou: float = 0.5) -> npt.NDArray[np.int64]:
    """``(nc + 1) x (nc + 1)`` counts; rows are the truth, columns the prediction, the last of each is
    background.

    Only predictions with ``conf >= confidence`` (the package's operating threshold, what the line acts
    on) count. Boxes are matched regardless of class at ``IoU >= iou``, best IoU first, each ground truth
    and each prediction at most once; so a matched pair with different classes is a confusion, an
    unmatched ground truth a miss (row class, column background), an unmatched prediction a false
    positive (row background, column class).
    """
    bg = n_classes
    matrix = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    for image in images:
        keep = image.pred_conf >= confidence
        pred_xyxy, pred_cls = image.pred_xyxy[keep], image.pred_cls[keep]
        gt_cls = image.gt_cls
        overlaps = box_iou(image.gt_xyxy, pred_xyxy)
        gt_idx, pred_idx = np.nonzero(overlaps >= iou)
        order = np.argsort(-overlaps[gt_idx, pred_idx], kind="stable")
        matched_gt: set[int] = set()
        matched_pred: set[int] = set()
        for g, p in zip(gt_idx[order].tolist(), pred_idx[order].tolist(), strict=True):
            if g in matched_gt or p in matched_pred:
                continue
            matched_gt.add(g)
            matched_pred.add(p)
            matrix[gt_cls[g], pred_cls[p]] += 1
        for g in range(len(gt_cls)):
            if g not in matched_gt:
                matrix[gt_cls[g], bg] += 1
        for p in range(len(pred_cls)):
            if p not in matched_pred:
                matrix[bg, pred_cls[p]] += 1
    return matrix


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise TrainingError("evaluation plots need matplotlib: install the train extra "
                            "(pip install 'qcline[train]')") from e
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_pr_curves(curves: Sequence[PRCurve], path: Path, *, title: str = "") -> Path:
    """One line per class (legend: AP50), plus the mean; written as PNG."""
    figure = _figure(7, 6)
    ax = figure.add_subplot()
    for curve in curves:
        # the precision envelope, as AP integrates it: what a threshold choice can actually reach
        envelope = np.flip(np.maximum.accumulate(np.flip(curve.precision))) if len(curve.precision) else curve.precision
        ax.plot(np.concatenate(([0.0], curve.recall)), np.concatenate(([1.0], envelope)), linewidth=1.5,
                label=f"{curve.class_name} {curve.ap50:.3f} (n={curve.instances})")
    mean_ap = float(np.mean([c.ap50 for c in curves])) if curves else 0.0
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02),
           title=(f"{title}: " if title else "") + f"precision-recall at IoU 0.5 (mAP50 {mean_ap:.3f})")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center")
    return _save(figure, path)


def plot_confusion_matrix(matrix: npt.NDArray[np.int64], class_names: Sequence[str], path: Path, *,
                          title: str = "") -> Path:
    """Counts in each cell, colour by share of the true row (so a rare class is not all pale)."""
    labels = [*class_names, BACKGROUND]
    n = len(labels)
    figure = _figure(max(5.0, 0.6 * n + 3), max(4.5, 0.6 * n + 2.5))
    ax = figure.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true row")
    for r in range(n):
        for c in range(n):
            if matrix[r, c]:
                ax.text(c, r, str(int(matrix[r, c])), ha="center", va="center",
                        color="white" if share[r, c] > 0.5 else "black", fontsize="small")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="Predicted", ylabel="True", title=title or "Confusion matrix (IoU 0.5)")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, format="png")
    except OSError as e:
        raise TrainingError(f"cannot write the plot {path}: {e}") from e
    return path


def write_evaluation_report(images: Sequence[ImageEval], class_names: Sequence[str], out_dir: Path, *,
                            confidence: float, iou: float = 0.5, title: str = "",
                            extra: dict[str, Any] | None = None) -> EvaluationReport:
    """Write ``pr_curve.png``, ``confusion_matrix.png`` and ``report.json`` (the numbers behind them)
    into ``out_dir``; ``confidence`` is the package's operating threshold."""
    out_dir = Path(out_dir)
    curves = pr_curves(images, class_names)
    matrix = confusion_matrix(images, len(class_names), confidence=confidence, iou=iou)
    pr_path = plot_pr_curves(curves, out_dir / PR_CURVE_FILE, title=title)
    cm_path = plot_confusion_matrix(matrix, class_names, out_dir / CONFUSION_FILE,
                                    title=f"{title} confusion at conf {confidence:.2f}".strip())
    summary = {
        "classes": [*class_names, BACKGROUND], "confidence": confidence, "iou": iou, "images": len(images),
        "confusion_matrix": matrix.tolist(), "confusion_axes": "rows: true, columns: predicted",
        "ap50": {c.class_name: round(c.ap50, 4) for c in curves}, **(extra or {})}
    summary_path = out_dir / REPORT_FILE
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    log.info("evaluation report in %s (%d images)", out_dir, len(images))
    return EvaluationReport(pr_path, cm_path, summary_path, matrix, tuple(curves))

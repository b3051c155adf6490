"""Evaluation reports: confusion counts on hand-made tables, PR curves that agree with the metrics, real PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.metrics import ImageEval, evaluate_detections
from training.reports import confusion_matrix, pr_curves, write_evaluation_report

CLASSES = ("a", "b")
A, B, BG = 0, 1, 2
BOX = (0, 0, 10, 10)
FAR = (20, 20, 30, 30)


def img(preds: list[tuple[tuple[float, ...], float, int]], gts: list[tuple[tuple[float, ...], int]]) -> ImageEval:
    return ImageEval(np.array([p[0] for p in preds], np.float64).reshape(-1, 4),
                     np.array([p[1] for p in preds], np.float64), np.array([p[2] for p in preds], np.int64),
                     np.array([g[0] for g in gts], np.float64).reshape(-1, 4), np.array([g[1] for g in gts], np.int64))


def cells(**counts: int) -> np.ndarray:
    """``a_b=1`` -> one true ``a`` predicted as ``b``; ``bg`` is background."""
    names = {"a": A, "b": B, "bg": BG}
    matrix = np.zeros((3, 3), np.int64)
    for key, n in counts.items():
        true, pred = key.split("_")
        matrix[names[true], names[pred]] = n
    return matrix


CASES = [
    ("hit", img([(BOX, 0.9, A)], [(BOX, A)]), cells(a_a=1)),
    ("wrong class", img([(BOX, 0.8, A)], [(BOX, B)]), cells(b_a=1)),
    ("miss", img([], [(BOX, A)]), cells(a_bg=1)),
    ("false positive", img([(BOX, 0.9, B)], []), cells(bg_b=1)),
    ("below the package confidence", img([(BOX, 0.1, B)], [(BOX, B)]), cells(b_bg=1)),
    ("wrong place", img([(FAR, 0.9, A)], [(BOX, A)]), cells(a_bg=1, bg_a=1)),
    ("duplicate", img([(BOX, 0.9, A), (BOX, 0.8, A)], [(BOX, A)]), cells(a_a=1, bg_a=1)),
    ("iou 0.6 matches", img([((0, 0, 10, 6), 0.9, A)], [(BOX, A)]), cells(a_a=1)),
    ("iou 0.4 does not", img([((0, 0, 10, 4), 0.9, A)], [(BOX, A)]), cells(a_bg=1, bg_a=1)),
    ("best iou wins", img([((0, 0, 10, 9), 0.9, B), (BOX, 0.5, A)], [(BOX, A)]), cells(a_a=1, bg_b=1)),
    ("empty", img([], []), cells()),
]


@pytest.mark.parametrize(("image", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_confusion_counts(image: ImageEval, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(confusion_matrix([image], 2, confidence=0.25), expected)


def test_confusion_counts_add_up_over_images() -> None:
    matrix = confusion_matrix([c[1] for c in CASES], 2, confidence=0.25)
    np.testing.assert_array_equal(matrix, [[4, 0, 3],
                                           [1, 0, 1],
                                           [3, 2, 0]])


def test_pr_curves_integrate_to_the_metrics_ap50() -> None:
    images = [c[1] for c in CASES]
    metrics = evaluate_detections(images, CLASSES)
    curves = {c.class_name: c for c in pr_curves(images, CLASSES)}
    assert set(curves) == set(metrics.per_class)
    for name, curve in curves.items():
        assert curve.ap50 == pytest.approx(metrics.per_class[name]["ap50"])
        assert curve.instances == metrics.per_class[name]["instances"]
        assert np.all(np.diff(curve.recall) >= 0) and np.all(np.diff(curve.confidence) <= 0)


def png_shape(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} does not decode"
    return tuple(image.shape)


def test_report_writes_valid_pngs_and_the_numbers(tmp_path: Path) -> None:
    report = write_evaluation_report([c[1] for c in CASES], CLASSES, tmp_path / "report", confidence=0.25,
                                     title="candidate 1", extra={"model_sha256": "f" * 64})
    for path in (report.pr_curve, report.confusion_matrix):
        height, width = png_shape(path)[:2]
        assert height > 200 and width > 200
    summary = json.loads(report.summary.read_text())
    assert summary["classes"] == ["a", "b", "background"] and summary["model_sha256"] == "f" * 64
    assert summary["confusion_matrix"] == report.matrix.tolist() == [[4, 0, 3], [1, 0, 1], [3, 2, 0]]


def test_report_without_any_ground_truth_still_draws(tmp_path: Path) -> None:
    report = write_evaluation_report([img([(BOX, 0.9, A)], [])], CLASSES, tmp_path, confidence=0.25)
    assert report.curves == () and png_shape(report.pr_curve) and png_shape(report.confusion_matrix)

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import ImageEval, evaluate_detections, match_predictions


def img(preds: list[tuple[float, float, float, float, float, int]], gts: list[tuple[float, ...]]) -> ImageEval:
    p = np.array(preds, np.float64).reshape(-1, 6)
    g = np.array(gts, np.float64).reshape(-1, 5)
    return ImageEval(p[:, :4], p[:, 4], p[:, 5].astype(np.int64), g[:, :4], g[:, 4].astype(np.int64))


GT = (0, 0, 10, 10, 0)


@pytest.mark.parametrize(
    ("preds", "map50"),
    [
        ([(0, 0, 10, 10, 0.9, 0)], 1.0),                      # perfect
        ([], 0.0),                                            # nothing found
        ([(0, 0, 10, 10, 0.9, 1)], 0.0),                      # right box, wrong class
        ([(20, 20, 30, 30, 0.9, 0)], 0.0),                    # wrong place
        ([(0, 0, 10, 10, 0.9, 0), (0, 0, 10, 10, 0.8, 0)], 1.0),  # duplicate ranked below the hit
    ],
)
def test_map_table(preds: list, map50: float) -> None:
    metrics = evaluate_detections([img(preds, [GT])], ["a", "b"])
    assert metrics.map50 == pytest.approx(map50, abs=0.01)


def test_false_positive_ranked_first_lowers_ap() -> None:
    metrics = evaluate_detections([img([(20, 20, 30, 30, 0.9, 0), (0, 0, 10, 10, 0.8, 0)], [GT])], ["a"])
    assert 0.4 < metrics.map50 < 0.8


def test_each_ground_truth_goes_to_the_most_confident_prediction() -> None:
    # the low-confidence box overlaps better, but the confident one must take the match
    tp = match_predictions(img([(0, 0, 10, 9, 0.9, 0), (0, 0, 10, 10, 0.3, 0)], [GT]))
    assert tp[:, 0].tolist() == [True, False]


def test_map50_95_penalises_loose_boxes() -> None:
    loose = evaluate_detections([img([(0, 0, 10, 14, 0.9, 0)], [GT])], ["a"])
    assert loose.map50 == pytest.approx(1.0, abs=0.01) and loose.map50_95 < 0.5


def test_a_class_the_model_never_learned_scores_zero_instead_of_vanishing(tmp_path) -> None:
    from datasets.records import LabeledBox, LabeledImage
    from datasets.snapshot import Snapshot, SnapshotEntry
    from inspection.detector import OnnxDetector
    from models.evaluation import evaluate_package
    from tests.builders import Candidate, solid_image, tiny_package, write_image

    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent"))
    path = write_image(tmp_path / "white.png", solid_image(255))
    boxes = (LabeledBox.of("scratch", 24, 24, 40, 40), LabeledBox.of("knot", 0, 0, 10, 10))
    snapshot = Snapshot(("knot", "scratch"), (SnapshotEntry(LabeledImage(path, 64, 64, boxes, "a" * 64), "val"),))
    metrics = evaluate_package(OnnxDetector.from_package(package), snapshot)
    assert metrics.per_class["scratch"]["ap50"] > 0.9
    assert metrics.per_class["knot"]["ap50"] == 0.0 and metrics.per_class["knot"]["instances"] == 1

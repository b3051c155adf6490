"""The one box type: its rules, conversions and the records that hold it."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.records import LabeledBox
from inspection.boxes import Box, BoxError, box_iou, check_xyxy, weighted_box_fusion
from inspection.errors import QCError
from inspection.reviews import ReviewedBox, ReviewError
from inspection.types import Detections

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("coords", "message"), [
    ((0, 0, NAN, 5), "finite"),
    ((0, -INF, 5, 5), "finite"),
    ((5, 0, 4, 5), "inverted"),
    ((0, 5, 5, 4), "inverted"),
], ids=["nan", "inf", "x-inverted", "y-inverted"])
def test_a_box_refuses_what_is_not_a_box(coords: tuple[float, ...], message: str) -> None:
    with pytest.raises(BoxError, match=message) as caught:
        Box(*coords)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, QCError)


@pytest.mark.parametrize("coords", [(0, 0, 5, 5), (5, 5, 5, 9), (3, 3, 3, 3), (-2, -1, 4, 4)],
                         ids=["plain", "line", "point", "negative"])
def test_a_box_may_be_empty_or_negative(coords: tuple[float, ...]) -> None:
    box = Box(*coords)
    assert tuple(box) == coords and box.has_area == (box.area > 0)


@pytest.mark.parametrize(("coords", "message"), [
    ((5, 5, 5, 9), "x2 > x1"), ((5, 5, 9, 5), "y2 > y1"), ((9, 5, 5, 9), "x2 > x1"), ((0, 0, 1, NAN), "finite"),
], ids=["no-width", "no-height", "inverted", "nan"])
def test_a_label_needs_area(coords: tuple[float, ...], message: str) -> None:
    with pytest.raises(BoxError, match=message):
        Box.with_area(*coords)
    with pytest.raises(BoxError, match=message):
        LabeledBox.of("scratch", *coords)
    with pytest.raises(ReviewError, match=message):
        ReviewedBox.of("scratch", *coords)


def test_label_records_check_a_box_built_elsewhere() -> None:
    line = Box(5, 5, 5, 9)
    with pytest.raises(BoxError, match="x2 > x1"):
        LabeledBox("scratch", line)
    with pytest.raises(ReviewError, match="x2 > x1"):
        ReviewedBox("scratch", line)
    with pytest.raises(ReviewError, match="non-negative"):
        ReviewedBox.of("scratch", -1, 0, 5, 5)
    assert LabeledBox.of("scratch", 1, 2, 3, 4).to_json() == ["scratch", 1.0, 2.0, 3.0, 4.0]
    assert ReviewedBox.of("dent", 1, 2, 3, 4).to_json() == ["dent", 1.0, 2.0, 3.0, 4.0]


def test_conversions_round_trip() -> None:
    box = Box(10, 20, 40, 60)
    assert (box.width, box.height, box.area) == (30, 40, 1200)
    assert box.to_xywh() == (10, 20, 30, 40) and Box.from_xywh(*box.to_xywh()) == box
    yolo = box.to_yolo(100, 200)
    assert yolo == pytest.approx((0.25, 0.2, 0.3, 0.2))
    assert tuple(Box.from_yolo(*yolo, 100, 200)) == pytest.approx(tuple(box))
    assert box.scaled(2) == Box(20, 40, 80, 120)
    assert Box(-5, -5, 150, 30).clipped(100, 50) == Box(0, 0, 100, 30)
    assert Box(120, 10, 150, 30).clipped(100, 50) == Box(100, 10, 100, 30)  # wholly outside: a line on the border
    assert box.inside(40, 60) and not box.inside(39, 60) and box.inside(39, 60, slack=1)


def test_iou_scalar_and_pairwise_agree() -> None:
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert a.iou(b) == pytest.approx(50 / 150) and a.iou(a) == pytest.approx(1.0)
    assert Box(0, 0, 0, 10).iou(a) == 0.0
    matrix = box_iou(np.array([tuple(a), tuple(b)]), np.array([tuple(b)]))
    assert matrix.shape == (2, 1) and matrix[:, 0] == pytest.approx([50 / 150, 1.0])
    assert box_iou(np.zeros((0, 4)), np.array([tuple(a)])).shape == (0, 1)


@pytest.mark.parametrize(("row", "message"), [
    ([0, 0, NAN, 5], "finite"), ([5, 0, 4, 5], "inverted"), ([0, 5, 5, 4], "inverted"),
], ids=["nan", "x-inverted", "y-inverted"])
def test_detections_use_the_same_rules_vectorised(row: list[float], message: str) -> None:
    xyxy = np.array([[0, 0, 4, 4], row], np.float32)
    with pytest.raises(BoxError, match=f"row 1: box .* {message}"):
        check_xyxy(xyxy)
    with pytest.raises(BoxError, match=message):
        Detections(xyxy, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64), ("scratch",))


def test_detections_from_and_to_boxes() -> None:
    boxes = (Box(1, 2, 3, 4), Box(5, 5, 5, 9))  # a clipped detection may have no area
    dets = Detections.from_boxes(boxes, [0.9, 0.5], [1, 0], ("scratch", "dent"))
    assert dets.xyxy.dtype == np.float32 and dets.xyxy.shape == (2, 4) and len(dets) == 2
    assert dets.boxes() == boxes and dets.class_name(0) == "dent"
    assert Detections.from_boxes((), (), (), ("scratch",)).boxes() == ()
    assert dets.scaled(2).boxes() == tuple(b.scaled(2) for b in boxes)


# -- weighted box fusion (test-time augmentation's merge of views) ------------------------------------------

def _wbf(boxes: list[tuple[float, float, float, float]], scores: list[float], groups: list[int] | None = None,
         *, views: int = 2, iou: float = 0.55) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return weighted_box_fusion(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                               np.array(groups if groups is not None else [0] * len(scores), np.int64),
                               iou=iou, views=views)


def test_wbf_of_two_identical_boxes_is_that_box_with_its_score() -> None:
    xyxy, scores, groups = _wbf([(10, 20, 30, 40), (10, 20, 30, 40)], [0.8, 0.8])
    np.testing.assert_allclose(xyxy, [[10, 20, 30, 40]])
    np.testing.assert_allclose(scores, [0.8], rtol=1e-6)
    assert list(groups) == [0]


def test_wbf_of_disjoint_boxes_keeps_both_each_seen_by_one_view_of_two() -> None:
    xyxy, scores, _ = _wbf([(0, 0, 10, 10), (50, 50, 60, 60)], [0.9, 0.6])
    np.testing.assert_allclose(xyxy, [[0, 0, 10, 10], [50, 50, 60, 60]])
    np.testing.assert_allclose(scores, [0.45, 0.3], rtol=1e-6)  # mean score x (1 of 2 views)


def test_wbf_averages_overlapping_boxes_by_score() -> None:
    # IoU 90/110 = 0.82 > 0.55: one object, coordinates weighted 0.9 : 0.3, score (0.9 + 0.3) / 2
    xyxy, scores, _ = _wbf([(0, 0, 10, 10), (1, 0, 11, 10)], [0.9, 0.3])
    np.testing.assert_allclose(xyxy, [[0.25, 0, 10.25, 10]], rtol=1e-6)
    np.testing.assert_allclose(scores, [0.6], rtol=1e-6)


@pytest.mark.parametrize(("boxes", "groups", "clusters"), [
    ([(0, 0, 10, 10), (0, 0, 10, 10)], [0, 1], 2),  # another image or class: never one object
    ([(0, 0, 10, 10), (4, 0, 14, 10)], [0, 0], 2),  # IoU 60/140 = 0.43 <= 0.55
    ([(0, 0, 10, 10), (1, 0, 11, 10), (0, 1, 10, 11)], [0, 0, 0], 1),
], ids=["other-group", "low-iou", "three-views"])
def test_wbf_clusters(boxes: list[tuple[float, float, float, float]], groups: list[int], clusters: int) -> None:
    xyxy, scores, _ = _wbf(boxes, [0.5] * len(boxes), groups, views=3)
    assert len(xyxy) == len(scores) == clusters


def test_wbf_of_nothing_is_nothing() -> None:
    xyxy, scores, groups = _wbf([], [])
    assert xyxy.shape == (0, 4) and scores.shape == (0,) and groups.shape == (0,)

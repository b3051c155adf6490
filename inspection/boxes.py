"""One box type for the whole product: ``Box`` (x1, y1, x2, y2 in pixels), and its rules written once.

A model's detection, a judged finding, an annotated label and an operator's correction are all the same
rectangle; only what surrounds them differs (a confidence, a class name, an outcome). The rules of what a box
is live here, and every record that holds one (``Detections``, ``DefectFinding``, ``LabeledBox``,
``ReviewedBox``) is validated by them:

* every coordinate is a finite number;
* the box is ordered: ``x2 >= x1`` and ``y2 >= y1``. Zero area is a box: a model's box clipped to the frame
  collapses to a line when it lay in the letterbox padding, and such rows are in stores already;
* a *label* (something to train on) must also cover pixels: ``x2 > x1`` and ``y2 > y1`` (``Box.with_area``,
  ``Box.require_area``);
* whether it lies inside an image is a question about that image (``Box.inside``), asked by who knows it.

``check_xyxy`` applies the same rules to a detector's ``(N, 4)`` array at once; the conversions to and from
COCO ``xywh`` and YOLO's normalised centre form, IoU (``box_iou``, vectorised) and weighted box fusion
(``weighted_box_fusion``, test-time augmentation's merge of views) live here too, so no module writes that
arithmetic again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inspection.errors import QCError

NEEDS_AREA = "needs x2 > x1 and y2 > y1"
INVERTED = "is inverted: needs x2 >= x1 and y2 >= y1"
NOT_FINITE = "must be finite numbers"


class BoxError(QCError, ValueError):
    """Coordinates that are not a box (not finite, inverted, or without area where a label needs it).

    A ``ValueError`` as well, since that is what a bad value is; a ``QCError`` so every front door maps it.
    """


def _problem(x1: float, y1: float, x2: float, y2: float, *, area: bool) -> str | None:
    """What is wrong with these coordinates under the rules above (``area``: as a label), or ``None``."""
    if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)):
        return NOT_FINITE
    if area and (x2 <= x1 or y2 <= y1):
        return NEEDS_AREA
    if x2 < x1 or y2 < y1:
        return INVERTED
    return None


def _fmt(coords: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{c:g}" for c in coords) + ")"


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle in image pixels: (x1, y1) top-left, (x2, y2) bottom-right.

    Iterates as ``x1, y1, x2, y2`` (so ``list(box)`` is the JSON shape ``[x1, y1, x2, y2]`` every store and
    answer already uses).
    """

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        problem = _problem(self.x1, self.y1, self.x2, self.y2, area=False)
        if problem is not None:
            raise BoxError(f"box {_fmt(tuple(self))} {problem}")

    # -- construction ----------------------------------------------------------------------------------
    @classmethod
    def with_area(cls, x1: float, y1: float, x2: float, y2: float) -> Box:
        """A box that covers pixels (a label): ``x2 > x1`` and ``y2 > y1`` as well as finite."""
        problem = _problem(x1, y1, x2, y2, area=True)
        if problem is not None:
            raise BoxError(f"box {_fmt((x1, y1, x2, y2))} {problem}")
        return cls(float(x1), float(y1), float(x2), float(y2))

    @classmethod
    def from_xywh(cls, x: float, y: float, w: float, h: float) -> Box:
        """From COCO's ``[x, y, width, height]``."""
        return cls(*xywh_to_xyxy(x, y, w, h))

    @classmethod
    def from_yolo(cls, cx: float, cy: float, w: float, h: float, width: int, height: int) -> Box:
        """From YOLO's normalised ``cx cy w h`` on a ``width`` x ``height`` image."""
        return cls(*yolo_to_xyxy(cx, cy, w, h, width, height))

    # -- checks ----------------------------------------------------------------------------------------
    def require_area(self) -> Box:
        """This box, if it covers pixels; else ``BoxError`` (``x2 > x1`` and ``y2 > y1``)."""
        if not self.has_area:
            raise BoxError(f"box {_fmt(tuple(self))} {NEEDS_AREA}")
        return self

    @property
    def has_area(self) -> bool:
        return self.x2 > self.x1 and self.y2 > self.y1

    def inside(self, width: float, height: float, *, slack: float = 0.0) -> bool:
        """Whether the box lies within a ``width`` x ``height`` image (``slack`` pixels past a border allowed)."""
        return (self.x1 >= -slack and self.y1 >= -slack and self.x2 <= width + slack
                and self.y2 <= height + slack)

    # -- geometry --------------------------------------------------------------------------------------
    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    def clipped(self, width: float, height: float) -> Box:
        """The part of the box inside a ``width`` x ``height`` image (it may have no area left)."""
        x1, y1 = min(max(0.0, self.x1), width), min(max(0.0, self.y1), height)
        return Box(x1, y1, max(x1, min(float(width), self.x2)), max(y1, min(float(height), self.y2)))

    def scaled(self, factor: float) -> Box:
        return Box(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor)

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0 when either has no area)."""
        return float(box_iou(np.array([tuple(self)]), np.array([tuple(other)]))[0, 0])

    # -- conversion ------------------------------------------------------------------------------------
    def to_xywh(self) -> tuple[float, float, float, float]:
        """COCO's ``[x, y, width, height]``."""
        return self.x1, self.y1, self.width, self.height

    def to_yolo(self, width: int, height: int) -> tuple[float, float, float, float]:
        """YOLO's normalised ``cx cy w h`` on a ``width`` x ``height`` image."""
        return ((self.x1 + self.x2) / 2 / width, (self.y1 + self.y2) / 2 / height,
                self.width / width, self.height / height)

    def rounded(self, ndigits: int) -> tuple[float, float, float, float]:
        return (round(self.x1, ndigits), round(self.y1, ndigits), round(self.x2, ndigits), round(self.y2, ndigits))

    def __iter__(self) -> Iterator[float]:
        yield self.x1
        yield self.y1
        yield self.x2
        yield self.y2


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` -> ``(x1, y1, x2, y2)``, not validated (importers report bad ones themselves)."""
    return x, y, x + w, y + h


def yolo_to_xyxy(cx: float, cy: float, w: float, h: float, width: int,
                 height: int) -> tuple[float, float, float, float]:
    """YOLO's normalised ``cx cy w h`` -> pixel ``(x1, y1, x2, y2)``, not validated."""
    return (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height


def check_xyxy(xyxy: npt.NDArray[np.floating], what: str = "box") -> None:
    """The rules of ``Box`` on an ``(N, 4)`` array at once; ``BoxError`` naming the first row that breaks them.

    The mask is the fast path; the message comes from ``Box`` itself, so both say the same.
    """
    if not len(xyxy):
        return
    bad = ~np.isfinite(xyxy).all(axis=1) | (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        try:
            Box(*(float(v) for v in xyxy[row]))
        except BoxError as exc:
            raise BoxError(f"{what} row {row}: {exc}") from None
        raise AssertionError("check_xyxy's mask and Box disagree")  # pragma: no cover


def box_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9), dtype=np.float64)


def weighted_box_fusion(xyxy: npt.NDArray[np.floating], scores: npt.NDArray[np.floating],
                        groups: npt.NDArray[np.integer], *, iou: float, views: int,
                        ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Weighted box fusion of boxes that ``views`` predictions of the same images made, every group at once.

    Solovyev, Wang and Gabruseva, "Weighted boxes fusion: Ensembling boxes from different object detection
    models" (2019, arXiv:1910.13302; Image and Vision Computing 107, 2021), as ``ensemble-boxes`` implements it
    with ``conf_type="avg"`` and equal weights (that library needs numba and pandas, too heavy for a station):
    boxes are taken in descending score; each joins the cluster of its ``group`` (image x class) whose *fused*
    box it overlaps most, if that IoU is > ``iou``, else starts one. A cluster's box is the score-weighted
    mean of its members' coordinates; its score the members' mean score times ``min(members, views) / views``,
    i.e. ``sum / max(members, views)``: an object only one of two views saw keeps half its score.

    Unlike NMS nothing is thrown away: boxes are averaged, which is why it suits views of one image. The loop
    runs once per box over the whole batch (groups sorted together), IoU against the group's clusters in numpy.
    Returns the fused boxes, their scores and their groups, grouped by ``groups`` ascending.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    conf = np.asarray(scores, np.float64).reshape(-1)
    group_of = np.asarray(groups, np.int64).reshape(-1)
    if not len(boxes) == len(conf) == len(group_of):
        raise ValueError(f"{len(boxes)} boxes, {len(conf)} scores and {len(group_of)} groups")
    total = len(boxes)
    weighted = np.zeros((total, 4))  # per cluster: sum of score * coordinates
    weight = np.zeros(total)  # sum of scores
    members = np.zeros(total, np.int64)
    fused = np.zeros((total, 4))
    fused_group = np.zeros(total, np.int64)
    count = first = 0
    current: int | None = None
    for j in np.lexsort((-conf, group_of)):  # group ascending, score descending inside: a group's clusters adjoin
        box, score, group = boxes[j], conf[j], int(group_of[j])
        if group != current:
            current, first = group, count
        if count > first:
            candidates = fused[first:count]
            wide = np.clip(np.minimum(candidates[:, 2:], box[2:]) - np.maximum(candidates[:, :2], box[:2]), 0, None)
            inter = wide[:, 0] * wide[:, 1]
            union = ((candidates[:, 2:] - candidates[:, :2]).prod(axis=1) + (box[2:] - box[:2]).prod() - inter)
            overlap = inter / np.maximum(union, 1e-9)
            best = int(overlap.argmax())
            if overlap[best] > iou:
                k = first + best
                weighted[k] += score * box
                weight[k] += score
                members[k] += 1
                if weight[k] > 0:
                    fused[k] = weighted[k] / weight[k]
                continue
        weighted[count], weight[count], members[count] = score * box, score, 1
        fused[count], fused_group[count] = box, group
        count += 1
    fused_scores = weight[:count] / np.maximum(members[:count], views)
    return fused[:count].astype(np.float32), fused_scores.astype(np.float32), fused_group[:count]

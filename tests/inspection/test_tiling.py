"""Tiled inference: the grid and the merge as tables, then a large panel composed from real images.

The panel is a 4x4 mosaic of real steel images (NEU-DET from ../shared/datasets when present, else the demo
frames in the repo), upscaled 2x to 1600 px: a 2.6 MP panel whose defects, letterboxed whole into 416 px,
shrink to a quarter of their size. The reference is what the model finds on each image alone, at the scale
it was trained on, placed where the image sits in the panel.
"""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from inspection.boxes import box_iou
from inspection.detector import OnnxDetector
from inspection.pipeline import Inspector
from inspection.profiles import InspectionProfile
from inspection.settings import DEFAULT_MODEL_DIR, REPO_ROOT
from inspection.tiling import detect_tiled, merge_tiles, tile_grid
from inspection.types import Detections, Frame

NEU_IMAGES = REPO_ROOT.parent / "shared" / "datasets" / "neu-det" / "images"
DEMO_FRAMES = REPO_ROOT / "api" / "demo" / "frames"
NAMES = ("scratch", "dent")


@pytest.mark.parametrize(("size", "tile", "overlap", "starts"), [
    ((416, 416), (416, 416), 0.2, [0]),
    ((300, 200), (416, 416), 0.2, [0]),               # smaller than a tile: one (letterboxed) tile
    ((1000, 416), (416, 416), 0.2, [0, 332, 584]),     # last tile ends on the frame edge
    ((832, 416), (416, 416), 0.0, [0, 416]),
    ((1600, 1600), (416, 416), 0.2, [0, 332, 664, 996, 1184]),
])
def test_tile_grid_covers_the_frame(size: tuple[int, int], tile: tuple[int, int], overlap: float,
                                    starts: list[int]) -> None:
    grid = tile_grid(*size, *tile, overlap)
    assert sorted(set(grid.origins[:, 0].tolist())) == starts
    covered = np.zeros(size[::-1], bool)
    for x, y in grid.origins.tolist():
        covered[y:y + tile[1], x:x + tile[0]] = True
    assert covered.all()


def _dets(rows: list[tuple[float, float, float, float, float, int]]) -> Detections:
    if not rows:
        return Detections.empty(NAMES)
    arr = np.array(rows, np.float32)
    return Detections(arr[:, :4], arr[:, 4], arr[:, 5].astype(np.int64), NAMES)


def test_merge_joins_a_box_cut_by_a_tile_border_and_drops_overlap_duplicates() -> None:
    grid = tile_grid(800, 416, 416, 416, 0.05)  # tiles at x = 0 and 384: overlap band 384..416
    assert grid.origins[:, 0].tolist() == [0, 384]
    left = _dets([(300, 100, 416, 140, 0.9, 0),   # a long scratch cut by the left tile's right border...
                  (390, 300, 410, 320, 0.8, 1)])  # a dent inside the overlap band, seen by both tiles
    right = _dets([(0, 101, 150, 139, 0.7, 0),    # ...goes on in the right tile (frame x 384..534)
                   (6, 300, 26, 320, 0.75, 1)])
    merged = merge_tiles([left, right], grid, NAMES)
    assert len(merged) == 2
    scratch = merged.xyxy[merged.class_id == 0]
    np.testing.assert_allclose(scratch, [[300, 100, 534, 140]])
    assert merged.confidence[merged.class_id == 0][0] == pytest.approx(0.9)


def test_merge_keeps_separate_boxes_of_other_classes_and_uncut_neighbours() -> None:
    grid = tile_grid(800, 416, 416, 416, 0.05)
    left = _dets([(100, 100, 150, 150, 0.9, 0), (120, 120, 160, 160, 0.8, 1)])  # overlapping, other classes
    right = _dets([(200, 200, 240, 240, 0.6, 0)])
    merged = merge_tiles([left, right], grid, NAMES)
    assert len(merged) == 3


def test_merge_does_not_join_a_cut_box_with_a_neighbour_that_does_not_go_on_past_the_cut() -> None:
    """Two defects side by side, one cut by the border: the other lies inside the cut box's extent (it does not
    reach past the cut edge), so it is not the rest of the cut one; both stay."""
    grid = tile_grid(800, 416, 416, 416, 0.05)
    left = _dets([(350, 100, 416, 160, 0.9, 0),    # cut at the left tile's right border (x = 416)
                  (300, 100, 380, 160, 0.8, 0)])   # lined up with it, overlapping, same class, ends before the cut
    merged = merge_tiles([left, _dets([])], grid, NAMES)
    assert len(merged) == 2
    np.testing.assert_allclose(np.sort(merged.xyxy[:, 0]), [300, 350])


def _mosaic() -> tuple[np.ndarray, list[np.ndarray]]:
    paths = sorted(NEU_IMAGES.glob("*.jpg"))[::100][:16] if NEU_IMAGES.is_dir() else []
    if len(paths) < 16:
        paths = (sorted(DEMO_FRAMES.glob("*.jpg")) * 2)[:16]
    images = [cv2.resize(cv2.imread(str(p)), (200, 200)) for p in paths]
    rows = [np.concatenate(images[r * 4:(r + 1) * 4], axis=1) for r in range(4)]
    return cv2.resize(np.concatenate(rows, axis=0), (1600, 1600), interpolation=cv2.INTER_LINEAR), images


def _recall(found: Detections, reference: list[tuple[np.ndarray, int]]) -> float:
    hits = 0
    for box, cls in reference:
        same = found.class_id == cls
        if same.any() and box_iou(box[None].astype(np.float64), found.xyxy[same].astype(np.float64)).max() >= 0.5:
            hits += 1
    return hits / len(reference)


def test_tiled_panel_finds_what_each_image_shows_alone() -> None:
    detector = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine="onnxruntime")
    panel, images = _mosaic()
    reference: list[tuple[np.ndarray, int]] = []
    for k, dets in enumerate(detector.detect(images)):
        origin = np.array([k % 4, k // 4, k % 4, k // 4], np.float32) * 400
        reference += [(box * 2 + origin, int(c)) for box, c, s in zip(dets.xyxy, dets.class_id, dets.confidence,
                                                                     strict=True) if s >= 0.4]
    assert len(reference) >= 8, "too few defects in the mosaic to compare"
    tiled = detect_tiled(detector, panel, 416, 416, overlap=0.2)
    whole = detector.detect([panel])[0]
    tiled_recall, whole_recall = _recall(tiled, reference), _recall(whole, reference)
    assert tiled_recall >= 0.6 and tiled_recall > whole_recall, (tiled_recall, whole_recall)
    assert (tiled.xyxy[:, 2:] <= 1600).all() and (tiled.xyxy >= 0).all()  # frame pixels


def test_a_tiling_profile_sends_large_frames_as_tile_batches() -> None:
    class CountingDetector:
        model_sha256, class_names, engine_name, precision = "a" * 64, NAMES, "fake", "fp32"
        input_size, max_batch = (64, 64), 8

        def __init__(self) -> None:
            self.batches: list[list[tuple[int, ...]]] = []

        def detect(self, images: list[np.ndarray], confidence: float | None = None) -> list[Detections]:
            self.batches.append([i.shape for i in images])
            return [_dets([(10, 10, 20, 20, 0.9, 0)]) for _ in images]

    class Orders:
        profile = InspectionProfile.model_validate({"name": "panel", "tiling": {"overlap": 0.25, "min_side_px": 100}})

        def get_order(self, order_id: str) -> tuple[object, InspectionProfile]:
            return object(), self.profile

        def unit_histories(self, unit_ids: list[str]) -> dict[str, object]:
            return {}

    detector = CountingDetector()
    inspector = Inspector(detector, Orders())  # type: ignore[arg-type]
    now = datetime(2026, 12, 2, tzinfo=UTC)
    big = Frame(np.zeros((112, 160, 3), np.uint8), camera_id="top", unit_id="U1", order_id="O1", captured_at=now)
    small = Frame(np.ones((64, 64, 3), np.uint8), camera_id="top", unit_id="U2", order_id="O1", captured_at=now)
    outcomes = inspector.inspect_frames([big, small])
    assert detector.batches[0] == [(64, 64, 3)]  # the small frame goes whole
    assert detector.batches[1] == [(64, 64, 3)] * 6  # 3 x 2 tiles of the large one, in one batch
    big_dets = outcomes[0].result.detections  # type: ignore[union-attr]
    assert big_dets is not None and len(big_dets) == 6  # one box per tile, at different panel places
    assert outcomes[0].result.verdict.engine == "fake"  # type: ignore[union-attr]


def test_profiles_without_tiling_keep_their_hash() -> None:
    plain = InspectionProfile.model_validate({"name": "p"})
    assert "tiling" not in plain.canonical()
    assert InspectionProfile.model_validate({"name": "p", "tiling": {}}).content_hash != plain.content_hash

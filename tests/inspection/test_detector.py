"""Detector: pure pre/post-processing tables (no model), then the tiny ONNX end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspection.detector import Letterbox, OnnxDetector, letterbox, post_process, pre_process
from inspection.engines import to_network_input
from inspection.errors import InvalidFrameError, ModelPackageError
from tests.builders import Candidate, solid_image, tiny_package

CLASSES = ("scratch", "dent")


@pytest.mark.parametrize(
    ("shape", "target", "gain", "pad"),
    [
        ((200, 200), (416, 416), 2.08, (0, 0)),
        ((100, 200), (64, 64), 0.32, (0, 16)),   # wide image: pad top/bottom
        ((200, 100), (64, 64), 0.32, (16, 0)),   # tall image: pad left/right
        ((64, 64), (64, 64), 1.0, (0, 0)),
        ((480, 640), (320, 320), 0.5, (0, 40)),
    ],
)
def test_letterbox_geometry(shape: tuple[int, int], target: tuple[int, int], gain: float,
                            pad: tuple[int, int]) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    boxed, info = letterbox(image, target[0], target[1])
    assert boxed.shape == (target[1], target[0], 3)
    assert info.gain == pytest.approx(gain)
    assert (info.pad_left, info.pad_top) == pad


def test_letterbox_pads_with_gray() -> None:
    boxed, info = letterbox(np.zeros((10, 20, 3), np.uint8), 32, 32)
    assert info.pad_top > 0
    assert (boxed[0, 0] == 114).all()
    assert (boxed[16, 16] == 0).all()


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 0, 3), np.uint8), np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
     np.zeros((10, 10, 4), np.uint8)],
    ids=["empty", "gray-2d", "float", "rgba"],
)
def test_letterbox_refuses_bad_images(bad: np.ndarray) -> None:
    with pytest.raises(InvalidFrameError):
        letterbox(bad, 32, 32)


def test_to_network_input_makes_rgb_nchw_unit_range() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    batch, infos = pre_process([image, image], 32, 32)
    assert batch.shape == (2, 32, 32, 3) and batch.dtype == np.uint8  # what every engine takes
    tensor = to_network_input(batch)
    assert tensor.shape == (2, 3, 32, 32) and tensor.dtype == np.float32
    assert tensor[0, 2].max() == pytest.approx(1.0)  # blue is channel 2 in RGB
    assert tensor[0, 0].max() == 0.0
    assert len(infos) == 2


@pytest.mark.parametrize(("shape", "target"), [((200, 200), (416, 416)), ((100, 200), (64, 64)),
                                               ((200, 100), (64, 64)), ((37, 91), (96, 64)), ((64, 64), (64, 64))])
def test_pre_process_batch_slots_equal_letterbox(shape: tuple[int, int], target: tuple[int, int]) -> None:
    """Writing each image straight into its batch slot gives exactly what ``letterbox`` makes on its own."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (*shape, 3), dtype=np.uint8) for _ in range(3)]
    batch, infos = pre_process(images, *target)
    for image, slot, info in zip(images, batch, infos, strict=True):
        boxed, expected = letterbox(image, *target)
        np.testing.assert_array_equal(slot, boxed)
        assert info == expected


def _raw_output(rows: list[tuple[float, float, float, float, int, float]], nc: int = 2) -> np.ndarray:
    out = np.zeros((1, 4 + nc, len(rows)), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = score
    return out


IDENTITY = Letterbox(gain=1.0, pad_left=0, pad_top=0, orig_width=100, orig_height=100)


@pytest.mark.parametrize(
    ("rows", "expected_classes"),
    [
        ([], []),
        ([(50, 50, 20, 20, 0, 0.9)], ["scratch"]),
        ([(50, 50, 20, 20, 0, 0.1)], []),                                  # below confidence
        ([(50, 50, 20, 20, 0, 0.9), (51, 51, 20, 20, 0, 0.8)], ["scratch"]),  # same class overlap: NMS
        ([(50, 50, 20, 20, 0, 0.9), (51, 51, 20, 20, 1, 0.8)], ["scratch", "dent"]),  # class-aware
        ([(20, 20, 10, 10, 1, 0.5), (80, 80, 10, 10, 1, 0.7)], ["dent", "dent"]),
    ],
)
def test_post_process_threshold_and_class_aware_nms(rows: list, expected_classes: list[str]) -> None:
    [dets] = post_process(_raw_output(rows), [IDENTITY], CLASSES, confidence=0.25, iou=0.45, max_detections=10)
    assert [dets.class_name(i) for i in range(len(dets))] == expected_classes
    assert list(dets.confidence) == sorted(dets.confidence, reverse=True)


def test_post_process_maps_boxes_back_through_letterbox() -> None:
    info = Letterbox(gain=0.5, pad_left=0, pad_top=40, orig_width=640, orig_height=480)
    [dets] = post_process(_raw_output([(100, 140, 40, 20, 0, 0.9)]), [info], CLASSES,
                          confidence=0.25, iou=0.45, max_detections=10)
    np.testing.assert_allclose(dets.xyxy[0], [160, 180, 240, 220])


def test_post_process_clips_to_image_and_caps_per_image() -> None:
    rows = [(5 + 10 * i, 5, 8, 8, 0, 0.9 - i * 0.01) for i in range(10)] + [(98, 98, 20, 20, 1, 0.95)]
    [dets] = post_process(_raw_output(rows), [IDENTITY], CLASSES, confidence=0.25, iou=0.45, max_detections=3)
    assert len(dets) == 3
    assert dets.xyxy.max() <= 100


def test_post_process_keeps_images_of_a_batch_apart() -> None:
    out = np.concatenate([_raw_output([(50, 50, 20, 20, 0, 0.9)]), _raw_output([(50, 50, 20, 20, 0, 0.6)])])
    a, b = post_process(out, [IDENTITY, IDENTITY], CLASSES, confidence=0.25, iou=0.45, max_detections=10)
    assert len(a) == 1 and len(b) == 1  # identical boxes in two images do not suppress each other
    assert b.confidence[0] == pytest.approx(0.6)


def test_post_process_rejects_output_of_another_head() -> None:
    with pytest.raises(ModelPackageError, match="does not match"):
        post_process(np.zeros((1, 7, 5), np.float32), [IDENTITY], CLASSES, confidence=0.25, iou=0.45,
                     max_detections=10)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9), Candidate(10, 10, 8, 8, 1, 0.5)])


def test_detector_runs_a_package_in_batches(package: Path) -> None:
    detector = OnnxDetector.from_package(package, max_batch=2)
    detector.warmup()
    white, black = solid_image(255, 128, 64), solid_image(0, 128, 64)
    results = detector.detect([white, black, white])
    assert [len(r) for r in results] == [2, 0, 2]
    # the 64 px input holds a 128x64 frame at gain 0.5, padded 16 px top: (32, 32) maps to (64, 32)
    np.testing.assert_allclose(results[0].xyxy[0], [48, 16, 80, 48], atol=1e-4)
    assert results[0].class_name(0) == "scratch"


def test_static_batch_models_run_one_image_at_a_time(tmp_path: Path) -> None:
    pkg = tiny_package(tmp_path / "static", [Candidate(32, 32, 16, 16, 0, 0.9)], static_batch=True)
    results = OnnxDetector.from_package(pkg).detect([solid_image(255)] * 3)
    assert [len(r) for r in results] == [1, 1, 1]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "model.onnx").write_bytes((p / "model.onnx").read_bytes() + b"x"), "sha256"),
        (lambda p: (p / "model.onnx").unlink(), "no model.onnx"),
        (lambda p: (p / "metadata.json").unlink(), "no metadata.json"),
        (lambda p: (p / "metadata.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "metadata.json").write_text(json.dumps({"name": "x"})), "missing the field"),
        (lambda p: _edit_meta(p, classes=["a", "b", "c"]), "classes"),
        (lambda p: _edit_meta(p, input_width=50), "multiples of 32"),
        (lambda p: _edit_meta(p, classes=[]), "non-empty"),
    ],
    ids=["tampered-onnx", "missing-onnx", "missing-metadata", "bad-json", "missing-field", "class-count",
         "input-size", "no-classes"],
)
def test_broken_packages_are_refused_with_a_reason(package: Path, damage, message: str) -> None:
    damage(package)
    with pytest.raises(ModelPackageError, match=message):
        OnnxDetector.from_package(package)


def _edit_meta(package: Path, **changes: object) -> None:
    meta = json.loads((package / "metadata.json").read_text())
    meta.update(changes)
    (package / "metadata.json").write_text(json.dumps(meta))


def test_not_a_package_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="not a folder"):
        OnnxDetector.from_package(tmp_path / "nope")


def test_batch_buffers_keep_one_array_per_input_size() -> None:
    """Every batch size from 1 to 8 (a micro-batcher meets them all) reuses the largest array's leading slice."""
    from inspection.detector import _BatchBuffers, pre_process

    buffers = _BatchBuffers()
    images = [np.full((20, 30, 3), v, np.uint8) for v in range(8)]
    big, _ = pre_process(images, 32, 32, buffers=buffers)
    big = big.copy()
    small, _ = pre_process(images[:3], 32, 32, buffers=buffers)
    assert len(buffers.arrays) == 1 and small.shape == (3, 32, 32, 3) and small.flags.c_contiguous
    np.testing.assert_array_equal(small, big[:3])
    assert np.shares_memory(small, buffers.arrays[(32, 32)])


def test_reused_batch_slots_get_their_borders_again() -> None:
    """A slot that held a full-size image before is padded again for a letterboxed one (borders only are
    filled, so every border must be)."""
    from inspection.detector import _BatchBuffers

    rng = np.random.default_rng(1)
    buffers = _BatchBuffers()
    pre_process([rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)], 64, 64, buffers=buffers)
    for shape in ((20, 64), (64, 20), (31, 17)):
        images = [rng.integers(0, 255, (*shape, 3), dtype=np.uint8) for _ in range(2)]
        batch, _ = pre_process(images, 64, 64, buffers=buffers)
        for image, slot in zip(images, batch, strict=True):
            np.testing.assert_array_equal(slot, letterbox(image, 64, 64)[0])

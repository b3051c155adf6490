"""Test-time augmentation: the package option's validation, flipped views in one batch, un-flip and fusion."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from inspection.detector import OnnxDetector, pre_process
from inspection.errors import ModelPackageError
from inspection.model_package import METADATA_FILE, TTA, ModelMetadata, ModelPackage
from tests.builders import Candidate, solid_image, tiny_package

CLASSES = ("scratch", "dent")
SIZE = 64


def _metadata(**changes: Any) -> ModelMetadata:
    return ModelMetadata(name="m", classes=CLASSES, input_width=SIZE, input_height=SIZE, sha256="0" * 64, **changes)


# -- the option in metadata.json -------------------------------------------------------------------------

@pytest.mark.parametrize(("tta", "message"), [
    ({"flips": ["rot90"]}, "unknown flip 'rot90'"),
    ({"flips": []}, "non-empty"),
    ({"flips": "hflip"}, "must be a list"),
    ({"flips": [1]}, "must be a list"),
    ({"flips": ["hflip", "hflip"]}, "duplicates"),
    ({"fusion": "nms"}, "tta.fusion 'nms' is not one of wbf"),
    ({"iou": 0}, r"tta.iou must be a number in \(0, 1\]"),
    ({"iou": 1.5}, r"tta.iou must be a number in \(0, 1\]"),
    ({"iou": "0.5"}, "tta.iou must be a number"),
    ({"iou": True}, "tta.iou must be a number"),
    ({"flips": ["hflip"], "iuo": 0.5}, "unknown field 'iuo'"),
    ("hflip", "must be an object"),
], ids=["unknown-flip", "no-flips", "flips-string", "flips-int", "duplicate", "fusion", "iou-0", "iou-1.5",
        "iou-string", "iou-bool", "misspelt-key", "not-object"])
def test_bad_tta_options_are_refused_with_a_reason(tta: Any, message: str) -> None:
    raw = {**_metadata().to_json(), "tta": tta}
    with pytest.raises(ModelPackageError, match=message):
        ModelMetadata.from_json(raw)


def test_the_option_round_trips_and_its_absence_changes_nothing() -> None:
    plain = _metadata()
    assert "tta" not in plain.to_json()  # a package without the option writes what it always did
    assert ModelMetadata.from_json(plain.to_json()).tta is None
    raw = {**plain.to_json(), "tta": {"flips": ["hflip", "vflip"], "iou": 0.6}}
    loaded = ModelMetadata.from_json(raw)
    assert loaded.tta == TTA(flips=("hflip", "vflip"), fusion="wbf", iou=0.6) and loaded.tta.views == 3
    assert ModelMetadata.from_json(loaded.to_json()) == loaded
    assert loaded.to_json()["tta"] == {"flips": ["hflip", "vflip"], "fusion": "wbf", "iou": 0.6}


@pytest.mark.parametrize(("spec", "flips"), [("hflip", ("hflip",)), ("hflip,vflip", ("hflip", "vflip")),
                                             (" HFLIP , hvflip ", ("hflip", "hvflip")), ("off", None),
                                             ("none", None)])
def test_a_command_lines_spec(spec: str, flips: tuple[str, ...] | None) -> None:
    tta = TTA.from_spec(spec)
    assert (tta.flips if tta else None) == flips


def test_flips_given_as_a_list_are_held_as_a_tuple() -> None:
    assert TTA(flips=["vflip"]) == TTA(flips=("vflip",))  # type: ignore[arg-type]


def test_a_bad_spec_names_the_flip() -> None:
    with pytest.raises(ModelPackageError, match="unknown flip 'rot'"):
        TTA.from_spec("hflip,rot")


def test_a_package_with_the_option_loads_with_its_sha256_unchanged(tmp_path: Path) -> None:
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)])
    before = ModelPackage.load(package).metadata
    meta_path = package / METADATA_FILE
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "tta": {"flips": ["hflip"]}}))
    after = ModelPackage.load(package).metadata  # verify=True: the ONNX bytes still match
    assert after.tta == TTA() and after.sha256 == before.sha256 and replace(after, tta=None) == before


# -- views in the batch, un-flipped and fused --------------------------------------------------------------

class BrightBoxEngine:
    """A fake engine that 'sees': per image, one box around its bright pixels (> 200), class 0 at ``score``
    (or, with ``only_even``, only in images of even batch index). Records the batch sizes it was handed."""

    name, precision = "fake", "fp32"
    output_shape = (None, 4 + len(CLASSES), 1)

    def __init__(self, score: float = 0.9, *, only_even: bool = False) -> None:
        self.score, self.only_even, self.batches, self.seen = score, only_even, [], 0
        self.images: list[npt.NDArray[np.uint8]] = []

    def forward(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        self.batches.append(batch.shape[0])
        out = np.zeros((batch.shape[0], 4 + len(CLASSES), 1), np.float32)
        for i, image in enumerate(batch):
            self.images.append(image.copy())
            ys, xs = np.nonzero(image[..., 0] > 200)
            index, self.seen = self.seen, self.seen + 1
            if not len(xs) or (self.only_even and index % 2):
                continue
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1  # pixel edges, exact
            out[i, :4, 0] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
            out[i, 4, 0] = self.score
        return out


def _frame_with_box(x1: int, y1: int, x2: int, y2: int, *, width: int = SIZE, height: int = 48) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[y1:y2, x1:x2] = 255
    return frame


@pytest.mark.parametrize("flips", [("hflip",), ("vflip",), ("hvflip",), ("hflip", "vflip", "hvflip")])
def test_unflipped_views_fuse_to_the_exact_box(flips: tuple[str, ...]) -> None:
    """A 64x48 frame in the 64x64 input (8 px padding top and bottom), an off-centre object: every view finds
    it where the flip put it; un-flipped in letterbox pixels they coincide, so the fused box is the object."""
    engine = BrightBoxEngine()
    detector = OnnxDetector(engine, _metadata(tta=TTA(flips=flips)), max_batch=8)
    [dets] = detector.detect([_frame_with_box(5, 3, 25, 20)])
    assert engine.batches == [1 + len(flips)]
    assert len(dets) == 1
    np.testing.assert_allclose(dets.xyxy[0], [5, 3, 25, 20], atol=1e-5)
    assert dets.confidence[0] == pytest.approx(0.9)


def test_the_batch_holds_the_flipped_copies_view_major() -> None:
    frames = [_frame_with_box(5, 3, 25, 20), _frame_with_box(40, 30, 60, 44)]
    batch, boxes = pre_process(frames, SIZE, SIZE, flips=("hflip", "vflip"))
    assert batch.shape == (6, SIZE, SIZE, 3) and len(boxes) == 2
    np.testing.assert_array_equal(batch[2], batch[0][:, ::-1])
    np.testing.assert_array_equal(batch[3], batch[1][:, ::-1])
    np.testing.assert_array_equal(batch[4], batch[0][::-1])
    np.testing.assert_array_equal(batch[5], batch[1][::-1])


@pytest.mark.parametrize(("frames", "max_batch", "calls"), [
    (2, 8, [4]),  # 2 frames x 2 views: one engine call of twice the frames
    (8, 8, [8, 8]),  # a full batch with hflip is 16 images: two calls of the engine's 8
    (3, 2, [2, 2, 2]),  # frames in passes of 2 (4 images: 2 calls), then 1 (2 images: 1 call)
], ids=["2x", "full-batch", "small-engine"])
def test_tta_doubles_the_engine_batch_within_max_batch(frames: int, max_batch: int, calls: list[int]) -> None:
    engine = BrightBoxEngine()
    detector = OnnxDetector(engine, _metadata(tta=TTA()), max_batch=max_batch)
    results = detector.detect([_frame_with_box(5, 3, 25, 20)] * frames)
    assert engine.batches == calls and max(engine.batches) <= max_batch
    assert sum(engine.batches) == 2 * frames and len(results) == frames
    assert all(len(r) == 1 for r in results)


def test_each_frame_keeps_its_own_views() -> None:
    engine = BrightBoxEngine()
    detector = OnnxDetector(engine, _metadata(tta=TTA()), max_batch=8)
    a, b = detector.detect([_frame_with_box(5, 3, 25, 20), _frame_with_box(40, 30, 60, 44)])
    np.testing.assert_allclose(a.xyxy, [[5, 3, 25, 20]], atol=1e-5)
    np.testing.assert_allclose(b.xyxy, [[40, 30, 60, 44]], atol=1e-5)


def test_an_object_one_view_of_two_saw_keeps_half_its_score() -> None:
    """Images 0 (the frame) sees it at 0.9, image 1 (its hflip) does not: fused score 0.45, kept at confidence
    0.25 and dropped at 0.5 (the threshold applies to the fused score)."""
    frame = _frame_with_box(5, 3, 25, 20)
    [dets] = OnnxDetector(BrightBoxEngine(only_even=True), _metadata(tta=TTA()), max_batch=8).detect([frame])
    assert dets.confidence.tolist() == pytest.approx([0.45])
    [dropped] = OnnxDetector(BrightBoxEngine(only_even=True), _metadata(tta=TTA()), max_batch=8).detect(
        [frame], confidence=0.5)
    assert len(dropped) == 0


def test_without_the_option_nothing_changes() -> None:
    engine = BrightBoxEngine(only_even=True)
    [dets] = OnnxDetector(engine, _metadata(), max_batch=8).detect([_frame_with_box(5, 3, 25, 20)])
    assert engine.batches == [1] and dets.confidence.tolist() == pytest.approx([0.9])


def test_from_package_evaluates_another_setting_without_editing_the_package(tmp_path: Path) -> None:
    """The tiny ONNX model puts its box at the same input pixels whatever it sees: in the hflip view that is
    the mirror place, so an off-centre candidate becomes two boxes at half score; a centred one stays one."""
    package = tiny_package(tmp_path / "pkg", [Candidate(16, 32, 10, 10, 0, 0.9), Candidate(32, 32, 8, 8, 1, 0.8)])
    written = (package / METADATA_FILE).read_text()
    detector = OnnxDetector.from_package(package, tta=TTA(), max_batch=4)
    assert detector.tta == TTA() and ModelPackage.load(package).metadata.tta is None
    [dets] = detector.detect([solid_image(255)])
    rows = sorted(zip(dets.class_id.tolist(), dets.confidence.tolist(), dets.xyxy.tolist(), strict=True))
    assert [(c, round(s, 4)) for c, s, _ in rows] == [(0, 0.45), (0, 0.45), (1, 0.8)]
    np.testing.assert_allclose([xyxy for _, _, xyxy in rows], [[11, 27, 21, 37], [43, 27, 53, 37], [28, 28, 36, 36]],
                               atol=1e-4)
    assert (package / METADATA_FILE).read_text() == written
    assert OnnxDetector.from_package(package, tta=None).tta is None

"""Evaluation on a snapshot's test split reads the test images only; ``exclude`` and ``training_overlap``."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets.formats.voc import import_voc
from datasets.snapshot import Snapshot, build_snapshot
from inspection.detector import OnnxDetector
from inspection.errors import DatasetError
from models.evaluation import evaluate_package, training_overlap
from tests.builders import Candidate, solid_image, tiny_package, write_image

XML = ("<annotation><filename>{name}</filename><size><width>64</width><height>64</height><depth>3</depth></size>"
       "<object><name>scratch</name><bndbox><xmin>22</xmin><ymin>22</ymin><xmax>42</xmax><ymax>42</ymax></bndbox>"
       "</object></annotation>")


def white_voc(root: Path, n: int) -> Path:
    """``n`` distinct white-ish 64 x 64 images, each with one scratch where the tiny model sees one."""
    for i in range(n):
        write_image(root / "images" / f"s{i}.png", solid_image(255 - i))  # distinct content, distinct sha256
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"s{i}.xml").write_text(XML.format(name=f"s{i}.png"))
    return root


def three_way(tmp_path: Path, n: int = 20) -> Snapshot:
    return build_snapshot(import_voc(white_voc(tmp_path / "voc", n)), val_fraction=0.25, test_fraction=0.25)


@pytest.fixture
def detector(tmp_path: Path) -> OnnxDetector:
    return OnnxDetector.from_package(tiny_package(tmp_path / "pkg", [Candidate(32, 32, 20, 20, 0, 0.9)]),
                                     engine="onnxruntime")


def test_evaluating_the_test_split_reads_only_test_images(tmp_path: Path, detector: OnnxDetector) -> None:
    snapshot = three_way(tmp_path)
    for entry in (*snapshot.split("train"), *snapshot.split("val")):
        entry.image.path.unlink()  # any read of a train or val image would now fail
    metrics = evaluate_package(detector, snapshot, split="test")
    assert metrics.images == len(snapshot.split("test")) == 5 and metrics.instances == 5
    assert metrics.map50 > 0.99
    with pytest.raises(DatasetError, match="cannot read"):
        evaluate_package(detector, snapshot, split="val")


def test_excluded_images_are_left_out_and_excluding_all_is_an_error(tmp_path: Path,
                                                                    detector: OnnxDetector) -> None:
    snapshot = three_way(tmp_path)
    test = snapshot.split("test")
    metrics = evaluate_package(detector, snapshot, split="test", exclude={test[0].image.sha256})
    assert metrics.images == len(test) - 1
    with pytest.raises(DatasetError, match="outside the excluded"):
        evaluate_package(detector, snapshot, split="test", exclude={e.image.sha256 for e in test})


def test_a_two_way_snapshot_has_no_test_split_to_evaluate(tmp_path: Path, detector: OnnxDetector) -> None:
    snapshot = build_snapshot(import_voc(white_voc(tmp_path / "voc", 6)))
    with pytest.raises(DatasetError, match="no 'test' images"):
        evaluate_package(detector, snapshot, split="test")


def test_training_overlap_says_where_the_evaluated_images_sat(tmp_path: Path) -> None:
    result = import_voc(white_voc(tmp_path / "voc", 20))
    old = build_snapshot(result, val_fraction=0.5)
    new = build_snapshot(result, val_fraction=0.25, test_fraction=0.25)
    assert training_overlap(old, new, "test") == {"train": 0, "val": 5, "test": 0, "absent": 0}
    assert training_overlap(new, old, "val") == {"train": 0, "val": 5, "test": 5, "absent": 0}
    assert training_overlap(old, new, "train") == {"train": 10, "val": 0, "test": 0, "absent": 0}
    only_train = Snapshot(new.classes, new.split("train"))
    assert training_overlap(only_train, new, "test") == {"train": 0, "val": 0, "test": 0, "absent": 5}

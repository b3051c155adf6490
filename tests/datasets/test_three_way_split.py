"""Train / val / test snapshots: stratified, deterministic, disjoint, recorded in the id; two-way ones unchanged."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from datasets.export import export_coco, export_yolo
from datasets.formats.voc import import_voc
from datasets.records import ImportResult, LabeledBox, LabeledImage
from datasets.snapshot import Snapshot, SplitRule, assign_splits, build_snapshot, compose_snapshot
from inspection.errors import DatasetError
from tests.datasets.test_voc_and_snapshot import make_voc


def images(per_class: dict[str, int], *, salt: str = "") -> tuple[LabeledImage, ...]:
    """Labeled images (no files) with one box each, ``per_class[name]`` of each class."""
    out = []
    for name, n in per_class.items():
        for i in range(n):
            sha = hashlib.sha256(f"{salt}{name}-{i}".encode()).hexdigest()
            out.append(LabeledImage(Path(f"/nowhere/{name}_{i}.jpg"), 100, 80,
                                    (LabeledBox.of(name, 10, 10, 40, 30),), sha))
    return tuple(out)


COUNTS = {"crazing": 40, "patches": 25, "scratches": 11}


def test_the_three_way_split_is_stratified_by_primary_class() -> None:
    snapshot = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2)
    per = Counter((e.image.boxes[0].class_name, e.split) for e in snapshot.entries)
    for name, n in COUNTS.items():
        assert per[name, "test"] == round(n * 0.2)
        assert per[name, "val"] == round(n * 0.15)
        assert per[name, "train"] == n - round(n * 0.2) - round(n * 0.15)
    assert snapshot.split_counts() == {"train": 49, "val": 12, "test": 15}
    assert snapshot.split_rule == SplitRule(0.15, 0.2, "qcline")


def test_the_split_is_disjoint_and_covers_every_image_once() -> None:
    snapshot = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2)
    by_split = {name: {e.image.sha256 for e in snapshot.split(name)} for name in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    assert set().union(*by_split.values()) == {im.sha256 for im in images(COUNTS)}


def test_the_split_depends_only_on_content_and_seed() -> None:
    forward = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2)
    renamed = tuple(LabeledImage(Path(f"/elsewhere/x{i}.png"), im.width, im.height, im.boxes, im.sha256)
                    for i, im in enumerate(reversed(images(COUNTS))))
    backward = build_snapshot(ImportResult(renamed), val_fraction=0.15, test_fraction=0.2)
    assert backward.id == forward.id
    assert {e.image.sha256: e.split for e in backward.entries} == {e.image.sha256: e.split for e in forward.entries}
    reseeded = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2, seed="other")
    assert reseeded.id != forward.id
    assert {e.image.sha256 for e in reseeded.split("test")} != {e.image.sha256 for e in forward.split("test")}


def test_the_rule_is_part_of_the_id_and_survives_the_manifest(tmp_path: Path) -> None:
    snapshot = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2)
    same_splits_other_rule = Snapshot(snapshot.classes, snapshot.entries, split_rule=SplitRule(0.1, 0.2))
    assert same_splits_other_rule.id != snapshot.id  # the recorded fractions are covered, not just the splits
    loaded = Snapshot.load(snapshot.save(tmp_path))
    assert loaded.id == snapshot.id and loaded.split_rule == snapshot.split_rule
    manifest = tmp_path / snapshot.id / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["split_rule"]["test_fraction"] = 0.1  # someone edits the recorded rule
    manifest.write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match="altered"):
        Snapshot.load(manifest)


def _old_id(raw: dict[str, object]) -> str:
    """The id formula of two-way snapshots before test splits existed (classes + images, parent when set)."""
    entries = raw["entries"]
    assert isinstance(entries, list)
    content = {"classes": raw["classes"], "images": sorted(
        ({"sha256": e["sha256"], "split": e["split"], "size": [e["width"], e["height"]],
          "boxes": [[b[0], *(round(float(v), 2) for v in b[1:5])] for b in e["boxes"]]} for e in entries),
        key=lambda item: str(item["sha256"]))}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_old_two_way_manifests_load_with_the_ids_they_always_had(tmp_path: Path) -> None:
    two_way = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.2)
    assert two_way.split_rule is None and not two_way.has_test and set(two_way.split_counts()) == {"train", "val"}
    raw = two_way.to_json()
    assert "split_rule" not in raw
    # a manifest as an older qcline wrote it: no split_rule, no split_origin, its id by the old formula
    old = {k: v for k, v in raw.items() if k not in ("split_origin",)}
    old["id"] = _old_id(old)
    path = tmp_path / "old" / "manifest.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old))
    loaded = Snapshot.load(path)
    assert loaded.id == old["id"] == two_way.id
    assert loaded.split_rule is None and loaded.split_counts() == {"train": 61, "val": 15}


def test_with_one_seed_the_test_split_is_carved_from_the_two_way_val_split() -> None:
    """So a model trained on the older two-way split never trained on the new test images."""
    two_way = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.2)
    three_way = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2)
    assert {e.image.sha256 for e in three_way.split("test")} == {e.image.sha256 for e in two_way.split("val")}
    smaller = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.1)
    assert {e.image.sha256 for e in smaller.split("test")} < {e.image.sha256 for e in two_way.split("val")}


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (0.9, 0.2), (-0.1, 0.2), (0.2, 1.0)])
def test_fractions_that_leave_no_train_images_are_refused(val: float, test: float) -> None:
    with pytest.raises(DatasetError):
        assign_splits(images(COUNTS), val_fraction=val, test_fraction=test)


def test_a_test_split_is_drawn_by_content_only(tmp_path: Path) -> None:
    result = ImportResult(images({"a": 10}), splits={im.sha256: "train" for im in images({"a": 10})})
    with pytest.raises(DatasetError, match="resplit"):
        build_snapshot(result, test_fraction=0.2)
    assert build_snapshot(result, test_fraction=0.2, resplit=True).split_counts()["test"] == 2


def test_a_child_draws_new_images_by_its_parents_rule() -> None:
    parent = build_snapshot(ImportResult(images(COUNTS)), val_fraction=0.15, test_fraction=0.2)
    added = images({"crazing": 20}, salt="new")
    child = compose_snapshot(parent, ImportResult(added), val_fraction=0.5)  # the parent's rule wins
    assert child.split_rule == parent.split_rule and child.parent == parent.id
    new = {im.sha256 for im in added}
    counts = Counter(e.split for e in child.entries if e.image.sha256 in new)
    assert counts == {"test": 4, "val": 3, "train": 13}
    kept = {e.image.sha256: e.split for e in parent.entries}
    assert all(e.split == kept[e.image.sha256] for e in child.entries if e.image.sha256 in kept)


def test_unknown_split_names_in_a_manifest_are_refused(tmp_path: Path) -> None:
    snapshot = build_snapshot(ImportResult(images({"a": 5})), val_fraction=0.2)
    raw = snapshot.to_json()
    raw["entries"][0]["split"] = "holdout"
    del raw["id"]
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match="unknown split"):
        Snapshot.load(tmp_path)


def test_yolo_export_writes_each_split_and_ultralytics_validates_on_val_only(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", {f"{c}{i}": [(c, 5, 5, 40, 30)] for c in ("a", "b") for i in range(10)})
    snapshot = build_snapshot(import_voc(root), val_fraction=0.2, test_fraction=0.3)
    data = yaml.safe_load(export_yolo(snapshot, tmp_path / "yolo").read_text())
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/val", "images/test")
    for split in ("train", "val", "test"):
        listed = {p.name.rsplit("_", 1)[1].split(".")[0] for p in (tmp_path / "yolo" / "images" / split).iterdir()}
        assert listed == {e.image.sha256[:12] for e in snapshot.split(split)}
        assert len(list((tmp_path / "yolo" / "labels" / split).iterdir())) == len(snapshot.split(split))
    coco = export_coco(snapshot, tmp_path / "coco")
    test_doc = json.loads((coco / "annotations" / "instances_test.json").read_text())
    assert len(test_doc["images"]) == len(snapshot.split("test")) == 6
    two_way = yaml.safe_load(export_yolo(build_snapshot(import_voc(root)), tmp_path / "yolo2").read_text())
    assert "test" not in two_way

"""Real downloads import as published: the yaml one folder down or named by path, its path/train/val/test keys,
and the source's own split kept (YOLO, COCO with one file per split, VOC ImageSets/Main); --resplit opts out."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from api.cli.datasets import datasets_app
from datasets.formats import import_dataset
from datasets.library import DatasetLibrary, ImportOutcome
from inspection.errors import DatasetError

_counter = iter(range(1, 10_000))


def image(path: Path) -> Path:
    """A distinct 40x30 PNG (a different grey level per call, so every sha256 differs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((30, 40, 3), next(_counter) % 250, np.uint8))
    return path


def yolo_split(images: Path, labels: Path, names: list[str], n: int, cls: int = 0) -> list[Path]:
    made = []
    for i in range(n):
        made.append(image(images / f"{images.parent.name}-{images.name}-{i}.png"))
        labels.mkdir(parents=True, exist_ok=True)
        (labels / f"{images.parent.name}-{images.name}-{i}.txt").write_text(f"{cls} 0.5 0.5 0.2 0.2\n")
    return made


def splits_by_name(library: DatasetLibrary, outcome: ImportOutcome) -> dict[str, str]:
    """Original file name -> the split its image got in the registered snapshot (the library renames files)."""
    by_sha = {e.image.sha256: e.split for e in library.get(outcome.snapshot.id).entries}
    return {im.path.name: by_sha[im.sha256] for im in outcome.result.images}


def published_yolo(root: Path) -> Path:
    """``root/Datasets/data.yaml`` + ``root/Datasets/images/{train,val}`` (the issue's layout)."""
    ds = root / "Datasets"
    yolo_split(ds / "images" / "train", ds / "labels" / "train", ["pit"], 5)
    yolo_split(ds / "images" / "val", ds / "labels" / "val", ["pit"], 2, cls=1)
    (ds / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: pit, 1: scratch}\n")
    return ds


def test_yolo_yaml_one_folder_down_keeps_the_source_split(tmp_path: Path) -> None:
    ds = published_yolo(tmp_path / "dl")
    library = DatasetLibrary(tmp_path / "lib")
    outcome = library.import_path(tmp_path / "dl")      # the folder the user unpacked, yaml one level down
    snap = outcome.snapshot
    assert snap.classes == ("pit", "scratch")
    assert (len(snap.split("train")), len(snap.split("val"))) == (5, 2)
    assert all(e.image.boxes[0].class_name == "scratch" for e in snap.split("val"))  # exactly the source's val
    assert snap.split_origin == "source" and library.get(snap.id).split_origin == "source"
    assert any("data.yaml" in line for line in outcome.result.found)
    by_path = library.import_path(ds / "data.yaml")     # a path to data.yaml itself
    assert by_path.snapshot.id == snap.id
    resplit = library.import_path(tmp_path / "dl", resplit=True, val_fraction=0.5)
    assert resplit.snapshot.split_origin == "content" and resplit.snapshot.id != snap.id


def test_roboflow_layout_relative_paths_and_test_split(tmp_path: Path) -> None:
    root = tmp_path / "rf"
    yolo_split(root / "train" / "images", root / "train" / "labels", ["a"], 4)
    yolo_split(root / "valid" / "images", root / "valid" / "labels", ["a"], 2)
    yolo_split(root / "test" / "images", root / "test" / "labels", ["a"], 1)
    (root / "README.roboflow.txt").write_text("exported from roboflow")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                    "nc: 1\nnames: ['dent']\n")
    result = import_dataset(root)
    assert sorted(result.splits.values()).count("train") == 4 and sorted(result.splits.values()).count("val") == 2
    assert [i.reason for i in result.skipped] == ["in the source's test split (kept out: the source has its own "
                                                  "val split)"]
    assert any("test kept out" in line for line in result.found)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("path: /nowhere/on/this/machine\ntrain: images/train\nval: images/val\nnames: [pit, scratch]\n", (5, 2)),
        ("train: train.txt\nval: val.txt\nnames: [pit, scratch]\n", (2, 1)),
        ("train: [images/train]\nval: [images/val, images/extra]\nnames: [pit, scratch]\n", (5, 3)),
        ("test: images/val\nnames: [pit, scratch]\ntrain: images/train\n", (5, 2)),   # test is val when no val
    ],
    ids=["absolute-path-from-another-machine", "txt-lists", "lists-of-folders", "test-without-val"],
)
def test_yolo_yaml_keys_are_resolved(tmp_path: Path, yaml_text: str, expected: tuple[int, int]) -> None:
    ds = published_yolo(tmp_path)
    yolo_split(ds / "images" / "extra", ds / "labels" / "extra", ["pit"], 1)
    train = sorted((ds / "images" / "train").iterdir())[:2]
    (ds / "train.txt").write_text("".join(f"./images/train/{p.name}\n" for p in train))
    (ds / "val.txt").write_text(f"images/val/{sorted((ds / 'images' / 'val').iterdir())[0].name}\n")
    (ds / "data.yaml").write_text(yaml_text)
    library = DatasetLibrary(tmp_path / "lib")
    snap = library.import_path(ds / "data.yaml").snapshot
    assert (len(snap.split("train")), len(snap.split("val"))) == expected


def test_yolo_without_yaml_uses_the_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    yolo_split(root / "images" / "train", root / "labels" / "train", ["x"], 3)
    yolo_split(root / "images" / "valid", root / "labels" / "valid", ["x"], 1)
    (root / "classes.txt").write_text("pit\n")
    result = import_dataset(root, "yolo")
    assert sorted(result.splits.values()) == ["train", "train", "train", "val"]


def test_two_yaml_files_one_level_down_are_ambiguous(tmp_path: Path) -> None:
    published_yolo(tmp_path / "dl")
    (tmp_path / "dl" / "Other").mkdir()
    (tmp_path / "dl" / "Other" / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(DatasetError, match="several dataset yaml"):
        import_dataset(tmp_path / "dl", "yolo")


def coco_file(path: Path, images: list[Path], category: str = "pit") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"images": [{"id": i, "file_name": p.name, "width": 40, "height": 30} for i, p in enumerate(images)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [5, 5, 10, 10]}
                            for i in range(len(images))],
            "categories": [{"id": 1, "name": category}]}
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("layout", ["instances-files", "roboflow-folders"])
def test_coco_with_one_file_per_split_keeps_it(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "coco"
    if layout == "instances-files":
        train = [image(root / "images" / f"t{i}.png") for i in range(3)]
        val = [image(root / "images" / f"v{i}.png") for i in range(2)]
        coco_file(root / "annotations" / "instances_train2017.json", train)
        coco_file(root / "annotations" / "instances_val2017.json", val)
    else:
        train = [image(root / "train" / f"t{i}.png") for i in range(3)]
        val = [image(root / "valid" / f"v{i}.png") for i in range(2)]
        coco_file(root / "train" / "_annotations.coco.json", train)
        coco_file(root / "valid" / "_annotations.coco.json", val)
    library = DatasetLibrary(tmp_path / "lib")
    outcome = library.import_path(root)
    snap = outcome.snapshot
    splits = splits_by_name(library, outcome)
    assert {n: s for n, s in splits.items()} == {**{p.name: "train" for p in train}, **{p.name: "val" for p in val}}
    assert snap.split_origin == "source"


def voc(root: Path, names: list[str]) -> None:
    for name in names:
        image(root / "JPEGImages" / f"{name}.png")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><object><name>pit</name><bndbox><xmin>2</xmin>"
            "<ymin>2</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")


@pytest.mark.parametrize(
    ("lists", "expected", "kept_out"),
    [
        ({"train": ["a", "b", "c"], "val": ["d"]}, {"a": "train", "b": "train", "c": "train", "d": "val"}, 0),
        ({"trainval": ["a", "b", "c"], "test": ["d"]}, {"a": "train", "b": "train", "c": "train", "d": "val"}, 0),
        ({"train": ["a", "b"], "val": ["c"], "test": ["d"]}, {"a": "train", "b": "train", "c": "val"}, 1),
    ],
    ids=["train-val", "trainval-test", "train-val-test"],
)
def test_voc_image_sets_are_kept(tmp_path: Path, lists: dict[str, list[str]], expected: dict[str, str],
                                 kept_out: int) -> None:
    root = tmp_path / "VOCdevkit"
    voc(root / "VOC2007", ["a", "b", "c", "d"])
    main = root / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for name, ids in lists.items():
        (main / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    library = DatasetLibrary(tmp_path / "lib")
    outcome = library.import_path(root / "VOC2007")
    assert {n.removesuffix(".png"): s for n, s in splits_by_name(library, outcome).items()} == expected
    assert sum("test set" in i.reason for i in outcome.result.skipped) == kept_out


def test_cli_prints_what_it_found_before_the_skip_report(tmp_path: Path) -> None:
    ds = published_yolo(tmp_path / "dl")
    (ds / "labels" / "train" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    done = CliRunner().invoke(datasets_app, ["import", str(tmp_path / "dl"), "--data-dir", str(tmp_path / "data")])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    found = [i for i, line in enumerate(lines) if line.startswith("found:")]
    skipped = next(i for i, line in enumerate(lines) if line.startswith("skipped"))
    assert found and max(found) < skipped
    assert "the source's split" in done.stdout and "5 train, 2 val" in done.stdout

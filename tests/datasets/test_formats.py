"""YOLO, COCO and labelme importers: good layouts, and a table of broken inputs per format."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.export import export_coco
from datasets.formats import detect_format, import_dataset
from datasets.formats.coco import import_coco
from datasets.formats.labelme import import_labelme
from datasets.formats.voc import import_voc
from datasets.formats.yolo import import_yolo
from datasets.records import ImportResult
from datasets.snapshot import build_snapshot
from inspection.blobs import ContentStore
from inspection.errors import DatasetError
from tests.builders import write_image
from tests.datasets.test_voc_and_snapshot import make_voc

W, H = 100, 50


def image(path: Path, seed: int) -> Path:
    """A distinct random 100x50 PNG (PNG: lossless, so two seeds never collide and sizes are exact)."""
    return write_image(path, np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8))


def boxes_of(result: ImportResult) -> dict[str, list[tuple[str, float, float, float, float]]]:
    return {im.path.stem: sorted((b.class_name, *b.box.rounded(3))
                                 for b in im.boxes) for im in result.images}


def reasons(result: ImportResult) -> str:
    return " | ".join(issue.reason for issue in result.skipped)


# -- YOLO ---------------------------------------------------------------------------------------------------
def make_yolo(root: Path, labels: dict[str, str | None], *, split: str = "", names: object = ("scratch", "dent"),
              seed: int = 0) -> Path:
    """``labels``: image stem -> label file text (None: no label file)."""
    sub = Path(split) if split else Path()
    for i, (stem, text) in enumerate(labels.items()):
        image(root / "images" / sub / f"{stem}.png", seed * 1000 + i)
        if text is not None:
            label = root / "labels" / sub / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    if names is not None:
        import yaml

        (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": names}))
    return root


def test_yolo_boxes_polygons_and_negatives(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {
        "a": "0 0.5 0.5 0.2 0.4\n",
        "b": "1 0.1 0.2 0.3 0.2 0.2 0.6\n\n",  # triangle -> its bounding box
        "empty": "",
        "nolabel": None,
    }, split="train")
    result = import_yolo(root)
    assert result.skipped == ()
    assert boxes_of(result) == {
        "a": [("scratch", 40.0, 15.0, 60.0, 35.0)],
        "b": [("dent", 10.0, 10.0, 30.0, 30.0)],
        "empty": [], "nolabel": [],
    }


@pytest.mark.parametrize("names", [["scratch", "dent"], {0: "scratch", 1: "dent"}, {"1": "dent", "0": "scratch"}],
                         ids=["list", "dict", "dict-str-keys"])
def test_yolo_names_list_or_dict(tmp_path: Path, names: object) -> None:
    root = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.2"}, names=names)
    assert boxes_of(import_yolo(root))["a"][0][0] == "dent"


def test_yolo_classes_txt_fallback_and_override(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.2"}, names=None)
    with pytest.raises(DatasetError, match=r"classes\.txt"):
        import_yolo(root)
    (root / "classes.txt").write_text("pit\nrust\n")
    assert boxes_of(import_yolo(root))["a"][0][0] == "rust"
    assert boxes_of(import_yolo(root, classes=["a", "b"]))["a"][0][0] == "b"


def test_yolo_labels_beside_images(tmp_path: Path) -> None:
    image(tmp_path / "x.png", 1)
    (tmp_path / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("scratch\n")
    assert boxes_of(import_dataset(tmp_path, "auto"))["x"] == [("scratch", 40.0, 20.0, 60.0, 30.0)]


@pytest.mark.parametrize(("label", "reason"), [
    ("7 0.5 0.5 0.2 0.2", "unknown class id 7"),
    ("0 0.5 0.5 0.2", "odd number"),
    ("0 0.1 0.1 0.2 0.2 0.3", "odd number"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.1 0.4", "odd number"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.1 0.1 0.5", "odd number"),
    ("0 0.1 0.1 0.5 0.5 0.9 0.9 0.1", "odd number"),
    ("0 a b c d", "not numbers"),
    ("0.5 0.5 0.5 0.2 0.2", "not an integer"),
    ("0 1.5 0.5 0.4 0.4", "outside"),
    ("0 0.5 0.5 0 0.2", "degenerate"),
    ("0 nan 0.5 0.2 0.2", "finite"),
], ids=["unknown-id", "short", "odd-5", "odd-7", "odd-9", "odd-7b", "text", "float-class", "outside", "degenerate",
        "nan"])
def test_yolo_broken_rows_are_skipped_with_reason(tmp_path: Path, label: str, reason: str) -> None:
    root = make_yolo(tmp_path, {"a": f"1 0.5 0.5 0.2 0.2\n{label}\n"})
    result = import_yolo(root)
    assert boxes_of(result)["a"] == [("dent", 40.0, 20.0, 60.0, 30.0)]  # the good row stays
    assert len(result.skipped) == 1 and reason in result.skipped[0].reason
    assert result.skipped[0].path.endswith("a.txt:2")


def test_yolo_polygon_needs_three_points(tmp_path: Path) -> None:
    # 4 values after the class is always a box; 2 points would be 4 values, so the smallest polygon is 6.
    result = import_yolo(make_yolo(tmp_path, {"a": "0 0.1 0.1 0.2 0.2 0.3 0.3\n"}))
    assert result.skipped == () and boxes_of(result)["a"][0][1:] == (10.0, 5.0, 30.0, 15.0)


def test_yolo_slack_clips_and_file_level_problems(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 1.015 0.2\n", "b": "0 0.5 0.5 0.1 0.1"})
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "b.txt").write_bytes(b"\xff\xfe\x00garbage")
    (root / "images" / "broken.png").write_bytes(b"not a png")
    image(root / "images" / "dup.png", 0)  # same pixels as a.png
    result = import_yolo(root)
    assert boxes_of(result) == {"a": [("scratch", 0.0, 20.0, 100.0, 30.0)]}  # 0.75 px past the border: clipped
    text = reasons(result)
    for part in ("not UTF-8", "no image file found", "unreadable", "duplicate"):
        assert part in text


@pytest.mark.parametrize("yaml_text", ["names: [unclosed", "nc: 2\n", "names: {0: a, 2: b}"],
                         ids=["bad-yaml", "no-names", "gap-in-ids"])
def test_yolo_bad_data_yaml_is_refused(tmp_path: Path, yaml_text: str) -> None:
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2"}, names=None)
    (root / "data.yaml").write_text(yaml_text)
    with pytest.raises(DatasetError, match=r"data\.yaml"):
        import_yolo(root)


def test_yolo_wrong_folder_says_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(DatasetError, match="looked for images"):
        import_yolo(tmp_path)


# -- COCO ---------------------------------------------------------------------------------------------------
def coco_doc(images: list[dict[str, object]], annotations: list[dict[str, object]]) -> dict[str, object]:
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "scratch"}, {"id": 2, "name": "dent"}]}


def make_coco(root: Path, annotations: list[dict[str, object]], *, n_images: int = 2,
              images_dir: str = "images") -> Path:
    infos = []
    for i in range(n_images):
        image(root / images_dir / f"im{i}.png", i)
        infos.append({"id": i + 1, "file_name": f"im{i}.png", "width": W, "height": H})
    path = root / "annotations.json"
    path.write_text(json.dumps(coco_doc(infos, annotations)))
    return path


def test_coco_bbox_segmentation_and_crowd(tmp_path: Path) -> None:
    path = make_coco(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "iscrowd": 1,
         "segmentation": [[0, 0, 1, 0, 1, 1]]},  # bbox wins over segmentation
        {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [[50, 10, 70, 10, 60, 40]]},
    ])
    for source in (path, tmp_path):  # the file, or the folder holding it
        result = import_coco(source)
        assert result.skipped == ()
        assert boxes_of(result) == {"im0": [("dent", 50.0, 10.0, 70.0, 40.0), ("scratch", 10.0, 5.0, 30.0, 15.0)],
                                    "im1": []}


@pytest.mark.parametrize(("annotation", "reason"), [
    ({"image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]}, "unknown category_id 9"),
    ({"image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]}, "unknown image_id 42"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 5]}, "malformed bbox"),
    ({"image_id": 1, "category_id": 1, "bbox": ["a", 1, 5, 5]}, "not numbers"),
    ({"image_id": 1, "category_id": 1, "bbox": [90, 1, 30, 5]}, "outside"),
    ({"image_id": 1, "category_id": 1, "bbox": [10, 1, 0, 5]}, "degenerate"),
    ({"image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 5, 9]]}, "malformed segmentation"),
    ({"image_id": 1, "category_id": 1, "segmentation": {"counts": "xyz", "size": [H, W]}}, "RLE"),
    ({"image_id": 1, "category_id": 1}, "neither bbox nor segmentation"),
    ({"category_id": 1, "bbox": [1, 1, 5, 5]}, "no image_id"),
], ids=["category", "image-id", "short-bbox", "text-bbox", "outside", "degenerate", "odd-polygon", "rle", "no-geometry",
        "no-image-id"])
def test_coco_broken_annotations_are_skipped_with_reason(tmp_path: Path, annotation: dict[str, object],
                                                         reason: str) -> None:
    good = {"id": 100, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}
    result = import_coco(make_coco(tmp_path, [good, annotation]))
    assert boxes_of(result)["im1"] == [("scratch", 1.0, 1.0, 6.0, 6.0)]
    assert len(result.skipped) == 1 and reason in result.skipped[0].reason, result.skipped


def test_coco_image_problems(tmp_path: Path) -> None:
    path = make_coco(tmp_path, [], n_images=2)
    doc = json.loads(path.read_text())
    doc["images"] += [{"id": 3, "file_name": "missing.png", "width": W, "height": H},
                      {"id": 4, "file_name": "../../etc/passwd", "width": W, "height": H},
                      {"id": 2, "file_name": "im1.png", "width": W, "height": H},
                      {"id": 5, "file_name": "big.png", "width": 640, "height": 480},
                      {"id": 6, "file_name": "copy.png", "width": W, "height": H}]
    image(tmp_path / "images" / "big.png", 7)
    image(tmp_path / "images" / "copy.png", 0)
    path.write_text(json.dumps(doc))
    (tmp_path / "broken.json").write_text("{not json")
    result = import_coco(tmp_path)
    assert sorted(boxes_of(result)) == ["im0", "im1"]
    text = reasons(result)
    for part in ("no image file found for 'missing.png'", "no image file found for '../../etc/passwd'",
                 "appears twice", "but the annotation says 640x480", "duplicate", "JSON does not parse"):
        assert part in text


@pytest.mark.parametrize("content", ["{bad", json.dumps({"images": []}), json.dumps([1, 2])],
                         ids=["not-json", "no-annotations", "list"])
def test_coco_bad_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "a.json").write_text(content)
    with pytest.raises(DatasetError):
        import_coco(tmp_path / "a.json")
    with pytest.raises(DatasetError, match="looked for"):
        import_coco(tmp_path)


# -- labelme ------------------------------------------------------------------------------------------------
def labelme_doc(image_path: str | None, shapes: list[dict[str, object]], image_data: str | None = None) -> str:
    return json.dumps({"version": "5.2.1", "shapes": shapes, "imagePath": image_path, "imageData": image_data,
                       "imageHeight": H, "imageWidth": W})


def rect(label: str, x1: float, y1: float, x2: float, y2: float) -> dict[str, object]:
    return {"label": label, "points": [[x2, y2], [x1, y1]], "shape_type": "rectangle"}


def test_labelme_rectangles_polygons_and_parent_paths(tmp_path: Path) -> None:
    image(tmp_path / "images" / "a.png", 1)
    image(tmp_path / "b.png", 2)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.json").write_text(labelme_doc("..\\images\\a.png", [rect("scratch", 10, 10, 30, 20)]))
    (tmp_path / "b.json").write_text(labelme_doc("b.png", [
        {"label": "dent", "points": [[50, 10], [70, 10], [60, 40]], "shape_type": "polygon"},
        {"label": "dent", "points": [[1, 1], [5, 5], [1, 5]], "shape_type": None},  # labelme < 4: polygon
    ]))
    result = import_labelme(tmp_path)
    assert result.skipped == ()
    assert boxes_of(result) == {"a": [("scratch", 10.0, 10.0, 30.0, 20.0)],
                                "b": [("dent", 1.0, 1.0, 5.0, 5.0), ("dent", 50.0, 10.0, 70.0, 40.0)]}
    assert detect_format(tmp_path) == "labelme"


@pytest.mark.parametrize(("shape", "reason"), [
    ({"label": "x", "points": [[1, 1]], "shape_type": "rectangle"}, "needs 2 points"),
    ({"label": "x", "points": [[1, 1], [5, 5]], "shape_type": "polygon"}, "at least 3 points"),
    ({"label": "x", "points": [[1, 1], [5, 5]], "shape_type": "circle"}, "unsupported shape_type"),
    ({"label": "", "points": [[1, 1], [5, 5]], "shape_type": "rectangle"}, "without a label"),
    ({"label": "x", "points": [[1, 1, 3], [5, 5]], "shape_type": "rectangle"}, "malformed points"),
    ({"label": "x", "points": "nope", "shape_type": "rectangle"}, "not a list"),
    ({"label": "x", "points": [[1, 1], [500, 5]], "shape_type": "rectangle"}, "outside"),
    ({"label": "x", "points": [[5, 1], [5, 9]], "shape_type": "rectangle"}, "degenerate"),
], ids=["rect-1pt", "poly-2pt", "circle", "no-label", "triple", "points-str", "outside", "degenerate"])
def test_labelme_broken_shapes(tmp_path: Path, shape: dict[str, object], reason: str) -> None:
    image(tmp_path / "a.png", 1)
    (tmp_path / "a.json").write_text(labelme_doc("a.png", [rect("ok", 1, 1, 9, 9), shape]))
    result = import_labelme(tmp_path)
    assert boxes_of(result)["a"] == [("ok", 1.0, 1.0, 9.0, 9.0)]
    assert len(result.skipped) == 1 and reason in result.skipped[0].reason


def test_labelme_file_problems_and_embedded_images(tmp_path: Path) -> None:
    root, store = tmp_path / "ds", tmp_path / "store"
    png = cv2.imencode(".png", np.full((H, W, 3), 9, np.uint8))[1].tobytes()
    root.mkdir()
    (root / "emb.json").write_text(labelme_doc("gone.png", [rect("x", 1, 1, 9, 9)], base64.b64encode(png).decode()))
    (root / "missing.json").write_text(labelme_doc("nothing.png", []))
    (root / "bad.json").write_text('{"shapes": [')
    (root / "badb64.json").write_text(labelme_doc("x.png", [], "!!!not base64"))
    (root / "notimg.json").write_text(labelme_doc("y.png", [], base64.b64encode(b"hello").decode()))
    without = import_labelme(root)
    assert without.images == () and "needs the dataset library's image store" in reasons(without)
    result = import_labelme(root, image_store=ContentStore(store, read_only=True))
    [embedded] = result.images
    assert embedded.path.is_relative_to(store.resolve()) and embedded.path.read_bytes() == png
    text = reasons(result)
    for part in ("no image file found", "JSON does not parse", "not base64", "not a readable image"):
        assert part in text
    assert not (root / "gone.png").exists()  # nothing written into the source folder


# -- dispatcher, detection, COCO round trip -----------------------------------------------------------------
def test_detect_format_and_wrong_folders(tmp_path: Path) -> None:
    make_voc(tmp_path / "voc", {"a": [("x", 1, 1, 9, 9)]})
    make_coco(tmp_path / "coco", [])
    make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.1 0.1"})
    assert [detect_format(tmp_path / n) for n in ("voc", "coco", "yolo")] == ["voc", "coco", "yolo"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("nothing here")
    with pytest.raises(DatasetError, match="looked for COCO JSON"):
        import_dataset(tmp_path / "empty", "auto")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        import_dataset(tmp_path / "voc", "csv")
    with pytest.raises(DatasetError, match="does not exist"):
        import_dataset(tmp_path / "nope", "auto")


def test_classes_filter_for_name_based_formats(tmp_path: Path) -> None:
    root = make_voc(tmp_path, {"a": [("scratch", 1, 1, 9, 9), ("stain", 2, 2, 8, 8)]})
    result = import_dataset(root, "voc", classes=["scratch"])
    assert boxes_of(result)["a"] == [("scratch", 1.0, 1.0, 9.0, 9.0)]
    assert "unknown class 'stain'" in reasons(result)


@pytest.mark.parametrize("importer", [import_coco, lambda p: import_dataset(p, "auto")], ids=["coco", "auto"])
def test_voc_snapshot_coco_round_trip(tmp_path: Path, importer: Callable[[Path], ImportResult]) -> None:
    items = {f"s{i}": [("scratch", 10 + i, 5, 30.5, 20.25)] for i in range(6)}
    items |= {f"d{i}": [("dent", 1, 1, 20, 20), ("scratch", 50, 10, 99, 49)] for i in range(4)}
    items |= {"neg": []}
    voc = import_voc(make_voc(tmp_path / "voc", items))
    snap = build_snapshot(voc, val_fraction=0.3)
    out = export_coco(snap, tmp_path / "coco")
    assert (out / "annotations" / "instances_val.json").is_file()
    back = importer(out)
    assert back.skipped == ()
    by_sha = {im.sha256: im for im in back.images}
    for entry in snap.entries:
        got = by_sha[entry.image.sha256]
        assert [b.class_name for b in got.boxes] == [b.class_name for b in entry.image.boxes]
        assert [c for b in got.boxes for c in b.box] == pytest.approx(
            [c for b in entry.image.boxes for c in b.box])
    assert build_snapshot(back, val_fraction=0.3, classes=snap.classes).id == snap.id

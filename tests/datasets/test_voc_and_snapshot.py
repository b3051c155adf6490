from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.export import export_yolo
from datasets.formats.voc import import_voc
from datasets.snapshot import Snapshot, build_snapshot
from inspection.errors import DatasetError
from tests.builders import write_image

XML = """<annotation><filename>{name}</filename><size><width>100</width><height>50</height></size>
{objects}</annotation>"""
OBJ = ("<object><name>{cls}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
       "<ymax>{y2}</ymax></bndbox></object>")


def make_voc(root: Path, items: dict[str, list[tuple[str, float, float, float, float]]], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, boxes in items.items():
        write_image(root / "images" / f"{name}.jpg", rng.integers(0, 255, (50, 100, 3), dtype=np.uint8))
        objects = "".join(OBJ.format(cls=c, x1=a, y1=b, x2=x, y2=y) for c, a, b, x, y in boxes)
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{name}.xml").write_text(XML.format(name=f"{name}.jpg", objects=objects))
    return root


def test_import_reports_what_it_skipped(tmp_path: Path) -> None:
    root = make_voc(tmp_path, {
        "a": [("scratch", 10, 10, 30, 20)],
        "b": [("dent", 0, 0, 200, 20), ("dent", 5, 5, 5, 9), ("scratch", 1, 1, 9, 9)],  # outside, degenerate
    })
    (root / "annotations" / "c.xml").write_text(XML.format(name="missing.jpg", objects=""))
    (root / "annotations" / "d.xml").write_text("<annotation><unclosed>")
    result = import_voc(root)
    assert sorted(im.path.stem for im in result.images) == ["a", "b"]
    reasons = " | ".join(i.reason for i in result.skipped)
    for part in ("outside", "degenerate", "no image file", "does not parse"):
        assert part in reasons
    assert result.classes == ("scratch",)


@pytest.mark.parametrize("make", [lambda p: p / "nope", lambda p: p], ids=["missing-folder", "no-xml"])
def test_import_refuses_wrong_folders(tmp_path: Path, make) -> None:
    with pytest.raises(DatasetError):
        import_voc(make(tmp_path))


def test_snapshot_split_is_deterministic_stratified_and_content_addressed(tmp_path: Path) -> None:
    items = {f"s{i}": [("scratch", 1, 1, 20, 20)] for i in range(10)}
    items |= {f"d{i}": [("dent", 1, 1, 20, 20)] for i in range(10)}
    result = import_voc(make_voc(tmp_path / "a", items))
    snap = build_snapshot(result, val_fraction=0.2)
    val = snap.split("val")
    assert len(val) == 4
    assert {e.image.boxes[0].class_name for e in val} == {"scratch", "dent"}
    again = build_snapshot(import_voc(make_voc(tmp_path / "b", items)), val_fraction=0.2)
    assert again.id == snap.id  # same content elsewhere on disk, same id
    loaded = Snapshot.load(snap.save(tmp_path / "snaps"))
    assert loaded.id == snap.id


def test_tampered_manifest_is_refused(tmp_path: Path) -> None:
    snap = build_snapshot(import_voc(make_voc(tmp_path, {"a": [("x", 1, 1, 9, 9)], "b": [("x", 2, 2, 9, 9)]})))
    path = snap.save(tmp_path / "snaps")
    path.write_text(path.read_text().replace('"x"', '"y"'))
    with pytest.raises(DatasetError, match="altered"):
        Snapshot.load(path)


def test_yolo_export_normalises_boxes(tmp_path: Path) -> None:
    snap = build_snapshot(import_voc(make_voc(tmp_path / "v", {"a": [("x", 10, 10, 30, 20)]})), val_fraction=0.0)
    data_yaml = export_yolo(snap, tmp_path / "yolo")
    label = next((tmp_path / "yolo" / "labels" / "train").glob("*.txt")).read_text().split()
    assert label == ["0", "0.200000", "0.300000", "0.200000", "0.200000"]
    assert "names" in data_yaml.read_text()


def test_a_box_with_a_missing_coordinate_is_refused_not_stretched_to_the_edge(tmp_path: Path) -> None:
    root = make_voc(tmp_path, {"a": [("scratch", 10, 10, 30, 20)]})
    xml = root / "annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<xmax>30</xmax>", "<xmax></xmax>"))
    result = import_voc(root)
    assert result.images[0].boxes == ()
    assert "not finite" in result.skipped[0].reason

"""``qcline datasets`` through typer's CliRunner on ``datasets_app`` alone."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.datasets import datasets_app
from inspection.errors import ConfigError, DatasetError, NotFoundError
from tests.datasets.test_formats import make_coco, make_yolo
from tests.datasets.test_voc_and_snapshot import make_voc

runner = CliRunner()


def run(*args: str) -> dict:
    result = runner.invoke(datasets_app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_import_list_show_export(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    src = make_voc(tmp_path / "voc", {f"a{i}": [("scratch", 1, 1, 20, 20)] for i in range(5)} | {"b": []})
    (src / "annotations" / "broken.xml").write_text("<annotation>")
    report = run("import", str(src), "--format", "voc", "--data-dir", data, "--json")
    assert set(report) == {"snapshot", "images", "train", "val", "classes", "skipped", "split_origin", "found"}
    assert report["images"] == 6 and report["train"] + report["val"] == 6 and report["val"] == 1
    assert report["classes"] == ["scratch"]
    assert report["skipped"] == [{"path": str(src / "annotations" / "broken.xml"),
                                  "reason": report["skipped"][0]["reason"]}]
    assert (tmp_path / "data" / "datasets" / "snapshots" / report["snapshot"] / "manifest.json").is_file()

    # Composition: a YOLO round with a new class on top, by prefix.
    yolo = make_yolo(tmp_path / "yolo", {"n0": "0 0.5 0.5 0.2 0.2", "n1": "1 0.5 0.5 0.2 0.2"}, names=["pit", "rust"],
                     seed=3)
    child = run("import", str(yolo), "--parent", report["snapshot"][:10], "--data-dir", data, "--json")
    assert child["classes"] == ["scratch", "pit", "rust"] and child["images"] == 8

    rows = run("list", "--data-dir", data, "--json")
    assert [r["id"] for r in rows] == [report["snapshot"], child["snapshot"]]
    assert rows[1]["parent"] == report["snapshot"]
    shown = run("show", child["snapshot"][:8], "--data-dir", data, "--json")
    assert shown["boxes"] == {"scratch": 5, "pit": 1, "rust": 1} and shown["negatives"] == 1

    for fmt in ("yolo", "coco"):
        out = tmp_path / f"export-{fmt}"
        result = runner.invoke(datasets_app, ["export", child["snapshot"], "--format", fmt, "--out", str(out),
                                              "--data-dir", data], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "export-yolo" / "data.yaml").is_file()
    coco = json.loads((tmp_path / "export-coco" / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["scratch", "pit", "rust"]

    human = runner.invoke(datasets_app, ["list", "--data-dir", data])
    assert human.exit_code == 0 and report["snapshot"][:12] in human.stdout


def test_import_archive_and_classes_option(tmp_path: Path) -> None:
    src = tmp_path / "coco"
    make_coco(src, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]},
                    {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 1, 8, 8]}])
    archive = tmp_path / "coco.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in src.rglob("*"):
            zf.write(path, path.relative_to(src).as_posix())
    report = run("import", str(archive), "--classes", "dent", "--data-dir", str(tmp_path / "d"), "--json")
    assert report["classes"] == ["dent"] and report["images"] == 2
    assert any("unknown class 'scratch'" in s["reason"] for s in report["skipped"])


@pytest.mark.parametrize(("args", "error", "message"), [
    (["import", "{empty}", "--format", "auto"], DatasetError, "looked for"),
    (["import", "{empty}", "--format", "voc"], DatasetError, "no Pascal VOC"),
    (["import", "{empty}", "--format", "csv"], ConfigError, "--format must be one of"),
    (["import", "{voc}", "--parent", "abcdef"], NotFoundError, "abcdef"),
    (["import", "{voc}", "--classes", " , "], ConfigError, "--classes"),
    (["import", "{voc}", "--val-fraction", "1.5"], DatasetError, "val_fraction"),
    (["import", "{evil}"], DatasetError, "evil"),
    (["show", "0123abcd"], NotFoundError, "0123abcd"),
    (["export", "0123abcd", "--out", "{empty}/x"], NotFoundError, "0123abcd"),
], ids=["auto-nothing", "voc-nothing", "bad-format", "unknown-parent", "empty-classes", "bad-val", "zip-slip",
        "show-unknown", "export-unknown"])
def test_errors_are_qc_errors_and_register_nothing(tmp_path: Path, args: list[str], error: type[Exception],
                                                   message: str) -> None:
    (tmp_path / "empty").mkdir()
    make_voc(tmp_path / "voc", {"a": [("x", 1, 1, 9, 9)]})
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
    data = tmp_path / "data"
    argv = [a.format(empty=tmp_path / "empty", voc=tmp_path / "voc", evil=tmp_path / "evil.zip") for a in args]
    result = runner.invoke(datasets_app, [*argv, "--data-dir", str(data)])
    assert isinstance(result.exception, error), result.output
    assert message in str(result.exception)
    assert not (data / "datasets" / "snapshots").exists() or not any((data / "datasets" / "snapshots").iterdir())
    assert not (tmp_path / "evil.txt").exists()

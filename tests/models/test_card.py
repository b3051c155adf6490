"""Model card rows come from measurement records only: measured on test, timed at batch 8, weighed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datasets.formats.voc import import_voc
from datasets.snapshot import build_snapshot
from inspection.errors import DatasetError
from inspection.model_package import TTA
from models.card import (
    RECORD_KIND,
    MeasurementError,
    load_rows,
    measure_package,
    render_table,
    row_of,
    training_config,
    write_record,
)
from tests.builders import Candidate, tiny_package
from tests.models.test_evaluation_splits import three_way, white_voc


@pytest.fixture
def record(tmp_path: Path) -> dict[str, Any]:
    snapshot = three_way(tmp_path)
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 20, 20, 0, 0.9)])
    return measure_package(package, snapshot, trained_on=snapshot, engine="onnxruntime", label="tiny")


def test_a_measurement_is_on_test_timed_at_batch_8_and_weighed(record: dict[str, Any], tmp_path: Path) -> None:
    assert record["kind"] == RECORD_KIND and record["split"] == "test"
    assert record["test"]["images"] == 5 and record["test"]["map50"] > 0.99
    assert record["speed"]["batch"] == 8 and record["speed"]["fps"] > 0 and len(record["speed"]["rounds_fps"]) == 3
    assert record["speed"]["engine"] == "onnxruntime"
    on_disk = sum(p.stat().st_size for p in (tmp_path / "pkg").iterdir()) / 1e6
    assert record["package_mb"] == pytest.approx(on_disk, abs=0.01)
    assert record["seen_in_training"] == {"train": 0, "val": 0, "test": 5, "absent": 0}


def test_a_snapshot_without_test_split_gives_no_row(tmp_path: Path) -> None:
    snapshot = build_snapshot(import_voc(white_voc(tmp_path / "voc", 6)))
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 20, 20, 0, 0.9)])
    with pytest.raises(DatasetError, match="no test split"):
        measure_package(package, snapshot, engine="onnxruntime")


def test_the_table_renders_measured_rows(record: dict[str, Any], tmp_path: Path) -> None:
    text = render_table([row_of(record)])
    assert f"| tiny | ? 64 px | 5 (trained on 0) | {record['test']['map50']:.3f} | {record['test']['map50_95']:.3f} " \
           f"| {record['speed']['fps']:.1f} | onnxruntime fp32 | {record['package_mb']:.1f} |" in text
    scratch = record["test"]["per_class"]["scratch"]
    assert f"| tiny | {scratch['ap50']:.2f} / {scratch['ap50_95']:.2f} |" in text  # per class AP@0.5 / AP@0.5:0.95


def test_a_tta_measurement_names_its_setting_in_its_row(record: dict[str, Any], tmp_path: Path) -> None:
    snapshot = three_way(tmp_path / "again")
    augmented = measure_package(tmp_path / "pkg", snapshot, engine="onnxruntime", tta=TTA(flips=("hflip",)))
    assert augmented["tta"] == {"flips": ["hflip"], "fusion": "wbf", "iou": 0.55}
    assert augmented["config"]["tta"] == "hflip wbf@0.55" and augmented["label"] == "pkg + TTA hflip wbf@0.55"
    assert augmented["test"]["images"] == 5 and augmented["speed"]["batch"] == 8  # frames, each two forward images
    assert record["tta"] is None and record["config"]["tta"] is None
    assert augmented["host"]["cpu_model"] == record["host"]["cpu_model"]
    text = render_table([row_of(record), row_of(augmented)])
    assert "| pkg + TTA hflip wbf@0.55 | ? 64 px, TTA hflip wbf@0.55 | 5 (training snapshot unknown) |" in text


def _without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    target = copy
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]
    return copy


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda r: {**r, "kind": "typed-in"}, "not a measurement record"),
    (lambda r: {**r, "split": "val"}, "not on the test split"),
    (lambda r: _without(r, "speed", "fps"), "speed.fps"),
    (lambda r: _without(r, "test", "map50_95"), "map50_95"),
    (lambda r: _without(r, "package_mb"), "package_mb"),
    (lambda r: {**r, "speed": {**r["speed"], "batch": 1}}, "batch 1"),
], ids=["typed-in", "val", "no-fps", "no-map", "no-size", "batch-1"])
def test_a_record_missing_a_measurement_is_refused(record: dict[str, Any], edit: Any, reason: str) -> None:
    with pytest.raises(MeasurementError, match=reason):
        row_of(edit(record))


def test_a_record_whose_package_changed_is_refused(record: dict[str, Any], tmp_path: Path) -> None:
    tiny_package(tmp_path / "pkg", [Candidate(10, 10, 5, 5, 1, 0.5)])  # other bytes in the same folder
    with pytest.raises(MeasurementError, match="no longer holds"):
        row_of(record)


def test_load_rows_keeps_the_measured_and_names_the_refused(record: dict[str, Any], tmp_path: Path) -> None:
    good = write_record(record, tmp_path / "records" / "good.json")
    typed = write_record({"label": "wishful", "split": "test", "test": {"map50": 0.9}}, tmp_path / "records" / "t.json")
    broken = tmp_path / "records" / "broken.json"
    broken.write_text("{")
    rows, refused = load_rows([good, typed, broken])
    assert [r.label for r in rows] == ["tiny"]
    assert len(refused) == 2 and str(typed) in refused[0] and str(broken) in refused[1]
    assert "wishful" not in render_table(rows)
    assert render_table([]) == "(no measured rows)\n"


def test_the_config_comes_from_the_packages_own_training_record() -> None:
    staged = {"stages": [{"model": "yolov8n.yaml", "epochs_completed": 85}, {"model": "yolov8n.yaml", "batch": 32,
                                                                           "time_hours": 0.07, "epochs_completed": 88,
                                                                           "device": "NVIDIA H100"}]}
    assert training_config(staged, 416) == {"base": "yolov8n.yaml", "imgsz": 416, "epochs": 88, "time_hours": 0.07,
                                            "batch": 32, "device": "NVIDIA H100"}
    lineage = {"base": "yolov8n.yaml", "epochs_completed": 40,
               "training_args": {"epochs": "300", "time": "0.75", "batch": "16", "device": "cpu"}}
    assert training_config(lineage, 256) == {"base": "yolov8n.yaml", "imgsz": 256, "epochs": 40, "time_hours": "0.75",
                                             "batch": "16", "device": "cpu"}


def test_the_model_cards_table_is_the_rendering_of_its_committed_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's measured table is not typed in: it must equal ``qcline models table`` of the records beside it."""
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)  # records name their packages as measured, relative to the repository root
    card = (repo / "models" / "neu-det-yolov8n" / "MODEL_CARD.md").read_text()
    begin, end = "<!-- measured-table:begin -->\n", "<!-- measured-table:end -->"
    assert begin in card and end in card
    table = card.split(begin, 1)[1].split(end, 1)[0]
    records = sorted((repo / "models" / "card_records").glob("*.json"))
    assert records
    rows, refused = load_rows(records)
    assert not refused and render_table(rows) == table

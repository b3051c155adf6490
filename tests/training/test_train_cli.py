"""``qcline train`` end to end on a tiny generated dataset: offline ultralytics, ONNX, package, candidate.

Accuracy is not asserted (a few images, one epoch); the plumbing, lineage and resume are.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from api.cli.main import app
from tests.datasets.test_voc_and_snapshot import make_voc

pytest.importorskip("ultralytics", reason="training needs the [train] extra")


@pytest.mark.slow
def test_train_registers_a_candidate_with_lineage_and_a_rerun_reuses_it(tmp_path: Path) -> None:
    items = {f"img{i}": [("blob", 10 + i, 10, 40 + i, 35)] for i in range(12)}
    root = make_voc(tmp_path / "voc", items)
    for i in range(12):  # a visible dark blob where the label says
        path = root / "images" / f"img{i}.jpg"
        image = cv2.imread(str(path))
        cv2.rectangle(image, (10 + i, 10), (40 + i, 35), (0, 0, 0), -1)
        cv2.imwrite(str(path), image)
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    imported = runner.invoke(app, ["datasets", "import", str(root), "--format", "voc", "--json", *data])
    assert imported.exit_code == 0, imported.output
    snapshot = json.loads(imported.stdout)["snapshot"]
    args = ["train", "--dataset", snapshot, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--json", *data]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout.strip().splitlines()[-1])
    [candidate] = result["candidates"]
    assert candidate["stage"] == "candidate" and Path(candidate["path"], "model.onnx").is_file()
    assert (Path(result["run_dir"]) / "train" / "results.csv").is_file()
    listed = json.loads(runner.invoke(app, ["models", "list", "--json", *data]).stdout)
    assert {m["sha256"]: m["stage"] for m in listed}[candidate["sha256"]] == "candidate"  # beside the bundled champion
    meta = json.loads(Path(candidate["path"], "metadata.json").read_text())
    assert meta["dataset"]["snapshot"] == snapshot and "map50" in meta["metrics"]
    again = runner.invoke(app, args)  # same inputs: the finished run is found, not trained again
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["reused"] is True and second["candidates"][0]["sha256"] == candidate["sha256"]
    with_int8 = runner.invoke(app, [*args, "--int8"])  # the finished run gains its int8 variant, not a retrain
    assert with_int8.exit_code == 0, with_int8.output
    third = json.loads(with_int8.stdout.strip().splitlines()[-1])
    assert third["reused"] is True and third["candidates"][0]["sha256"] == candidate["sha256"]
    # the int8 variant is kept only if measured faster and as accurate; either way the run says which
    if third["int8_refused"]:
        assert len(third["candidates"]) == 1 and "not kept" in third["int8_refused"]
    else:
        assert len(third["candidates"]) == 2 and third["candidates"][1]["sha256"] != candidate["sha256"]
    assert np.isfinite(candidate["map50"])


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    from datasets.formats.voc import import_voc
    from datasets.snapshot import build_snapshot
    from inspection.errors import TrainingError
    from training.run import checkpoint_state, train_candidate

    snapshot = build_snapshot(import_voc(make_voc(tmp_path / "voc", {f"i{i}": [("blob", 5, 5, 30, 30)]
                                                                        for i in range(8)})), val_fraction=0.25)

    def power_cut(trainer: object) -> None:
        if getattr(trainer, "epoch", 0) == 0:
            raise KeyboardInterrupt("power cut after the first epoch")

    kwargs = {"runs_dir": tmp_path / "runs", "epochs": 2, "imgsz": 64, "batch": 4}
    with pytest.raises((TrainingError, KeyboardInterrupt)):
        train_candidate(snapshot, callbacks={"on_model_save": power_cut}, **kwargs)  # type: ignore[arg-type]
    [last] = (tmp_path / "runs").glob("*/train/weights/last.pt")
    assert checkpoint_state(last) == "interrupted"
    run = train_candidate(snapshot, **kwargs)  # type: ignore[arg-type]
    assert run.resumed and checkpoint_state(last) == "finished"
    assert len((run.run_dir / "train" / "results.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert (run.package.path / "model.onnx").is_file()


def test_adding_a_class_keeps_the_known_classes_head_rows(tmp_path: Path) -> None:
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from training.run import expand_classes

    old = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    torch.save({"model": old, "train_args": {}}, tmp_path / "old.pt")
    out = expand_classes(tmp_path / "old.pt", ["dent", "scratch"], ["scratch", "dent", "knot"], tmp_path / "new.pt")
    new = torch.load(out, weights_only=False)["model"]
    assert new.names == {0: "scratch", 1: "dent", 2: "knot"}
    before, after = old.state_dict(), new.state_dict()
    head = [k for k in before if before[k].shape != after[k].shape]
    assert head, "the class head should have grown"
    for key in head:
        assert torch.equal(after[key][0], before[key][1]) and torch.equal(after[key][1], before[key][0])
    same = [k for k in before if k not in head]
    assert all(torch.equal(before[k], after[k]) for k in same)


@pytest.mark.slow
def test_fine_tuning_starts_from_the_base_weights(tmp_path: Path) -> None:
    """With the learning rate at zero, a fine-tune must end where its base began: proof the weights were
    loaded (ultralytics silently trains from scratch when told pretrained=False with a .pt)."""
    import torch

    from datasets.export import export_yolo
    from datasets.formats.voc import import_voc
    from datasets.snapshot import build_snapshot
    from training.train import train_detector

    snapshot = build_snapshot(import_voc(make_voc(tmp_path / "voc", {f"i{i}": [("blob", 5, 5, 30, 30)]
                                                                        for i in range(8)})), val_fraction=0.25)
    data = export_yolo(snapshot, tmp_path / "yolo")
    base = train_detector(data, epochs=1, imgsz=64, batch=4, project=tmp_path / "runs", name="base")
    frozen = {"optimizer": "SGD", "lr0": 0.0, "warmup_epochs": 0, "momentum": 0.0, "weight_decay": 0.0}
    tuned = train_detector(data, model=str(base.best_weights), epochs=1, imgsz=64, batch=4,
                           project=tmp_path / "runs", name="tuned", **frozen)

    def first_conv(path: Path) -> torch.Tensor:
        model = torch.load(path, map_location="cpu", weights_only=False)["model"]
        return next(p for n, p in model.named_parameters() if n.endswith("conv.weight")).float()

    assert torch.equal(first_conv(base.best_weights), first_conv(tuned.best_weights))


@pytest.mark.slow
def test_a_three_way_snapshot_trains_on_train_selects_on_val_and_reports_test(tmp_path: Path) -> None:
    from datasets.formats.voc import import_voc
    from datasets.snapshot import build_snapshot
    from training.run import train_candidate

    items = {f"i{i}": [("blob", 5, 5, 30, 30)] for i in range(10)}
    snapshot = build_snapshot(import_voc(make_voc(tmp_path / "voc", items)), val_fraction=0.2, test_fraction=0.2)
    run = train_candidate(snapshot, runs_dir=tmp_path / "runs", epochs=1, imgsz=64, batch=4, threads=1, workers=0)
    data = (run.run_dir / "data" / "data.yaml").read_text()
    assert "val: images/val" in data and "test: images/test" in data  # ultralytics validates on val
    metrics = run.package.metadata.metrics
    assert metrics["split"] == "test" and metrics["images"] == 2
    assert metrics["selection"]["split"] == "val" and metrics["selection"]["images"] == 2
    assert run.package.metadata.dataset["images"] == {"train": 6, "val": 2, "test": 2}
    assert run.lineage["epochs_completed"] == 1

"""A package's ``metrics`` are its test figures when the snapshot has a test split; val is marked as selection."""

from __future__ import annotations

import json
from pathlib import Path

from datasets.formats.voc import import_voc
from datasets.snapshot import build_snapshot
from inspection.model_package import ModelPackage
from tests.builders import Candidate, tiny_package
from tests.models.test_evaluation_splits import three_way, white_voc
from training.package import ACCURACY_ROLE, SELECTION_ROLE, VAL_ONLY_ROLE, record_runtime_metrics


def test_test_figures_are_the_accuracy_and_val_is_marked_as_selection(tmp_path: Path) -> None:
    snapshot = three_way(tmp_path)
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 20, 20, 0, 0.9)])
    returned = record_runtime_metrics(package, snapshot, engine="onnxruntime")
    metrics = json.loads((package / "metadata.json").read_text())["metrics"]
    assert metrics["split"] == "test" and metrics["role"] == ACCURACY_ROLE and metrics["snapshot"] == snapshot.id
    assert metrics["images"] == len(snapshot.split("test")) == returned.images
    assert metrics["selection"]["split"] == "val" and metrics["selection"]["role"] == SELECTION_ROLE
    assert metrics["selection"]["images"] == len(snapshot.split("val"))
    loaded = ModelPackage.load(package)  # still a valid package (the sha256 covers model.onnx only)
    assert loaded.metadata.metrics["map50"] == metrics["map50"]


def test_without_a_test_split_val_figures_are_marked_optimistic(tmp_path: Path) -> None:
    snapshot = build_snapshot(import_voc(white_voc(tmp_path / "voc", 10)))
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 20, 20, 0, 0.9)])
    record_runtime_metrics(package, snapshot, engine="onnxruntime")
    metrics = json.loads((package / "metadata.json").read_text())["metrics"]
    assert metrics["split"] == "val" and metrics["role"] == VAL_ONLY_ROLE and "selection" not in metrics

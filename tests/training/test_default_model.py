"""``build_default_model`` on a tiny VOC folder: the honest split, test figures as the package's accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datasets.test_voc_and_snapshot import make_voc

pytest.importorskip("ultralytics", reason="training needs the [train] extra")


@pytest.mark.slow
def test_the_default_recipe_reports_test_figures_and_marks_val_as_selection(tmp_path: Path) -> None:
    from training.default_model import build_default_model

    root = make_voc(tmp_path / "voc", {f"{c}{i}": [(c, 5, 5, 40, 30)] for c in ("a", "b") for i in range(10)})
    package = build_default_model(root, tmp_path / "pkg", work_dir=tmp_path / "work", imgsz=64, epochs=1, batch=4,
                                  threads=1, workers=0)
    meta = package.metadata
    assert meta.dataset["images"] == {"train": 12, "val": 4, "test": 4}  # per class of 10: 2 test, round(1.5) = 2 val
    assert meta.dataset["split_rule"] == {"val_fraction": 0.15, "test_fraction": 0.2, "seed": "qcline"}
    assert meta.metrics["split"] == "test" and meta.metrics["images"] == 4
    assert meta.metrics["selection"]["split"] == "val" and meta.metrics["selection"]["images"] == 4
    assert meta.training["epochs_completed"] == 1 and (package.path / "results.csv").is_file()
    assert not (package.path / "weights.pt").exists()

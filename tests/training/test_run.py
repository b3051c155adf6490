"""``train_candidate``'s run folders: keyed by what the run is made of."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import training.run as run_module
from datasets.library import DatasetLibrary
from inspection.errors import TrainingError
from tests.builders import Candidate, tiny_package
from tests.datasets.test_voc_and_snapshot import make_voc


def test_fine_tunes_of_different_unregistered_packages_never_share_a_run(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: unregistered package folders were all keyed ``model:None``, so a second fine-tune from another
    folder found the first one's finished run and silently returned its package."""
    root = make_voc(tmp_path / "voc", {f"img{i}": [("blob", 10, 10, 40, 35)] for i in range(4)})
    snapshot = DatasetLibrary(tmp_path / "lib").import_path(root, "voc").snapshot
    projects: list[Path] = []

    def fake_train(data_yaml: Path, *, project: Path, **_: Any) -> Any:
        projects.append(project)
        raise TrainingError("stop before training")

    monkeypatch.setattr(run_module, "train_detector", fake_train)
    for n in (1, 2):
        package = tiny_package(tmp_path / f"base-{n}", [Candidate(32, 32, 8, 8, 0, 0.9)], classes=("blob",))
        (package / "weights.pt").write_bytes(bytes([n]) * 64)
        with pytest.raises(TrainingError, match="stop before"):
            run_module.train_candidate(snapshot, runs_dir=tmp_path / "runs", base_path=package, epochs=1, imgsz=64)
    assert len(projects) == 2 and projects[0] != projects[1]


def test_epochs_completed_counts_the_rows_of_results_csv(tmp_path: Path) -> None:
    from training.train import epochs_completed

    assert epochs_completed(tmp_path) is None
    (tmp_path / "results.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n\n")
    assert epochs_completed(tmp_path) == 2


def test_a_finished_run_packaged_later_keeps_its_recorded_arguments(tmp_path: Path) -> None:
    (tmp_path / "args.yaml").write_text("epochs: 300\ntime: 0.75\nimgsz: 256\n")
    assert run_module._recorded_args(tmp_path) == {"epochs": 300, "time": 0.75, "imgsz": 256}
    assert run_module._recorded_args(tmp_path / "missing") == {"reused": str(tmp_path / "missing")}

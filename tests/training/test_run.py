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

"""Train an ultralytics detector from its yaml (no pretrained weights exist offline)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inspection import safe_yaml
from inspection.errors import TrainingError
from training.offline import prepare_offline_ultralytics, ultralytics_logs_to_stderr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_weights: Path
    metrics: dict[str, float]
    args: dict[str, Any]


def _localise_data_yaml(data_yaml: Path) -> Path:
    """Point ``path:`` at the yaml's own folder when the recorded one does not exist (moved dataset)."""
    try:
        data = safe_yaml.load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TrainingError(f"{data_yaml.name}: does not parse as YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TrainingError(f"{data_yaml.name}: expected a mapping (path, names, train, val)")
    if not Path(str(data.get("path", ""))).is_dir():
        data["path"] = str(data_yaml.parent.resolve())
        data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def train_detector(
    data_yaml: Path,
    *,
    model: str = "yolov8n.yaml",
    epochs: int = 100,
    imgsz: int = 256,
    device: str = "cpu",
    batch: int = 32,
    project: Path = Path("runs"),
    name: str = "train",
    threads: int | None = None,
    workers: int | None = None,
    time_hours: float | None = None,
    seed: int = 0,
    callbacks: dict[str, Callable[[Any], None]] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Run ``YOLO(model).train`` offline and return the best weights with their validation metrics.

    ``threads`` fixes torch's CPU thread count in an ``on_train_start`` callback: ultralytics itself
    sets ``cpu_count - 1`` threads, one on a 2-core machine, which is ~1.5x slower. ``callbacks`` adds
    ultralytics callbacks by event name (progress reporting, a stop request).
    """
    project = Path(project).resolve()
    data_yaml = Path(data_yaml).resolve()
    args: dict[str, Any] = {
        "data": str(data_yaml), "epochs": epochs, "imgsz": imgsz, "device": device, "batch": batch,
        "project": str(project), "name": name, "exist_ok": True, "seed": seed, "deterministic": False,
        "amp": False, "plots": True, "verbose": True,
    }
    if str(model).endswith((".yaml", ".yml")):
        # From an architecture only. Never pass pretrained=False with a .pt: ultralytics 8.4 then discards
        # the loaded weights and trains from scratch (a fine-tune that silently is not one).
        args["pretrained"] = False
    if workers is not None:
        args["workers"] = workers
    if time_hours:
        args["time"] = time_hours
    args.update(overrides)
    log.info("training %s on %s with %s", model, data_yaml, args)
    return _fit(model, args, project / name, offline_dir=project / ".ultralytics", threads=threads,
                callbacks=callbacks, localise=data_yaml, failure="ultralytics training failed")


def _fit(weights: str, args: dict[str, Any], run_dir: Path, *, offline_dir: Path, threads: int | None,
         callbacks: dict[str, Callable[[Any], None]] | None, failure: str, localise: Path | None = None
         ) -> TrainResult:
    """``YOLO(weights).train(**args)`` offline, logs on stderr, torch threads fixed, ``callbacks`` added: the one
    way a run starts, whether fresh or resumed, so both report progress and use the cores alike."""
    prepare_offline_ultralytics(offline_dir)
    try:
        import torch
        from ultralytics import YOLO
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TrainingError("training needs the [train] extra: pip install 'qcline[train]'") from exc
    ultralytics_logs_to_stderr()
    if localise is not None:
        _localise_data_yaml(localise)
    n_threads = threads or os.cpu_count() or 1

    def _set_threads(_trainer: Any) -> None:
        torch.set_num_threads(n_threads)

    detector = YOLO(weights)
    detector.add_callback("on_train_start", _set_threads)
    for event, callback in (callbacks or {}).items():
        detector.add_callback(event, callback)
    try:
        results = detector.train(**args)
    except Exception as exc:
        raise TrainingError(f"{failure}: {exc}") from exc
    trainer = detector.trainer
    best = Path(trainer.best) if trainer is not None else run_dir / "weights" / "best.pt"
    if not best.exists():
        raise TrainingError(f"training finished without weights at {best}")
    metrics = {k: float(v) for k, v in (getattr(results, "results_dict", None) or {}).items()}
    return TrainResult(Path(trainer.save_dir) if trainer else run_dir, best, metrics, args)


def epochs_completed(run_dir: Path) -> int | None:
    """Epochs a run finished, from its ``results.csv`` (one row per epoch); ``None`` without one. With a
    time budget (``time=``) this, not the ``epochs`` asked for, is what the schedule came to."""
    results = Path(run_dir) / "results.csv"
    if not results.is_file():
        return None
    return max(0, len([line for line in results.read_text().splitlines() if line.strip()]) - 1)


def resume_detector(last_weights: Path, *, device: str = "cpu", threads: int | None = None,
                    callbacks: dict[str, Callable[[Any], None]] | None = None) -> TrainResult:
    """Continue an interrupted ultralytics run from its ``last.pt`` (same data, schedule and folder)."""
    last_weights = Path(last_weights).resolve()
    run_dir = last_weights.parent.parent
    return _fit(str(last_weights), {"resume": True, "device": device}, run_dir,
                offline_dir=run_dir.parent / ".ultralytics", threads=threads, callbacks=callbacks,
                failure=f"resuming {last_weights} failed")

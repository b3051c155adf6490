"""``qcline train``: snapshot -> YOLO dataset -> ultralytics (offline) -> ONNX -> package -> candidate.

A run's folder is named by a hash of its inputs (snapshot, base model, arguments), so running the same
command again after an interruption finds ``weights/last.pt`` and resumes instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datasets.export import export_yolo
from datasets.snapshot import Snapshot
from inspection import safe_yaml
from inspection.errors import TrainingError
from inspection.hashing import sha256_file
from inspection.model_package import ModelPackage, Thresholds
from training.package import build_package
from training.quantize import QuantizationRefusedError, quantize_package
from training.train import TrainResult, epochs_completed, resume_detector, train_detector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRun:
    run_dir: Path
    package: ModelPackage
    int8_package: ModelPackage | None
    resumed: bool
    lineage: dict[str, Any]
    reused: bool = False
    int8_refused: str = ""
    """Why the int8 variant asked for was not kept (slower or less accurate than the float model, measured)."""


def checkpoint_state(last: Path) -> str:
    """``missing``, ``interrupted`` (optimizer state kept: resumable) or ``finished`` (ultralytics strips
    the optimizer and sets epoch -1 when a run completes; resuming that would start a fresh run)."""
    if not last.is_file():
        return "missing"
    import torch  # the [train] extra: this module is imported by CLI commands that run without it

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise TrainingError(f"checkpoint {last} cannot be read ({exc}); delete the run folder to start over") from exc
    return "interrupted" if ckpt.get("optimizer") is not None and ckpt.get("epoch", -1) >= 0 else "finished"


def run_id(snapshot_id: str, base: str, args: dict[str, Any]) -> str:
    key = json.dumps({"snapshot": snapshot_id, "base": base, "args": args}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def expand_classes(weights: Path, old_classes: Sequence[str], new_classes: Sequence[str], out: Path) -> Path:
    """A checkpoint of the same network whose class head has rows for ``new_classes``.

    Ultralytics transfers weights by name *and shape*: when a snapshot adds a class, the class head no
    longer fits and every class is re-learned from random (measured here: the five known NEU classes lost
    0.1-0.27 AP@0.5 in a 10-epoch fine-tune). Copying the known classes' rows keeps what the model knew;
    only the new class starts from scratch.
    """
    import torch  # the [train] extra, as above
    from ultralytics.nn.tasks import DetectionModel

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    old = (ckpt.get("ema") or ckpt["model"]).float()
    new = DetectionModel(dict(old.yaml), nc=len(new_classes), verbose=False)
    source_row = [list(old_classes).index(c) if c in old_classes else -1 for c in new_classes]
    state = new.state_dict()
    for name, tensor in old.state_dict().items():
        target = state.get(name)
        if target is None:
            continue
        if target.shape == tensor.shape:
            state[name] = tensor
        elif (target.shape[0] == len(new_classes) and tensor.shape[0] == len(old_classes)
              and target.shape[1:] == tensor.shape[1:]):
            for new_row, old_row in enumerate(source_row):
                if old_row >= 0:
                    target[new_row] = tensor[old_row]
    new.load_state_dict(state)
    new.names = dict(enumerate(new_classes))
    torch.save({"model": new, "ema": None, "epoch": -1, "optimizer": None, "train_args": {},
                "date": None, "version": None}, out)
    return out


def _recorded_args(train_dir: Path) -> dict[str, Any]:
    """The arguments ultralytics wrote beside a finished run (``args.yaml``), for its package's lineage."""
    try:
        recorded = safe_yaml.load((train_dir / "args.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.warning("%s/args.yaml cannot be read (%s): the lineage names the folder only", train_dir, exc)
        return {"reused": str(train_dir)}
    return dict(recorded) if isinstance(recorded, dict) else {"reused": str(train_dir)}


def _base_weights(base: str | None, base_path: Path | None) -> str:
    """An architecture yaml (from scratch) or the ``weights.pt`` kept beside a registered package."""
    if base_path is None:
        return base or "yolov8n.yaml"
    weights = base_path / "weights.pt" if base_path.is_dir() else base_path
    if not weights.is_file():
        raise TrainingError(f"{base_path} has no weights.pt to fine-tune from; train from a yaml instead "
                            "(--base yolov8n.yaml)")
    return str(weights)


def train_candidate(snapshot: Snapshot, *, runs_dir: Path, base: str | None = None, base_path: Path | None = None,
                    base_model_id: int | None = None, epochs: int = 50, imgsz: int = 416, device: str = "cpu",
                    batch: int = 16, int8: bool = False, name: str | None = None,
                    thresholds: Thresholds | None = None, overrides: dict[str, Any] | None = None,
                    callbacks: dict[str, Callable[[Any], None]] | None = None, threads: int | None = None,
                    workers: int | None = None) -> TrainingRun:
    """Train on ``snapshot``'s train split (ultralytics picks the best epoch on val), evaluate through the
    runtime (on test when the snapshot has one, see ``build_package``), package.

    ``threads`` (torch CPU threads) and ``workers`` (data loader processes) say how much of the machine the
    run may use; they are not part of the run's identity (``run_id``), so a resume may use other values.
    """
    weights = _base_weights(base, base_path)
    overrides = dict(overrides or {})
    if base_path is not None:
        overrides.setdefault("warmup_epochs", 1.0)  # fine-tuning: a short warm-up, not a from-scratch one
    args = {"epochs": epochs, "imgsz": imgsz, "batch": batch, **overrides}
    # A fine-tune is keyed by the base weights' content: two unregistered package folders never share a run.
    base_key = weights if base_path is None else f"weights:{sha256_file(Path(weights))}"
    run_dir = Path(runs_dir) / run_id(snapshot.id, base_key, args)
    weights_dir = run_dir / "train" / "weights"
    package_dir = run_dir / "package"
    int8_dir = run_dir / "package-int8"
    state = checkpoint_state(weights_dir / "last.pt")
    if state == "finished" and (package_dir / "metadata.json").is_file():
        log.info("%s already holds the finished run of these inputs; reusing its package", run_dir)
        package = ModelPackage.load(package_dir)
        int8_package, refused = None, ""
        if int8:  # asked for now, perhaps not the first time: quantize the reused package if it has no variant yet
            int8_package, refused = (ModelPackage.load(int8_dir), "") if (int8_dir / "metadata.json").is_file() \
                else _quantize(package, snapshot, int8_dir)
        return TrainingRun(run_dir, package, int8_package, False, dict(package.metadata.training), reused=True,
                           int8_refused=refused)
    resumed = state == "interrupted"
    result: TrainResult
    if resumed:
        log.info("resuming the interrupted run in %s", run_dir)
        result = resume_detector(weights_dir / "last.pt", device=device, threads=threads, callbacks=callbacks)
    elif state == "finished":  # trained, but packaging did not complete: the arguments are in its args.yaml
        result = TrainResult(run_dir / "train", weights_dir / "best.pt", {}, _recorded_args(run_dir / "train"))
    else:
        if base_path is not None and base_path.is_dir():
            known = ModelPackage.load(base_path).metadata.classes
            if tuple(snapshot.classes) != tuple(known):  # new classes: keep the known rows of the class head
                run_dir.mkdir(parents=True, exist_ok=True)
                weights = str(expand_classes(Path(weights), known, snapshot.classes, run_dir / "base-expanded.pt"))
        data_yaml = export_yolo(snapshot, run_dir / "data")
        result = train_detector(data_yaml, model=weights, epochs=epochs, imgsz=imgsz, device=device, batch=batch,
                                project=run_dir, name="train", callbacks=callbacks, threads=threads,
                                workers=workers, **overrides)
    lineage = {"dataset_snapshot": snapshot.id, "parent_model": base_model_id, "base": weights,
               "training_args": {k: str(v) for k, v in result.args.items()}, "run_dir": str(run_dir),
               "resumed": resumed, "epochs_completed": epochs_completed(result.run_dir),
               "checkpoint_selection": "ultralytics best.pt by fitness on the val split"}
    package = build_package(result.best_weights, snapshot=snapshot, out_dir=run_dir / "package",
                            name=name or f"qcline-{snapshot.id[:8]}-{imgsz}", imgsz=imgsz,
                            training=lineage, thresholds=thresholds)
    for curve in ("results.png", "PR_curve.png", "BoxPR_curve.png", "confusion_matrix.png"):
        if (result.run_dir / curve).is_file():
            shutil.copyfile(result.run_dir / curve, package.path / f"train_{curve}")
    int8_package, refused = _quantize(package, snapshot, int8_dir) if int8 else (None, "")
    return TrainingRun(run_dir, package, int8_package, resumed, lineage, int8_refused=refused)


def _quantize(package: ModelPackage, snapshot: Snapshot, out_dir: Path) -> tuple[ModelPackage | None, str]:
    """The int8 variant, or ``None`` and why (its measurements) when it is slower or less accurate."""
    try:
        return quantize_package(package, snapshot, out_dir=out_dir), ""
    except QuantizationRefusedError as exc:
        log.warning("%s", exc)
        return None, str(exc)

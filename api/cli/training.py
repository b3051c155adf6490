"""``qcline train`` and ``qcline evaluate``: the engineer's half of the learning loop."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from api.cli.common import DataDirOption, EngineOption, PrecisionOption, TtaOption, require_train_extra, tta_of
from api.cli.models import open_registry, resolve_snapshot, training_snapshot
from inspection.errors import NotFoundError, QCError
from inspection.settings import Settings, load_settings

if TYPE_CHECKING:
    from datasets.snapshot import Split
    from models.registry import RegisteredModel
    from training.run import TrainingRun

training_app = typer.Typer(help="Training and evaluation.", no_args_is_help=True)



def _model_path(registry: Any, value: str) -> tuple[Path, int | None]:
    """A package folder on disk, or a registry id / sha256 prefix."""
    path = Path(value)
    if path.is_dir():
        return path, None
    try:
        model = registry.get(value)
    except NotFoundError:
        raise NotFoundError(f"model {value!r} is neither a package folder nor a registered model id/sha") from None
    return Path(model.path), int(model.id)


@training_app.command("train")
def train(
    dataset: Annotated[str, typer.Option(help="Dataset snapshot id (qcline datasets list) or manifest path.")],
    base: Annotated[str, typer.Option(help="Architecture yaml (from scratch), or a registered model / package "
                                           "folder to fine-tune from its weights.pt.")] = "yolov8n.yaml",
    epochs: int = 50, imgsz: int = 416, batch: int = 16,
    device: Annotated[str, typer.Option(help="cpu, or a CUDA device index such as 0.")] = "cpu",
    int8: Annotated[bool, typer.Option(help="Also make and register an int8-quantized variant.")] = False,
    name: str | None = None, data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    progress_file: Annotated[Path | None, typer.Option(
        help="Append one JSON line per finished epoch (epoch, epochs, metrics) here, for a job runner.")] = None,
    time_hours: Annotated[float | None, typer.Option(
        "--time-hours", min=0.0, help="Wall-clock budget (ultralytics time=): the schedule is fitted to the epochs "
                                      "that fit, --epochs is then only the first guess.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch CPU threads (default: all cores).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data loader processes (0: in the main one).")] = None,
) -> None:
    """Train on a snapshot (offline), export ONNX, evaluate through the runtime, register a candidate.

    Running the same command again after an interruption resumes the run.
    """
    require_train_extra()
    settings = load_settings(data_dir=data_dir)
    with contextlib.redirect_stdout(sys.stderr):  # library prints must not mix into --json output
        registered, run = _train(settings, dataset, base, epochs=epochs, imgsz=imgsz, batch=batch, device=device,
                                 int8=int8, name=name, progress_file=progress_file,
                                 overrides={"time": time_hours} if time_hours else None, threads=threads,
                                 workers=workers)
    rows = [{"id": m.id, "sha256": m.sha256, "stage": m.stage, "path": str(m.path),
             "map50": m.metrics.get("map50"), "map50_95": m.metrics.get("map50_95")} for m in registered]
    if as_json:
        sys.stdout.write(json.dumps({"candidates": rows, "run_dir": str(run.run_dir), "resumed": run.resumed,
                                     "reused": run.reused, "int8_refused": run.int8_refused}) + "\n")
        return
    if run.int8_refused:
        typer.echo(f"int8: {run.int8_refused}", err=True)
    for m in registered:
        typer.echo(f"candidate {m.id} ({m.sha256[:12]}): mAP@0.5 {m.metrics.get('map50', float('nan')):.3f}, "
                   f"mAP@0.5:0.95 {m.metrics.get('map50_95', float('nan')):.3f} -> {m.path}")
    typer.echo(f"curves and weights: {run.run_dir / 'train'}")


def epoch_reporter(path: Path) -> dict[str, Any]:
    """Ultralytics callbacks appending ``{"epoch", "epochs", "metrics"}`` to ``path`` after each epoch."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def on_fit_epoch_end(trainer: Any) -> None:
        metrics = {str(k): round(float(v), 5) for k, v in (getattr(trainer, "metrics", None) or {}).items()
                   if isinstance(v, int | float)}
        epochs = int(trainer.epochs)  # the final validation reports once more, past the last epoch: clamp it
        line = {"epoch": min(int(trainer.epoch) + 1, epochs), "epochs": epochs, "metrics": metrics}
        with path.open("a") as f:
            f.write(json.dumps(line) + "\n")

    return {"on_fit_epoch_end": on_fit_epoch_end}


def _train(settings: Settings, dataset: str, base: str, *, epochs: int, imgsz: int, batch: int, device: str,
           int8: bool, name: str | None, progress_file: Path | None = None,
           overrides: dict[str, Any] | None = None, threads: int | None = None, workers: int | None = None,
           ) -> tuple[list[RegisteredModel], TrainingRun]:
    """Train, package and register (one candidate, two with ``int8``)."""
    from training.run import train_candidate

    with open_registry(settings) as registry:
        snapshot = resolve_snapshot(dataset, settings, registry)[0]
        base_path, base_id = (None, None) if base.endswith((".yaml", ".yml")) else _model_path(registry, base)
        run = train_candidate(snapshot, runs_dir=settings.data_dir / "runs", base=base, base_path=base_path,
                              base_model_id=base_id, epochs=epochs, imgsz=imgsz, device=device, batch=batch,
                              int8=int8, name=name, overrides=overrides, threads=threads, workers=workers,
                              callbacks=epoch_reporter(progress_file) if progress_file else None)
        candidate = registry.register(run.package.path, stage="candidate", lineage=run.lineage)
        registered = [candidate]
        if run.int8_package is not None:
            registered.append(registry.register(run.int8_package.path, stage="candidate",
                                                lineage={**run.lineage, "quantized_from_model": candidate.id}))
    return registered, run


@training_app.command("evaluate")
def evaluate(
    model: Annotated[str, typer.Argument(help="Registered model id / sha256 prefix, or a package folder.")],
    dataset: Annotated[str, typer.Option(help="Dataset snapshot id or manifest path.")],
    split: Annotated[str, typer.Option(help="train, val or test (test: the split no choice ever used; only its "
                                            "images are read).")] = "val",
    out: Annotated[Path | None, typer.Option(help="Folder for pr_curve.png, confusion_matrix.png.")] = None,
    threads: int = 0, data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    engine: EngineOption = None, precision: PrecisionOption = None,
    unseen_only: Annotated[bool, typer.Option(
        "--unseen-only", help="Leave out the images the model trained on (the train split of the snapshot named in "
                              "its metadata, which must be in this data dir).")] = False,
    tta: TtaOption = None,
) -> None:
    """mAP@0.5, mAP@0.5:0.95, per-class AP, precision / recall, through the stations' own runtime.

    When the model's own training snapshot is in this data dir, the answer says where the evaluated images
    sat in it (``seen_in_training``): figures on images a model trained on are not its accuracy.
    """
    require_train_extra("matplotlib")  # the PR curve and confusion matrix plots
    from datasets.snapshot import SPLITS
    from inspection.detector import OnnxDetector
    from models.evaluation import evaluation_classes, predict_snapshot, training_overlap
    from models.metrics import evaluate_detections
    from training.reports import write_evaluation_report

    if split not in SPLITS:
        raise QCError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    chosen = cast("Split", split)
    settings = load_settings(data_dir=data_dir, engine=engine, precision=precision, threads=threads or None)
    with open_registry(settings) as registry:
        snapshot = resolve_snapshot(dataset, settings, registry)[0]
        package_path, model_id = _model_path(registry, model)
        detector = OnnxDetector.from_settings(package_path, settings, tta=tta_of(tta))
        trained_on = training_snapshot(detector.metadata, settings, registry)
    if unseen_only and trained_on is None:
        raise NotFoundError(f"--unseen-only: the model's training snapshot "
                            f"{str(detector.metadata.dataset.get('snapshot') or '(not named)')[:12]} is not in "
                            f"{settings.data_dir}; import it first")
    overlap = training_overlap(trained_on, snapshot, chosen) if trained_on is not None else None
    exclude = {e.image.sha256 for e in trained_on.split("train")} if unseen_only and trained_on else set()
    images = predict_snapshot(detector, snapshot, split=chosen, exclude=exclude)
    confidence = detector.metadata.thresholds.confidence
    classes = evaluation_classes(detector, snapshot)
    metrics = evaluate_detections(images, classes, confidence)
    subset = ("-unseen" if unseen_only else "") + (f"-tta-{'-'.join(detector.tta.flips)}" if detector.tta else "")
    out_dir = out or settings.data_dir / "evaluations" / (f"{detector.model_sha256[:12]}-{snapshot.id[:12]}-"
                                                         f"{split}{subset}")
    report = write_evaluation_report(images, classes, out_dir, confidence=confidence,
                                     title=detector.metadata.name)
    result = {**metrics.to_json(), "model": detector.metadata.name, "model_id": model_id,
              "model_sha256": detector.model_sha256, "engine": detector.engine_name,
              "engine_precision": detector.precision, "tta": detector.tta.to_json() if detector.tta else None,
              "snapshot": snapshot.id, "split": split,
              "trained_on": trained_on.id if trained_on else detector.metadata.dataset.get("snapshot"),
              "seen_in_training": overlap, "unseen_only": unseen_only, "excluded_images": len(
                  {e.image.sha256 for e in snapshot.split(chosen)} & exclude),
              "pr_curve": str(report.pr_curve), "confusion_matrix": str(report.confusion_matrix)}
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    typer.echo(f"{detector.metadata.name} ({detector.engine_name} {detector.precision}"
               f"{f', TTA {detector.tta.label}' if detector.tta else ''}) on "
               f"{snapshot.id[:12]}/{split}{' (unseen only)' if unseen_only else ''}, {metrics.images} images: "
               f"mAP@0.5 {metrics.map50:.3f}, mAP@0.5:0.95 {metrics.map50_95:.3f}, P {metrics.precision:.3f}, "
               f"R {metrics.recall:.3f}")
    if overlap is not None:
        typer.echo(f"  where these images sat in its training snapshot {trained_on.id[:12] if trained_on else ''}: "
                   + ", ".join(f"{k} {v}" for k, v in overlap.items())
                   + (" -- NOT an accuracy: it trained on some of them" if overlap["train"] and not unseen_only
                      else ""))
    for cls, row in metrics.per_class.items():
        typer.echo(f"  {cls:<20} AP@0.5 {row['ap50']:.3f}  AP@0.5:0.95 {row['ap50_95']:.3f}")
    typer.echo(f"plots: {report.pr_curve}, {report.confusion_matrix}")

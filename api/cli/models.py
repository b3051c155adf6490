"""``qcline models ...``: the registry (register, list, promote through the gate, rollback, audit, holdout) and the
packages themselves (show, build-default).

A Typer app of its own (``registry_app``) so ``api/cli/main.py`` mounts it under ``qcline models`` without this
module touching the rest of the CLI. Failures are raised as ``QCError`` (``PromotionRefusedError`` when the
gate says no): the entry point turns them into one line on stderr and a non-zero exit code.

``promote`` evaluates the candidate *and* the champion on the frozen holdout through the station runtime,
right before deciding: numbers from training logs are measured on other data, with another runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.common import (
    DataDirOption,
    JsonOption,
    ModelOption,
    TtaOption,
    default_actor,
    out,
    print_json,
    require_train_extra,
    settings_for,
    tta_of,
)
from api.composition import station_model
from api.services.engineering import promote_on_holdout, station_evaluator
from inspection.errors import NotFoundError, QCError
from inspection.settings import DEFAULT_MODEL_DIR, Settings, load_settings
from models.registry import (
    CHAMPION,
    DetectionMetricsJSON,
    ModelRegistry,
    RegisteredModel,
)

if TYPE_CHECKING:
    from datasets.snapshot import Snapshot
    from inspection.model_package import ModelMetadata

log = logging.getLogger("qcline.models")

registry_app = typer.Typer(help="The model registry: candidates, the champion, the promotion gate.",
                           no_args_is_help=True)





ActorOption = Annotated[str, typer.Option("--actor", help="Who is doing this, for the audit log (default: $USER).")]


def _settings(data_dir: Path | None) -> Settings:
    return load_settings(data_dir=data_dir)


def registry_root(settings: Settings) -> Path:
    return settings.data_dir / "models"


@contextmanager
def open_registry(settings: Settings) -> Iterator[ModelRegistry]:
    registry = ModelRegistry.open(settings.resolved_database_url, registry_root(settings))
    try:
        if settings.bundled_champion:
            registry.ensure_bundled_champion(DEFAULT_MODEL_DIR)
        yield registry
    finally:
        registry.close()




def _brief(model: RegisteredModel) -> dict[str, Any]:
    return {"id": model.id, "stage": model.stage, "sha256": model.sha256, "path": str(model.path),
            "metrics": model.metrics, "name": model.name, "created_at": model.created_at.isoformat(),
            "previous_champion_id": model.previous_champion_id}


def _line(model: RegisteredModel) -> str:
    m50 = model.metrics.get("map50")
    score = f"mAP50 {m50:.3f}" if isinstance(m50, int | float) else "mAP50 -"
    return f"{model.id:>4}  {model.stage:<9}  {model.sha256[:12]}  {score}  {model.name}"


def resolve_snapshot(value: str, settings: Settings, registry: ModelRegistry) -> tuple[Snapshot, Path]:
    """A snapshot from a manifest path (or its folder), or an id (or unique prefix) in the dataset library
    (``qcline datasets list``), or the manifest stored with the marked holdout."""
    from datasets.library import DatasetLibrary
    from datasets.snapshot import MANIFEST_NAME, Snapshot

    path = Path(value).expanduser()
    if path.exists():
        snapshot = Snapshot.load(path)
        return snapshot, (path / MANIFEST_NAME if path.is_dir() else path).resolve()
    held = registry.holdout()
    if held is not None and held.manifest is not None and held.snapshot_id.startswith(value) \
            and held.manifest.is_file():
        return Snapshot.load(held.manifest), held.manifest.resolve()
    library = DatasetLibrary(settings.data_dir / "datasets")
    snapshot = library.get(value)  # NotFoundError names the id when it is unknown or ambiguous
    return snapshot, (library.root / "snapshots" / snapshot.id / MANIFEST_NAME).resolve()



def training_snapshot(metadata: ModelMetadata, settings: Settings, registry: ModelRegistry) -> Snapshot | None:
    """The snapshot a model was trained on (``metadata.dataset.snapshot``), when this data dir holds it; used to
    say where evaluated images sat in it (figures on images a model trained on are not its accuracy)."""
    trained_on = str(metadata.dataset.get("snapshot") or "")
    if not trained_on:
        return None
    try:
        return resolve_snapshot(trained_on, settings, registry)[0]
    except QCError as exc:
        log.warning("the model's training snapshot %s is not at hand: %s", trained_on[:12], exc)
        return None

# -- commands --------------------------------------------------------------------------------------------

@registry_app.command("list")
def list_models(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Every registered model, oldest first, with its stage."""
    with open_registry(_settings(data_dir)) as registry:
        models = registry.list()
    if as_json:
        print_json([_brief(m) for m in models])
        return
    if not models:
        typer.echo("no models registered (qcline models register PACKAGE)")
    for model in models:
        typer.echo(_line(model))


@registry_app.command("register")
def register(package: Annotated[Path, typer.Argument(help="Model package folder (model.onnx + metadata.json).")],
             data_dir: DataDirOption = None, as_json: JsonOption = False, actor: ActorOption = "",
             note: Annotated[str, typer.Option("--note", help="Free text kept in the model's lineage.")] = "",
             ) -> None:
    """Verify a package's sha256 and add it to the registry as a candidate (idempotent)."""
    lineage = {"registered_by": actor or default_actor(), **({"note": note} if note else {})}
    with open_registry(_settings(data_dir)) as registry:
        model = registry.register(package, lineage=lineage, actor=actor or default_actor())
    if as_json:
        print_json(_brief(model))
        return
    typer.echo(f"registered {_line(model)}\n  at {model.path}")


def _evaluator(settings: Settings) -> Callable[[RegisteredModel, Snapshot, str], DetectionMetricsJSON]:
    on_station_engine = station_evaluator(settings)

    def evaluate(model: RegisteredModel, snapshot: Snapshot, split: str) -> DetectionMetricsJSON:
        typer.echo(f"evaluating model {model.id} ({model.sha256[:12]}) on {snapshot.id[:12]} [{split}] "
                   f"(engine {settings.engine}, precision {settings.precision}) ...", err=True)
        return on_station_engine(model, snapshot, split)

    return evaluate


@registry_app.command("promote")
def promote(
    model: Annotated[str, typer.Argument(help="Model id or sha256 prefix.")],
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate fails (needs --reason).")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; required with --force, kept in the audit.")] = "",
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, max=1.0,
                                             help="How much worse than the champion a metric may be.")] = 0.01,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Holdout snapshot manifest or id (default: the marked holdout).")] = None,
    split: Annotated[str, typer.Option("--split", help="Snapshot split to evaluate on.")] = "val",
    data_dir: DataDirOption = None, as_json: JsonOption = False, actor: ActorOption = "",
) -> None:
    """Evaluate the candidate and the champion on the holdout through the runtime, then apply the gate."""
    if split not in ("train", "val"):
        raise typer.BadParameter("--split must be train or val")
    settings = _settings(data_dir)
    with open_registry(settings) as registry:
        decision = promote_on_holdout(
            registry, model, resolve=lambda value: resolve_snapshot(value, settings, registry)[0], dataset=dataset,
            split=split, tolerance=tolerance, force=force, reason=reason, actor=actor or default_actor(),
            evaluate=_evaluator(settings))
    if as_json:
        print_json(decision.to_json())
        return
    overridden = decision.failed_checks
    typer.echo(f"model {decision.model_id} ({decision.sha256[:12]}) is now {CHAMPION}"
               + (f", replacing {decision.previous_champion_id}" if decision.previous_champion_id else "")
               + (f" (FORCED over {len(overridden)} failing checks)" if overridden else ""))
    for check in decision.checks:
        mark = "ok " if check.passed else "BAD"
        typer.echo(f"  {mark} {check.name}: candidate {check.candidate} vs champion {check.champion}")


@registry_app.command("rollback")
def rollback(reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "",
             data_dir: DataDirOption = None, as_json: JsonOption = False, actor: ActorOption = "") -> None:
    """Make the previous champion the champion again."""
    with open_registry(_settings(data_dir)) as registry:
        restored = registry.rollback(actor or default_actor(), reason)
    if as_json:
        print_json(_brief(restored))
        return
    typer.echo(f"rolled back: {_line(restored)}")


@registry_app.command("audit")
def audit(model: Annotated[str | None, typer.Argument(help="Only this model (id or sha256 prefix).")] = None,
          data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Every stage change: who, when, why, forced or not."""
    with open_registry(_settings(data_dir)) as registry:
        rows = registry.audit(registry.get(model).id if model else None)
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    for row in rows:
        forced = " FORCED" if row.forced else ""
        typer.echo(f"{row.at}  model {row.model_id}: {row.from_stage or '-'} -> {row.to_stage}"
                   f"{forced}  by {row.actor}  {row.reason}")


@registry_app.command("holdout")
def holdout(snapshot: Annotated[str | None, typer.Argument(
                help="Snapshot manifest (or its folder, or id) to freeze as the benchmark; omit to show it.")] = None,
            data_dir: DataDirOption = None, as_json: JsonOption = False, actor: ActorOption = "") -> None:
    """Mark (or show) the frozen holdout snapshot every promotion is judged on."""
    settings = _settings(data_dir)
    with open_registry(settings) as registry:
        if snapshot is None:
            held = registry.holdout()
            if held is None:
                raise NotFoundError("no holdout marked: qcline models holdout SNAPSHOT_MANIFEST")
        else:
            loaded, manifest = resolve_snapshot(snapshot, settings, registry)
            held = registry.mark_holdout(loaded.id, manifest=manifest, actor=actor or default_actor())
    data = {"snapshot_id": held.snapshot_id, "manifest": str(held.manifest) if held.manifest else None,
            "marked_at": held.marked_at.isoformat() if held.marked_at else None}
    if as_json:
        print_json(data)
        return
    typer.echo(f"holdout snapshot {held.snapshot_id} ({data['manifest'] or 'manifest unknown'})")


@registry_app.command("quantize")
def quantize(
    model: Annotated[str, typer.Argument(help="Registered model id or sha256 prefix (a float model).")],
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Snapshot to calibrate on (train split) and evaluate on (val); default: the model's own "
                          "training snapshot.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Register the int8 variant even if it is slower or less "
                                                      "accurate than the float model (for experiments).")] = False,
    data_dir: DataDirOption = None, as_json: JsonOption = False, actor: ActorOption = "",
) -> None:
    """Make an int8 variant (NNCF post-training quantization), evaluate it, and register it as a candidate only
    if it is faster than the float model and within 0.01 mAP of it."""
    from inspection.model_package import ModelPackage
    from training.quantize import quantize_package

    settings = _settings(data_dir)
    with open_registry(settings) as registry:
        source = registry.get(model)
        package = ModelPackage.load(source.path)
        chosen = dataset or str(package.metadata.dataset.get("snapshot") or "")
        if not chosen:
            raise NotFoundError(f"model {source.id} names no training snapshot: pass --dataset")
        snapshot = resolve_snapshot(chosen, settings, registry)[0]
        int8 = quantize_package(package, snapshot, out_dir=settings.data_dir / "quantized" / f"{source.sha256[:12]}",
                                keep=keep)
        registered = registry.register(int8.path, lineage={"quantized_from_model": source.id,
                                                           "dataset_snapshot": snapshot.id},
                                       actor=actor or default_actor(), reason="int8 variant")
    data = {**_brief(registered), "check": int8.metadata.training.get("quantization_check", {})}
    if as_json:
        print_json(data)
        return
    typer.echo(f"registered int8 variant {_line(registered)}\n  {data['check']}")


# -- packages -------------------------------------------------------------------------------------------
@registry_app.command("build-default")
def models_build_default(
    data: Annotated[Path, typer.Option(help="NEU-DET style Pascal VOC folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Package folder to write.")] = Path("models/neu-det-yolov8n"),
    device: Annotated[str, typer.Option(help="cpu, or a CUDA device index such as 0.")] = "cpu",
    epochs: int = 88, imgsz: int = 416, batch: int = 32,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder for the YOLO dataset and runs.")] = Path(
        "runs/default"),
    model: Annotated[str, typer.Option(help="Architecture yaml, trained from scratch.")] = "yolov8n.yaml",
    val_fraction: Annotated[float, typer.Option(help="Share for val (picks the epoch).")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share for test (never used for any choice).")] = 0.2,
    time_hours: Annotated[float | None, typer.Option(
        "--time-hours", min=0.0, help="Wall-clock budget (ultralytics time=); --epochs is then a first guess.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch CPU threads (default: all cores).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data loader processes (0: in the main one).")] = None,
) -> None:
    """Reproduce the bundled default model's recipe on the train / val / test split (see its MODEL_CARD.md);
    its accuracy is measured on test, its epoch chosen on val."""
    require_train_extra()
    from training.default_model import build_default_model

    package = build_default_model(data, out_dir, work_dir=work_dir, device=device, imgsz=imgsz, epochs=epochs,
                                  batch=batch, threads=threads, workers=workers, time_hours=time_hours, model=model,
                                  val_fraction=val_fraction, test_fraction=test_fraction)
    metrics = package.metadata.metrics
    selection = metrics.get("selection") or {}
    out.print(f"wrote {package.path}: {metrics['split']} mAP@0.5 {metrics['map50']:.3f}, mAP@0.5:0.95 "
              f"{metrics['map50_95']:.3f}"
              + (f" (val, which chose the epoch: {selection['map50']:.3f} / {selection['map50_95']:.3f})"
                 if selection else ""))


@registry_app.command("measure")
def models_measure(
    package: Annotated[Path, typer.Argument(help="Model package folder (model.onnx + metadata.json).")],
    dataset: Annotated[str, typer.Option("--dataset", help="Snapshot with a test split (id or manifest path).")],
    record: Annotated[Path, typer.Option("--record", help="Write the measurement record (JSON) here.")],
    label: Annotated[str, typer.Option("--label", help="Row label (default: the package's name).")] = "",
    threads: Annotated[int, typer.Option(help="Engine threads (0: the engine's default, as a station).")] = 0,
    tta: TtaOption = None,
    data_dir: DataDirOption = None, as_json: JsonOption = False,
) -> None:
    """Measure a package for the model card: test mAP (overall, per class), frames/s at batch 8 on the
    station's default engine, package MB; one JSON record (``qcline models table`` renders rows from them).
    With ``--tta`` both figures are the augmented run's (frames/s counts frames, not engine images), and the
    record's config names the setting."""
    from inspection.model_package import ModelPackage
    from models.card import measure_package, write_record

    settings = _settings(data_dir)
    with open_registry(settings) as registry:
        snapshot = resolve_snapshot(dataset, settings, registry)[0]
        trained_on = training_snapshot(ModelPackage.load(package).metadata, settings, registry)
    result = measure_package(package, snapshot, trained_on=trained_on, engine=settings.engine,
                             precision=settings.precision, threads=threads or None, label=label, tta=tta_of(tta))
    write_record(result, record)
    if as_json:
        print_json(result)
        return
    seen = result["seen_in_training"]
    typer.echo(f"{result['label']}: test mAP@0.5 {result['test']['map50']:.3f}, mAP@0.5:0.95 "
               f"{result['test']['map50_95']:.3f} ({result['test']['images']} images"
               + (f"; trained on {seen['train']} of them" if seen else "; training snapshot not at hand")
               + f"), {result['speed']['fps']:.1f} frames/s at batch 8 ({result['speed']['engine']} "
               f"{result['speed']['precision']}"
               + (f", TTA {result['config']['tta']}" if result["config"].get("tta") else "")
               + f"), {result['package_mb']:.1f} MB -> {record}")


@registry_app.command("table")
def models_table(
    records: Annotated[list[Path], typer.Argument(help="Measurement records (qcline models measure --record).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the markdown here (default: stdout).")] = None,
) -> None:
    """Render the model card's table from measurement records only; a record that is not one is refused."""
    from models.card import load_rows, render_table

    rows, refused = load_rows(records)
    for line in refused:
        typer.echo(f"refused {line}", err=True)
    text = render_table(rows)
    if out_file is not None:
        out_file.write_text(text)
    else:
        typer.echo(text, nl=False)
    if refused:
        raise typer.Exit(code=1)


@registry_app.command("show")
def models_show(model: ModelOption = None) -> None:
    """Print a package's metadata after verifying its sha256."""
    from inspection.model_package import ModelPackage

    package = ModelPackage.load(station_model(settings_for(), model))
    print_json(package.metadata.to_json())

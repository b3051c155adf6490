"""``qcline``: the command line for stations, operators and engineers.

Every command turns a ``QCError`` into one clear line on stderr and a non-zero exit code (1: bad input
or configuration, 3: an unknown id); a traceback is a bug.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli_common import DataDirOption, EngineOption, JsonOption, PrecisionOption, print_json
from api.cli_datasets import datasets_app
from api.cli_models import registry_app
from api.cli_review import review_app
from api.cli_serve import keys_app, serve_app
from api.cli_training import training_app
from api.station import station_model
from inspection.errors import NotFoundError, QCError
from inspection.profiles import load_order_book
from inspection.rules import roll_up
from inspection.settings import Settings, load_settings
from inspection.types import UnitVerdict, Verdict

app = typer.Typer(help="qcline: AI vision quality control for build-to-order lines.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
orders_app = typer.Typer(help="Custom orders and their inspection profiles.", no_args_is_help=True)
units_app = typer.Typer(help="Units on the line and their verdicts.", no_args_is_help=True)
models_app = typer.Typer(help="Model packages.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
app.add_typer(units_app, name="units")
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")
for _command in registry_app.registered_commands:  # registry commands live under `qcline models` too
    models_app.registered_commands.append(_command)
app.registered_commands.extend(training_app.registered_commands)  # `qcline train`, `qcline evaluate`
app.add_typer(review_app, name="review")
app.add_typer(keys_app, name="keys")
app.registered_commands.extend(serve_app.registered_commands)  # `qcline serve`

# Not a terminal (CI, pipes): rich would wrap tables at 80 columns; verdict reasons need more room.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)
log = logging.getLogger("qcline")

ModelOption = Annotated[Path | None, typer.Option("--model", help="Model package folder (default: the bundled model).")]


def _settings(data_dir: Path | None = None, model: Path | None = None, engine: str | None = None,
              precision: str | None = None) -> Settings:
    return load_settings(data_dir=data_dir, model_path=model, engine=engine, precision=precision)


def _progress() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=False)




# -- orders ---------------------------------------------------------------------------------------------
@orders_app.command("import")
def orders_import(file: Annotated[Path, typer.Argument(help="Orders file (YAML/JSON): profiles + orders.")],
                  data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Import (or update) orders and their inspection profiles; re-importing a file changes nothing."""
    from api.station import open_store

    book = load_order_book(file)
    with open_store(_settings(data_dir)) as store:
        counts = store.import_order_book(book)
    if as_json:
        print_json({"orders": len(book.orders), "profiles": len(book.profiles), **counts})
        return
    out.print(f"{len(book.orders)} orders, {len(book.profiles)} profiles from {file}: "
              + ", ".join(f"{v} {k}" for k, v in counts.items()))


@orders_app.command("list")
def orders_list(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List orders with their profile."""
    from api.station import open_store

    with open_store(_settings(data_dir)) as store:
        orders = store.list_orders()
    if as_json:
        print_json([o.model_dump(mode="json") for o in orders])
        return
    table = Table("order", "customer", "product", "profile", "due")
    for o in orders:
        table.add_row(o.id, o.customer_ref, o.product, o.profile, str(o.due_date or ""))
    out.print(table)


# -- inspect --------------------------------------------------------------------------------------------
def _defects(verdict: UnitVerdict) -> str:
    counts: dict[str, list[float]] = {}
    for frame in verdict.frames:
        for finding in frame.findings:
            counts.setdefault(finding.class_name, []).append(finding.confidence)
    return ", ".join(f"{name} x{len(c)} (max {max(c):.2f})" for name, c in sorted(counts.items())) or "-"


def _verdict_table(verdicts: list[UnitVerdict], customers: dict[str, str]) -> Table:
    from api.station import VERDICT_STYLE

    table = Table("unit", "order", "customer", "verdict", "defects found", "decided by", show_lines=True)
    for v in sorted(verdicts, key=lambda v: (v.order_id, v.unit_id)):
        table.add_row(v.unit_id, v.order_id, customers.get(v.order_id, ""),
                      f"[{VERDICT_STYLE[v.verdict]}]{v.verdict.value}[/]", _defects(v),
                      "\n".join(v.reasons) or "no defect beyond the order's tolerance")
    return table


def _unit_json(v: UnitVerdict) -> dict[str, Any]:
    return {"unit_id": v.unit_id, "order_id": v.order_id, "verdict": v.verdict.value, "reasons": list(v.reasons),
            "missing_views": list(v.missing_views), "complete": v.complete, "frames": len(v.frames)}


def run_inspection(settings: Settings, *, manifest: Path | None, source: str | None, unit: str | None,
                   order: str | None, camera: str | None, close_units: bool | None,
                   as_json: bool = False, model: Path | None = None,
                   follow_champion: bool = False) -> list[UnitVerdict]:
    from api.station import open_station
    from inspection.sources import FrameSource, ManifestSource, open_source

    if (manifest is None) == (source is None):
        raise QCError("give either a MANIFEST or --source (with --unit, --order and --camera)")
    src: FrameSource
    if manifest is not None:
        src = ManifestSource(manifest)
        label, camera_label = str(manifest), "manifest"
    else:
        if not (unit and order and camera):
            raise QCError("--source needs --unit, --order and --camera")
        assert source is not None
        src = open_source(source, unit_id=unit, order_id=order, camera_id=camera)
        label, camera_label = source, camera
    close = manifest is not None if close_units is None else close_units
    with open_station(settings, model) as station, src:
        inspector = station.inspector()
        total = len(src) if hasattr(src, "__len__") else None  # type: ignore[arg-type]
        following = station.following_champion(inspector) if follow_champion else contextlib.nullcontext()
        with _progress() as progress, following:
            task = progress.add_task("inspecting", total=total)
            inspector.process(iter(src), progress=lambda n: progress.advance(task, n))
        if close:
            inspector.close_open_units()
        station.record_source(src, label, camera_label)
        customers = {o.id: o.customer_ref for o in station.store.list_orders()}
    summary = inspector.summary
    verdicts = list(summary.unit_verdicts.values())
    if as_json:
        print_json({"units": [_unit_json(v) for v in verdicts], "frames": summary.frames,
                     "failed_frames": summary.failed_frames, "rejected_frames": summary.rejected_frames,
                     "duplicate_frames": summary.duplicate_frames, "errors": summary.errors})
    else:
        out.print(_verdict_table(verdicts, customers))
        counts = {v: sum(1 for u in verdicts if u.verdict is v) for v in Verdict}
        out.print(f"{summary.frames} frames judged, {summary.failed_frames} unreadable, "
                  f"{summary.duplicate_frames} already judged, {summary.rejected_frames} rejected; units: "
                  + ", ".join(f"{n} {v.value}" for v, n in counts.items()))
        for message in summary.errors:
            err.print(f"[yellow]rejected:[/] {message}")
    if summary.rejected_frames:
        raise QCError(f"{summary.rejected_frames} frames were rejected (see above); the rest were recorded")
    return verdicts


@app.command()
def inspect(
    manifest: Annotated[Path | None, typer.Argument(help="Line manifest (CSV/JSONL) to replay.")] = None,
    source: Annotated[str | None, typer.Option(help="Image file/folder, video file, RTSP URL or camera index.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit id (with --source).")] = None,
    order: Annotated[str | None, typer.Option(help="Order id (with --source).")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera / view id (with --source).")] = None,
    close_units: Annotated[bool | None, typer.Option("--close-units/--keep-open",
                                                      help="Close units at the end (default: for manifests).")] = None,
    follow_champion: Annotated[bool, typer.Option(
        help="Switch to each newly promoted champion between batches, without stopping.")] = False,
    model: ModelOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False,
    engine: EngineOption = None, precision: PrecisionOption = None,
) -> None:
    """Inspect frames through the model (--model, else the registry's champion, else the bundled default),
    judge each unit against its order, log everything."""
    run_inspection(_settings(data_dir, engine=engine, precision=precision), manifest=manifest, source=source,
                   unit=unit, order=order,
                   camera=camera, close_units=close_units, as_json=as_json, model=model,
                   follow_champion=follow_champion)


# -- units ----------------------------------------------------------------------------------------------
@units_app.command("show")
def units_show(unit: str, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Everything recorded for a unit: frames, findings, verdicts, model and profile versions."""
    from api.station import open_store

    with open_store(_settings(data_dir)) as store:
        record = store.unit_record(unit)
    if as_json:
        print_json(record)
        return
    out.print_json(json.dumps(record, default=str))


@units_app.command("close")
def units_close(unit: str, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Close a unit now; required views that never arrived are named in its verdict."""
    from api.station import open_store

    with open_store(_settings(data_dir)) as store:
        record = store.unit_record(unit)
        frames = store.frame_verdicts(unit)
        if not frames:
            raise QCError(f"unit {unit} has no frames: nothing to judge")
        _, profile = store.get_order(record["order_id"])
        verdict = roll_up(frames, profile, closing=True)
        assert verdict is not None
        store.record_unit_verdict(verdict, closed=True)
    if as_json:
        print_json(_unit_json(verdict))
    else:
        out.print(_verdict_table([verdict], {}))


@app.command()
def report(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Verdicts per order and findings per defect class."""
    from api.station import open_store

    with open_store(_settings(data_dir)) as store:
        data = store.report()
    if as_json:
        print_json(data)
        return
    per_order = Table("order", "customer", "units", "PASS", "REVIEW", "FAIL", "open", title="per order")
    for r in data["per_order"]:
        per_order.add_row(r["order_id"], r.get("customer_ref", ""), *(str(r[k]) for k in
                                                                       ("units", "PASS", "REVIEW", "FAIL", "open")))
    per_class = Table("defect class", "counted", "uncertain", "frames", "units", title="per defect class")
    for r in data["per_class"]:
        per_class.add_row(r["class"], *(str(r[k]) for k in ("counted", "uncertain", "frames", "units")))
    out.print(per_order, per_class)


# -- detect ---------------------------------------------------------------------------------------------
@app.command()
def detect(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    model: ModelOption = None,
    conf: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Confidence threshold.")] = None,
    as_json: JsonOption = False, engine: EngineOption = None, precision: PrecisionOption = None,
) -> None:
    """Run the model on images; with --json one line per image: {"image", "detections": [...]}."""
    from inspection.detector import OnnxDetector
    from inspection.imageio import decode_image
    from inspection.sources.files import expand_image_paths

    settings = _settings(model=model, engine=engine, precision=precision)
    detector = OnnxDetector.from_settings(station_model(settings, model), settings)
    err.print(f"engine {detector.engine_name}, precision {detector.precision}")
    files = expand_image_paths(paths)
    failures = 0
    batch: list[tuple[Path, Any]] = []

    def flush() -> None:
        if not batch:
            return
        results = detector.detect([image for _, image in batch], confidence=conf)
        for (path, _), dets in zip(batch, results, strict=True):
            if as_json:
                print_json({"image": str(path), "detections": dets.to_list()})
            else:
                out.print(f"{path}: " + (", ".join(f"{d['class']} {d['confidence']:.2f} {d['box']}"
                                                   for d in dets.to_list()) or "no detections"))
        batch.clear()

    for path in files:
        try:
            batch.append((path, decode_image(path.read_bytes())))
        except (QCError, OSError) as exc:
            failures += 1
            err.print(f"[red]error:[/] {path}: {exc}")
            if as_json:
                print_json({"image": str(path), "error": str(exc), "detections": []})
        if len(batch) >= detector.max_batch:
            flush()
    flush()
    if failures:
        raise QCError(f"{failures} of {len(files)} images could not be read")


# -- demo -----------------------------------------------------------------------------------------------
DEMO_DIR = Path(__file__).resolve().parent / "demo"


@app.command()
def demo(data_dir: DataDirOption = None) -> None:
    """Import the demo orders, replay the demo line through the default model, show unit verdicts."""
    settings = _settings(data_dir)
    err.print(f"[bold]qcline demo[/]: orders {DEMO_DIR / 'orders.yaml'}, line {DEMO_DIR / 'manifest.csv'}, "
              f"model {station_model(settings).name}, database {settings.resolved_database_url}")
    orders_import(DEMO_DIR / "orders.yaml", data_dir=data_dir)
    run_inspection(settings, manifest=DEMO_DIR / "manifest.csv", source=None, unit=None, order=None, camera=None,
                   close_units=True)


# -- models ---------------------------------------------------------------------------------------------
@models_app.command("build-default")
def models_build_default(
    data: Annotated[Path, typer.Option(help="NEU-DET style Pascal VOC folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Package folder to write.")] = Path("models/neu-det-yolov8n"),
    device: Annotated[str, typer.Option(help="cpu, or a CUDA device index such as 0.")] = "cpu",
    epochs: int = 88, imgsz: int = 416, batch: int = 32,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder for the YOLO dataset and runs.")] = Path(
        "runs/default"),
) -> None:
    """Reproduce the bundled default model (see its MODEL_CARD.md)."""
    from training.default_model import build_default_model

    package = build_default_model(data, out_dir, work_dir=work_dir, device=device, imgsz=imgsz, epochs=epochs,
                                  batch=batch)
    metrics = package.metadata.metrics
    out.print(f"wrote {package.path}: mAP@0.5 {metrics['map50']:.3f}, mAP@0.5:0.95 {metrics['map50_95']:.3f}")


@models_app.command("show")
def models_show(model: ModelOption = None) -> None:
    """Print a package's metadata after verifying its sha256."""
    from models.package import ModelPackage

    package = ModelPackage.load(station_model(_settings(), model))
    print_json(package.metadata.to_json())


# -- entry point ----------------------------------------------------------------------------------------
@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    try:
        yield
    except NotFoundError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(3) from None
    except QCError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with _errors_to_exit_codes():
        app(standalone_mode=True)


if __name__ == "__main__":
    main()

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli_audit import audit_app
from api.cli_calibrate import calibrate_app
from api.cli_common import DataDirOption, EngineOption, JsonOption, PrecisionOption, print_json
from api.cli_datasets import datasets_app
from api.cli_evidence import evidence_app
from api.cli_models import registry_app
from api.cli_review import review_app
from api.cli_serve import keys_app, serve_app
from api.cli_station import station_app
from api.cli_training import training_app
from api.station import station_model
from inspection.errors import NotFoundError, QCError
from inspection.profiles import load_order_book
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
app.add_typer(evidence_app, name="evidence")
for _command in registry_app.registered_commands:  # registry commands live under `qcline models` too
    models_app.registered_commands.append(_command)
app.registered_commands.extend(training_app.registered_commands)  # `qcline train`, `qcline evaluate`
app.add_typer(review_app, name="review")
app.add_typer(keys_app, name="keys")
app.add_typer(station_app, name="station")
app.add_typer(calibrate_app, name="calibrate")
app.add_typer(audit_app, name="audit")
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


def _conformance(verdict: UnitVerdict) -> str:
    """Measured against ordered, per rule and camera: what the customer asked for and what was built."""
    from api.station import VERDICT_STYLE

    return "\n".join(f"{c.name} ({f.camera_id}): {c.measured} vs {c.expected}"
                     + (f", dev {c.deviation:g}" if c.deviation is not None else "")
                     + f" [{VERDICT_STYLE[c.outcome]}]{c.outcome.value}[/]"
                     for f in verdict.frames for c in f.conformance) or "-"


def _verdict_table(verdicts: list[UnitVerdict], customers: dict[str, str]) -> Table:
    from api.station import VERDICT_STYLE

    measured = any(f.conformance for v in verdicts for f in v.frames)
    columns = ["unit", "order", "customer", "verdict", "defects found"] + (["conformance"] if measured else [])
    table = Table(*columns, "decided by", show_lines=True)
    for v in sorted(verdicts, key=lambda v: (v.order_id, v.unit_id)):
        table.add_row(v.unit_id, v.order_id, customers.get(v.order_id, ""),
                      f"[{VERDICT_STYLE[v.verdict]}]{v.verdict.value}[/]", _defects(v),
                      *([_conformance(v)] if measured else []),
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
            # A frame advances the bar once it is committed (durable), not when it was judged.
            inspector.process(iter(src), progress=lambda n: progress.advance(task, n))
            station.writer.flush()
        if close:
            inspector.close_open_units()
        station.writer.flush()
        recorded = station.writer.stats.written
        station.record_source(src, label, camera_label)
        customers = {o.id: o.customer_ref for o in station.store.list_orders()}
    summary = inspector.summary
    verdicts = list(summary.unit_verdicts.values())
    if as_json:
        print_json({"units": [_unit_json(v) for v in verdicts], "frames": summary.frames,
                     "failed_frames": summary.failed_frames, "rejected_frames": summary.rejected_frames,
                     "duplicate_frames": summary.duplicate_frames, "recorded_frames": recorded,
                     "not_recorded_frames": summary.not_recorded, "errors": list(summary.errors)})
    else:
        out.print(_verdict_table(verdicts, customers))
        counts = {v: sum(1 for u in verdicts if u.verdict is v) for v in Verdict}
        out.print(f"{summary.frames} frames judged, {summary.failed_frames} unreadable, "
                  f"{summary.duplicate_frames} already judged, {summary.rejected_frames} rejected, {recorded} newly "
                  f"recorded, {summary.not_recorded} NOT recorded; units: "
                  + ", ".join(f"{n} {v.value}" for v, n in counts.items()))
        for message in summary.errors:
            err.print(f"[yellow]rejected:[/] {message}")
    if summary.rejected_frames or summary.not_recorded:
        raise QCError(f"{summary.rejected_frames} frames were rejected and {summary.not_recorded} not recorded (see "
                      "above); every other frame is committed")
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

    with open_store(_settings(data_dir)) as store:  # rolled up in the store under the unit's lock
        verdict = store.commit_group([], close_units=[unit]).unit_verdicts[unit]
    if as_json:
        print_json(_unit_json(verdict))
    else:
        out.print(_verdict_table([verdict], {}))


report_app = typer.Typer(help="Shift report; `report order ORDER --html FILE`: an order's inspection certificate.")
app.add_typer(report_app, name="report")


@report_app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context, data_dir: DataDirOption = None, as_json: JsonOption = False,
    since: Annotated[datetime | None, typer.Option(help="Window start (UTC unless it says otherwise).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Window end, exclusive.")] = None,
    bucket: Annotated[str, typer.Option(help="p-chart subgroups: hour, shift, day or week.")] = "day",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write QC analytics plots (SVG, PNG) here.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Write QC analytics tables (CSV) here.")] = None,
) -> None:
    """Verdicts per order and findings per defect class; with --since/--until/--plot/--csv the QC analytics
    (Pareto, first-pass yield, p-charts per line/camera/shift, rates, REVIEW overturn rate) of a window."""
    from api.station import open_store

    if ctx.invoked_subcommand is not None:
        return
    if plot is not None or csv_dir is not None or since is not None or until is not None:
        _analytics_report(data_dir, as_json, since, until, bucket, plot, csv_dir)
        return

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


def _analytics_report(data_dir: Path | None, as_json: bool, since: datetime | None, until: datetime | None,
                      bucket: str, plot: Path | None, csv_dir: Path | None) -> None:
    from api.analytics_output import write_csv, write_plots
    from api.station import open_store
    from inspection.analytics import summary

    if bucket not in ("hour", "shift", "day", "week"):
        raise QCError(f"--bucket {bucket!r}: use hour, shift, day or week")
    since, until = (None if t is None else t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    if since is not None and until is not None and since >= until:
        raise QCError("--since must be before --until")
    with open_store(_settings(data_dir)) as store:
        data = summary(store.line_history(since, until), bucket=bucket, since=since, until=until)  # type: ignore[arg-type]
    written = (write_csv(data, csv_dir) if csv_dir else []) + (write_plots(data, plot) if plot else [])
    if as_json:
        print_json({**data, "files": [str(p) for p in written]})
        return
    fpy, overturn = data["first_pass_yield"], data["overturn_rate"]
    out.print(f"{data['frames']} frames, {data['units']} units; first-pass yield "
              + (f"{fpy['value']:.1%} ({fpy['passed']}/{fpy['judged']})" if fpy["value"] is not None else "-")
              + "; REVIEW overturn rate "
              + (f"{overturn['value']:.1%} ({overturn['false_alarms']}/{overturn['reviewed']})"
                 if overturn["value"] is not None else "- (no reviews)"))
    flagged = [(c["dimension"], c["key"], p["subgroup"]) for c in data["p_charts"] for p in c["points"]
               if p["out_of_control"]]
    for dimension, key, subgroup in flagged:
        out.print(f"[bold red]out of control[/]: {dimension} {key or '-'} at {subgroup}")
    for path in written:
        out.print(f"wrote {path}")


@report_app.command("order")
def report_order(order: Annotated[str, typer.Argument(help="Order id.")],
                 html: Annotated[Path, typer.Option("--html", help="Certificate file to write (HTML).")],
                 data_dir: DataDirOption = None) -> None:
    """Write the order's inspection certificate: each unit's verdict, evidence frames with their boxes,
    conformance values, model and profile versions, and its link in the traceability chain."""
    from api.certificate import certificate_data, render_certificate
    from api.station import open_store

    with open_store(_settings(data_dir)) as store:
        data = certificate_data(store, order)
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_certificate(data), encoding="utf-8")
    except OSError as e:
        raise QCError(f"cannot write the certificate to {html}: {e}") from e
    state = "chain intact" if data["verification"]["ok"] else f"CHAIN BROKEN: {data['verification']['first_broken']}"
    out.print(f"certificate of {order} ({len(data['units'])} units) written to {html}; {state}")


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
    from inspection.imageio import decode
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
        results = detector.detect([decoded.image for _, decoded in batch], confidence=conf)
        for (path, decoded), found in zip(batch, results, strict=True):
            dets = found.scaled(decoded.scale)  # a large image decoded reduced: boxes in its own pixels
            if as_json:
                print_json({"image": str(path), "detections": dets.to_list()})
            else:
                out.print(f"{path}: " + (", ".join(f"{d['class']} {d['confidence']:.2f} {d['box']}"
                                                   for d in dets.to_list()) or "no detections"))
        batch.clear()

    for path in files:
        try:
            batch.append((path, decode(path.read_bytes(), max_pixels=settings.max_frame_pixels)))
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


def _demo_calibration(data_dir: Path | None) -> None:
    """Calibrate the demo's panel camera the way an engineer would at commissioning (see api/demo/README.md)."""
    from api.cli_calibrate import calibrate_colour, calibrate_scale

    calibrate_colour(DEMO_DIR / "frames" / "calib_white.png", camera="panel", patch="0.02,0.025,0.095,0.1",
                     reference="Lab(90, 0, 0)", actor="demo", data_dir=data_dir)
    calibrate_scale(DEMO_DIR / "frames" / "calib_checkerboard.png", camera="panel", checkerboard="7x5",
                    square_mm=40.0, actor="demo", data_dir=data_dir)


@app.command()
def demo(data_dir: DataDirOption = None) -> None:
    """Import the demo orders, replay the demo line through the default model, show unit verdicts."""
    settings = _settings(data_dir)
    err.print(f"[bold]qcline demo[/]: orders {DEMO_DIR / 'orders.yaml'}, line {DEMO_DIR / 'manifest.csv'}, "
              f"model {station_model(settings).name}, database {settings.resolved_database_url}")
    orders_import(DEMO_DIR / "orders.yaml", data_dir=data_dir)
    _demo_calibration(data_dir)
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

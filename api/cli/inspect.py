"""``qcline inspect``, ``detect`` and ``demo``: frames through the model, judged against their orders."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.calibrate import calibrate_colour, calibrate_scale
from api.cli.common import (
    DataDirOption,
    EngineOption,
    JsonOption,
    ModelOption,
    PrecisionOption,
    err,
    out,
    print_json,
    progress,
    settings_for,
)
from api.cli.orders import orders_import
from api.composition import station_model
from inspection.errors import QCError
from inspection.settings import Settings
from inspection.types import UnitVerdict, Verdict

inspect_app = typer.Typer()  # its commands sit at the top level: `qcline inspect`, `detect`, `demo`


def _defects(verdict: UnitVerdict) -> str:
    counts: dict[str, list[float]] = {}
    for frame in verdict.frames:
        for finding in frame.findings:
            counts.setdefault(finding.class_name, []).append(finding.confidence)
    return ", ".join(f"{name} x{len(c)} (max {max(c):.2f})" for name, c in sorted(counts.items())) or "-"


def _conformance(verdict: UnitVerdict) -> str:
    """Measured against ordered, per rule and camera: what the customer asked for and what was built."""
    from api.composition import VERDICT_STYLE

    return "\n".join(f"{c.name} ({f.camera_id}): {c.measured} vs {c.expected}"
                     + (f", dev {c.deviation:g}" if c.deviation is not None else "")
                     + f" [{VERDICT_STYLE[c.outcome]}]{c.outcome.value}[/]"
                     for f in verdict.frames for c in f.conformance) or "-"


def verdict_table(verdicts: list[UnitVerdict], customers: dict[str, str]) -> Table:
    from api.composition import VERDICT_STYLE

    measured = any(f.conformance for v in verdicts for f in v.frames)
    columns = ["unit", "order", "customer", "verdict", "defects found"] + (["conformance"] if measured else [])
    table = Table(*columns, "decided by", show_lines=True)
    for v in sorted(verdicts, key=lambda v: (v.order_id, v.unit_id)):
        table.add_row(v.unit_id, v.order_id, customers.get(v.order_id, ""),
                      f"[{VERDICT_STYLE[v.verdict]}]{v.verdict.value}[/]", _defects(v),
                      *([_conformance(v)] if measured else []),
                      "\n".join(v.reasons) or "no defect beyond the order's tolerance")
    return table


def unit_json(v: UnitVerdict) -> dict[str, Any]:
    return {"unit_id": v.unit_id, "order_id": v.order_id, "verdict": v.verdict.value, "reasons": list(v.reasons),
            "missing_views": list(v.missing_views), "complete": v.complete, "frames": len(v.frames)}


def run_inspection(settings: Settings, *, manifest: Path | None, source: str | None, unit: str | None,
                   order: str | None, camera: str | None, close_units: bool | None,
                   as_json: bool = False, model: Path | None = None,
                   follow_champion: bool = False, give_up_s: float | None = None) -> list[UnitVerdict]:
    from api.composition import open_station
    from inspection.sources import FrameSource, LiveCaptureSource, ManifestSource, open_source

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
        src = open_source(source, unit_id=unit, order_id=order, camera_id=camera, give_up_s=give_up_s)
        label, camera_label = source, camera
        if isinstance(src, LiveCaptureSource):
            err.print(f"waiting for frames from {src.label}"
                      + (f" (giving up after {give_up_s:g} s without one)" if give_up_s is not None else
                         " (retrying until stopped)"))
    close = manifest is not None if close_units is None else close_units
    with open_station(settings, model) as station, src:
        inspector = station.inspector()
        total = len(src) if hasattr(src, "__len__") else None  # type: ignore[arg-type]
        following = station.following_champion(inspector) if follow_champion else contextlib.nullcontext()
        with progress() as bar, following:
            task = bar.add_task("inspecting", total=total)
            # A frame advances the bar once it is committed (durable), not when it was judged.
            inspector.process(iter(src), progress=lambda n: bar.advance(task, n))
            station.writer.flush()
        if close:
            inspector.close_open_units()
        station.writer.flush()
        recorded = station.writer.stats.written
        station.record_source(src, label, camera_label)
        if isinstance(src, LiveCaptureSource) and src.stats.frames_read == 0:
            raise QCError(f"no frame from {src.label}: {src.stats.last_error or 'the source ended'}")
        customers = {o.id: o.customer_ref for o in station.store.list_orders()}
    summary = inspector.summary
    verdicts = list(summary.unit_verdicts.values())
    if as_json:
        print_json({"units": [unit_json(v) for v in verdicts], "frames": summary.frames,
                     "failed_frames": summary.failed_frames, "rejected_frames": summary.rejected_frames,
                     "duplicate_frames": summary.duplicate_frames, "recorded_frames": recorded,
                     "not_recorded_frames": summary.not_recorded, "errors": list(summary.errors)})
    else:
        out.print(verdict_table(verdicts, customers))
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


@inspect_app.command()
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
    give_up_s: Annotated[float, typer.Option(
        "--give-up-s", min=0.0, help="A camera or stream that delivers no frame for this long ends the command "
        "with an error (0: at the first failure).")] = 15.0,
    model: ModelOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False,
    engine: EngineOption = None, precision: PrecisionOption = None,
) -> None:
    """Inspect frames through the model (--model, else $QC_MODEL_PATH, else the registry's champion, else the
    bundled default), judge each unit against its order, log everything."""
    run_inspection(settings_for(data_dir, engine=engine, precision=precision), manifest=manifest, source=source,
                   unit=unit, order=order,
                   camera=camera, close_units=close_units, as_json=as_json, model=model,
                   follow_champion=follow_champion, give_up_s=give_up_s)


@inspect_app.command()
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

    settings = settings_for(model=model, engine=engine, precision=precision)
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


DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def _demo_calibration(data_dir: Path | None) -> None:
    """Calibrate the demo's panel camera the way an engineer would at commissioning (see api/demo/README.md)."""
    calibrate_colour(DEMO_DIR / "frames" / "calib_white.png", camera="panel", patch="0.02,0.025,0.095,0.1",
                     reference="Lab(90, 0, 0)", actor="demo", data_dir=data_dir)
    calibrate_scale(DEMO_DIR / "frames" / "calib_checkerboard.png", camera="panel", checkerboard="7x5",
                    square_mm=40.0, actor="demo", data_dir=data_dir)


@inspect_app.command()
def demo(
    data_dir: DataDirOption = None,
    line: Annotated[bool, typer.Option("--line", help="A moving line instead of the replay: a simulated PLC and "
                                       "RTSP cameras on loopback, `qcline station run` answering each unit.")] = False,
    units: Annotated[int, typer.Option(min=1, max=10_000, help="--line: units that pass.")] = 10,
    rate: Annotated[float, typer.Option(min=1.0, max=600.0, help="--line: units per minute.")] = 60.0,
) -> None:
    """Import the demo orders, replay the demo line through the default model, show unit verdicts.

    With --line, units of the demo orders pass a station on a simulated line (drills/line_simulator.py) and
    each verdict is printed as the line hears it, with its trigger-to-answer latency."""
    if line:  # the simulator is its own program (it plays the PLC and the cameras and runs a station process)
        command = [sys.executable, "-m", "drills.line_simulator", "--units", str(units), "--rate", str(rate)]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        raise SystemExit(subprocess.call(command))
    settings = settings_for(data_dir)
    err.print(f"[bold]qcline demo[/]: orders {DEMO_DIR / 'orders.yaml'}, line {DEMO_DIR / 'manifest.csv'}, "
              f"model {station_model(settings).name}, database {settings.resolved_database_url}")
    orders_import(DEMO_DIR / "orders.yaml", data_dir=data_dir)
    _demo_calibration(data_dir)
    run_inspection(settings, manifest=DEMO_DIR / "manifest.csv", source=None, unit=None, order=None, camera=None,
                   close_units=True)

"""``qcline``: the command line for stations, operators and engineers.

Every command turns a ``QCError`` into one clear line on stderr and a non-zero exit code (1: bad input
or configuration, 3: an unknown id); a traceback is a bug.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.audit import audit_app
from api.cli.calibrate import calibrate_app
from api.cli.common import (
    DataDirOption,
    EngineOption,
    JsonOption,
    PrecisionOption,
    missing_train_extra,
    print_json,
    require_database,
    require_train_extra,
)
from api.cli.datasets import datasets_app
from api.cli.evidence import evidence_app
from api.cli.models import registry_app
from api.cli.review import review_app
from api.cli.serve import keys_app, serve_app
from api.cli.station import station_app
from api.cli.training import training_app
from api.composition import station_model
from inspection.errors import NotFoundError, QCError
from inspection.profiles import load_order_book
from inspection.settings import Settings, default_data_dir, load_settings
from inspection.types import UnitVerdict, Verdict

APP_HELP = (
    "qcline: AI vision quality control for build-to-order lines.\n\n"
    f"Data folder (SQLite database, evidence frames, registry, snapshots): $QC_DATA_DIR, else {default_data_dir()} "
    "(the same from any working folder; --data-dir on a command wins). QC_DATABASE_URL points at PostgreSQL "
    "instead of the SQLite file.\n\n"
    "Model a station runs: --model, else $QC_MODEL_PATH, else the registry's champion, else the bundled "
    "models/neu-det-yolov8n (a fresh registry starts with it as champion).")
app = typer.Typer(help=APP_HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
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
err = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal width
log = logging.getLogger("qcline")

ModelOption = Annotated[Path | None, typer.Option(
    "--model", help="Model package folder (default: $QC_MODEL_PATH, else the registry's champion, else the bundled "
    "model).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"qcline {version('qcline')}")
        except PackageNotFoundError:  # running from a source tree that was never pip-installed
            typer.echo("qcline (not installed: run from a source tree)")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More logging on stderr (-v info, -vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    _show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.getLogger().setLevel(level)


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
    from api.composition import open_store

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
    from api.composition import open_store

    settings = _settings(data_dir)
    require_database(settings)
    with open_store(settings) as store:
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
    from api.composition import VERDICT_STYLE

    return "\n".join(f"{c.name} ({f.camera_id}): {c.measured} vs {c.expected}"
                     + (f", dev {c.deviation:g}" if c.deviation is not None else "")
                     + f" [{VERDICT_STYLE[c.outcome]}]{c.outcome.value}[/]"
                     for f in verdict.frames for c in f.conformance) or "-"


def _verdict_table(verdicts: list[UnitVerdict], customers: dict[str, str]) -> Table:
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


def _unit_json(v: UnitVerdict) -> dict[str, Any]:
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
        if isinstance(src, LiveCaptureSource) and src.stats.frames_read == 0:
            raise QCError(f"no frame from {src.label}: {src.stats.last_error or 'the source ended'}")
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
    give_up_s: Annotated[float, typer.Option(
        "--give-up-s", min=0.0, help="A camera or stream that delivers no frame for this long ends the command "
        "with an error (0: at the first failure).")] = 15.0,
    model: ModelOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False,
    engine: EngineOption = None, precision: PrecisionOption = None,
) -> None:
    """Inspect frames through the model (--model, else $QC_MODEL_PATH, else the registry's champion, else the
    bundled default), judge each unit against its order, log everything."""
    run_inspection(_settings(data_dir, engine=engine, precision=precision), manifest=manifest, source=source,
                   unit=unit, order=order,
                   camera=camera, close_units=close_units, as_json=as_json, model=model,
                   follow_champion=follow_champion, give_up_s=give_up_s)


# -- units ----------------------------------------------------------------------------------------------
@units_app.command("show")
def units_show(unit: str, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Everything recorded for a unit: verdict and why, frames and findings, reviews, dispositions, the model
    and profile versions that judged it (a table; --json for the full record)."""
    from api.composition import open_store
    from inspection.store.reviews import ReviewService

    settings = _settings(data_dir)
    require_database(settings)
    with open_store(settings) as store:
        record = store.unit_record(unit)
        reviews = ReviewService(store)
        record["dispositions"] = [d.to_json() for d in reviews.dispositions(unit)]
        histories = reviews.histories([f["id"] for f in record["frames"]])
        for frame in record["frames"]:
            frame["reviews"] = histories.get(frame["id"], [])
    if as_json:
        print_json(record)
        return
    out.print(_unit_card(record, _zone(settings)))


def _zone(settings: Settings) -> Any:
    """The zone times are shown in: QC_TIMEZONE, else the machine's local zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if settings.timezone:
        try:
            return ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise QCError(f"QC_TIMEZONE={settings.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    return datetime.now().astimezone().tzinfo


def _local(value: str | None, zone: Any) -> str:
    from datetime import datetime

    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _unit_card(record: dict[str, Any], zone: Any) -> Any:
    from rich.console import Group

    from api.composition import VERDICT_STYLE

    verdict = record["verdict"]
    style = VERDICT_STYLE.get(Verdict(verdict), "") if verdict else "dim"
    order = record["order"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("unit", f"{record['unit_id']}  [{style}]{verdict or 'not judged yet'}[/]  ({record['status']})")
    head.add_row("order", f"{order['id']}  {order.get('customer_ref', '')}  {order.get('product', '')}"
                 + (f"  due {order['due_date']}" if order.get("due_date") else ""))
    head.add_row("profile", f"{record['profile']['name']} ({record['profile']['hash'][:12]})")
    head.add_row("why", "\n".join(record["reasons"]) or "no defect beyond the order's tolerance")
    if record["missing_views"]:
        head.add_row("missing views", ", ".join(record["missing_views"]))
    head.add_row("model", ", ".join(sha[:12] for sha in record["model_sha256s"]) or "-")
    disp = record.get("dispositions") or []
    head.add_row("disposition", "\n".join(f"{d['disposition']} by {d['actor']} at {_local(d['at'], zone)}"
                                          + (f" ({d['note']})" if d["note"] else "") for d in disp)
                 or ("awaiting an operator" if verdict in ("REVIEW", "FAIL") else "-"))
    frames = Table("frame", "camera", "captured", "verdict", "findings", "why", "reviews", show_lines=True,
                   title="frames")
    for f in record["frames"]:
        fstyle = VERDICT_STYLE.get(Verdict(f["verdict"]), "") if f["verdict"] else ""
        findings = "\n".join(f"{d['class']} {d['confidence']:.2f} {d['outcome']}" for d in f["findings"]) or "-"
        reviews = "\n".join(f"{r['decision']} by {r['actor']}" for r in f.get("reviews", [])) or "-"
        frames.add_row(str(f["id"]), f["camera_id"], _local(f["captured_at"], zone), f"[{fstyle}]{f['verdict']}[/]",
                       findings, "\n".join(f["reasons"]) or (f["error"] or "-"), reviews)
    return Group(head, frames)


@units_app.command("close")
def units_close(unit: str, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Close a unit now; required views that never arrived are named in its verdict."""
    from api.composition import open_store

    settings = _settings(data_dir)
    require_database(settings)
    with open_store(settings) as store:  # rolled up in the store under the unit's lock
        verdict = store.commit_group([], close_units=[unit]).unit_verdicts[unit]
    if as_json:
        print_json(_unit_json(verdict))
    else:
        out.print(_verdict_table([verdict], {}))


def _when(text: str | None, zone: Any, option: str) -> Any:
    """A date (local midnight) or a date-time (local unless it names its zone) as an aware datetime."""
    from datetime import datetime

    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise QCError(f"{option} must be a date or date-time like 2026-11-26 or 2026-11-26T06:00, got {text!r}") \
            from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


report_app = typer.Typer(help="Shift report; `report order ORDER --html FILE`: an order's inspection certificate.")
app.add_typer(report_app, name="report")


@report_app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="From this date / date-time (local time), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date / date-time (local time), exclusive.")] = None,
    camera: Annotated[list[str] | None, typer.Option(
        "--camera", "--station", help="Only frames of this camera / station (repeatable).")] = None,
    shift: Annotated[str | None, typer.Option(help="Only frames captured in these local hours: 06-14, 22-06.")] = None,
    bucket: Annotated[str, typer.Option(help="p-chart subgroups (with --plot/--csv): hour, shift, day or week.")]
    = "day",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write QC analytics plots (SVG, PNG) here.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Write QC analytics tables (CSV) here.")] = None,
    data_dir: DataDirOption = None, as_json: JsonOption = False,
) -> None:
    """Units, verdicts, dispositions and yield per order; findings per defect class; for a window, cameras
    and a shift (hours in QC_TIMEZONE, else the machine's zone). With --plot/--csv: the QC analytics (Pareto,
    first-pass yield, p-charts per line/camera/shift, rates, REVIEW overturn rate) of the window."""
    from api.composition import open_store
    from inspection.store.shift_report import ReportFilter, parse_shift, shift_report

    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(data_dir)
    zone = _zone(settings)
    filt = ReportFilter(since=_when(since, zone, "--since"), until=_when(until, zone, "--until"),
                        cameras=tuple(camera or ()), shift=parse_shift(shift) if shift else None, tz=zone)
    if filt.since and filt.until and filt.since >= filt.until:
        raise QCError("--since must be before --until")
    require_database(settings)
    if plot is not None or csv_dir is not None:
        _analytics_report(data_dir, as_json, filt.since, filt.until, bucket, plot, csv_dir)
        return
    with open_store(settings) as store:
        data = shift_report(store, filt)
    if as_json:
        print_json(data)
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    columns = ("units", "PASS", "REVIEW", "FAIL", "open", "release", "rework", "scrap", "awaiting_disposition")
    per_order = Table("order", "customer", *(c.replace("awaiting_disposition", "to decide") for c in columns),
                      "first-pass yield", "final yield", title="per order")
    for r in data["per_order"]:
        per_order.add_row(r["order_id"], r.get("customer_ref", ""), *(str(r[k]) for k in columns),
                          pct(r["first_pass_yield"]), pct(r["final_yield"]))
    t = data["total"]
    per_order.add_row("[bold]total[/]", "", *(f"[bold]{t[k]}[/]" for k in columns),
                      f"[bold]{pct(t['first_pass_yield'])}[/]", f"[bold]{pct(t['final_yield'])}[/]")
    per_class = Table("defect class", "counted", "uncertain", "frames", "units", title="per defect class")
    for r in data["per_class"]:
        per_class.add_row(r["class"], *(str(r[k]) for k in ("counted", "uncertain", "frames", "units")))
    f = data["filter"]
    scope = ", ".join(x for x in (f"since {f['since']}" if f["since"] else "",
                                  f"until {f['until']}" if f["until"] else "",
                                  f"cameras {', '.join(f['cameras'])}" if f["cameras"] else "",
                                  f"shift {f['shift']} ({f['timezone']})" if f["shift"] else "") if x)
    out.print(f"report: {scope or 'everything recorded'}")
    out.print(per_order, per_class)


def _analytics_report(data_dir: Path | None, as_json: bool, since: datetime | None, until: datetime | None,
                      bucket: str, plot: Path | None, csv_dir: Path | None) -> None:
    from api.composition import open_store
    from api.services.charts import write_csv, write_plots
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
    from api.composition import open_store
    from api.services.certificate import certificate_data, render_certificate

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
DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def _demo_calibration(data_dir: Path | None) -> None:
    """Calibrate the demo's panel camera the way an engineer would at commissioning (see api/demo/README.md)."""
    from api.cli.calibrate import calibrate_colour, calibrate_scale

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
    require_train_extra()
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
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(3) from None
    except QCError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(1) from None
    except ModuleNotFoundError as exc:
        hint = missing_train_extra(exc)
        if hint is None:
            raise
        err.print(f"[red]error:[/] {escape(str(hint))}")
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

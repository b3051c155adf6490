"""``qcline calibrate``: per-camera colour (white balance), scale (px/mm) and part-label reading.

Calibrations are stored in the results database (append-only, the latest per camera and kind counts), so
every station sharing it measures with the same numbers and an auditor can see when a camera changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.cli.common import DataDirOption, JsonOption, default_actor, print_json
from inspection.conformance.colour import Roi, WhiteBalance, parse_colour
from inspection.conformance.dimensions import scale_from_checkerboard, scale_from_reference
from inspection.errors import QCError
from inspection.imageio import decode_image
from inspection.settings import load_settings
from inspection.store.records import CalibrationRecord

calibrate_app = typer.Typer(help="Camera calibration for conformance (colour, px/mm).", no_args_is_help=True)
out = Console()

CameraOption = Annotated[str, typer.Option("--camera", help="Camera / view id, as frames name it.")]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Who calibrated (default: the login name).")]


def _image(path: Path) -> Any:
    try:
        return decode_image(path.read_bytes())
    except OSError as e:
        raise QCError(f"cannot read calibration image {path}: {e}") from e


def _roi(text: str) -> Roi:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as e:
        raise QCError(f"--patch {text!r}: expected four fractions x0,y0,x1,y1") from e
    if len(values) != 4 or not all(0 <= v <= 1 for v in values) or values[0] >= values[2] or values[1] >= values[3]:
        raise QCError(f"--patch {text!r}: expected four fractions x0,y0,x1,y1 in [0, 1] with x0 < x1, y0 < y1")
    return values


def _pair(text: str, option: str) -> tuple[float, float]:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*x\s*(\d+(?:\.\d+)?)\s*", text)
    if not match:
        raise QCError(f"{option} {text!r}: expected AxB, e.g. 7x5")
    return float(match[1]), float(match[2])


def _store(data_dir: Path | None) -> Any:
    from api.composition import open_store

    return open_store(load_settings(data_dir=data_dir))


def _show(record: CalibrationRecord, as_json: bool) -> None:
    if as_json:
        print_json(record.to_json())
    else:
        out.print(f"camera {record.camera_id}: {record.kind} calibration {dict(record.values)} "
                  f"recorded by {record.actor}")


@calibrate_app.command("colour")
def calibrate_colour(
    image: Annotated[Path, typer.Argument(help="Frame showing the reference patch under the line's light.")],
    camera: CameraOption,
    patch: Annotated[str, typer.Option(help="Patch region as fractions x0,y0,x1,y1.")],
    reference: Annotated[str, typer.Option(help="The patch's true colour: Lab(L,a,b), #RRGGBB or RAL code.")] = (
        "Lab(90, 0, 0)"),
    actor: ActorOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False,
) -> None:
    """White balance of a camera from a reference patch of known colour (grey card, white tile)."""
    balance = WhiteBalance.from_patch(_image(image), _roi(patch), parse_colour(reference))
    with _store(data_dir) as store:
        record = store.record_calibration(camera, "colour", {**balance.to_json(), "reference": reference,
                                                             "patch": list(_roi(patch)), "image": str(image)},
                                          actor=actor or default_actor())
    _show(record, as_json)


@calibrate_app.command("scale")
def calibrate_scale(
    image: Annotated[Path, typer.Argument(help="Frame of the target lying where panels lie (the belt).")],
    camera: CameraOption,
    checkerboard: Annotated[str | None, typer.Option(help="Inner corners COLSxROWS of a checkerboard.")] = None,
    square_mm: Annotated[float | None, typer.Option(help="Checkerboard square size in mm.")] = None,
    plate: Annotated[str | None, typer.Option(help="A rectangular reference plate WxH in mm instead.")] = None,
    actor: ActorOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False,
) -> None:
    """px/mm of a camera from a checkerboard (--checkerboard 7x5 --square-mm 20) or a plate (--plate 300x200)."""
    frame = _image(image)
    if (checkerboard is None) == (plate is None):
        raise QCError("give either --checkerboard COLSxROWS with --square-mm, or --plate WxH (mm)")
    if checkerboard is not None:
        if square_mm is None or square_mm <= 0:
            raise QCError("--checkerboard needs --square-mm (the square size in mm, > 0)")
        cols, rows = _pair(checkerboard, "--checkerboard")
        px_per_mm = scale_from_checkerboard(frame, (int(cols), int(rows)), square_mm)
        method = f"checkerboard {int(cols)}x{int(rows)} of {square_mm:g} mm squares"
    else:
        assert plate is not None
        width, height = _pair(plate, "--plate")
        px_per_mm = scale_from_reference(frame, width, height)
        method = f"reference plate {width:g} x {height:g} mm"
    with _store(data_dir) as store:
        record = store.record_calibration(camera, "scale", {"px_per_mm": px_per_mm, "method": method,
                                                            "image": str(image)}, actor=actor or default_actor())
    _show(record, as_json)


@calibrate_app.command("show")
def calibrate_show(camera: Annotated[str | None, typer.Option(help="Only this camera.")] = None,
                   data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """The current calibration of each camera."""
    with _store(data_dir) as store:
        rows = store.calibrations(camera)
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    table = Table("camera", "kind", "values", "by", "at")
    for r in rows:
        values = r.values
        shown = (f"gains {', '.join(f'{g:.3f}' for g in values['gains'])}" if r.kind == "colour"
                 else f"{values['px_per_mm']:.4f} px/mm ({values.get('method', '')})" if r.kind == "scale"
                 else f"{','.join(values['formats'])} in {values['roi']}, pattern {values['pattern']}")
        table.add_row(r.camera_id, r.kind, shown, r.actor, str(r.created_at))
    out.print(table)


@calibrate_app.command("label")
def calibrate_label(
    camera: CameraOption,
    formats: Annotated[str, typer.Option(help="Label formats, comma-separated (zxing-cpp names).")] = (
        "QRCode,DataMatrix,Code128"),
    roi: Annotated[str, typer.Option(help="Where labels are, as fractions x0,y0,x1,y1.")] = "0,0,1,1",
    pattern: Annotated[str, typer.Option(help="Regex over the label text: a 'unit' group, optionally 'order'.")] = (
        r"(?P<unit>.+)"),
    required: Annotated[bool, typer.Option(help="A frame without a readable label goes to REVIEW.")] = False,
    test_image: Annotated[Path | None, typer.Option(help="Read this frame with the new settings and show it.")] = None,
    actor: ActorOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False,
) -> None:
    """How a camera reads part labels (QR / DataMatrix / barcodes): formats, region, and what the text means."""
    from inspection.identity import LabelSettings, read_labels

    settings = LabelSettings.parse({"formats": [f.strip() for f in formats.split(",") if f.strip()],
                                    "roi": list(_roi(roi)), "pattern": pattern, "required": required})
    if test_image is not None:
        labels = read_labels(_image(test_image), settings)
        if not labels:
            raise QCError(f"no label matching the settings found in {test_image}: nothing recorded")
        for label in labels:
            out.print(f"{test_image}: {label.format} {label.text!r} -> unit {label.unit_id}"
                      + (f", order {label.order_id}" if label.order_id else ""))
    with _store(data_dir) as store:
        record = store.record_calibration(camera, "label", settings.model_dump(mode="json"),
                                          actor=actor or default_actor())
    _show(record, as_json)

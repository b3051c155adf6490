"""What every ``qcline`` command module shares: the common options, the consoles, settings, JSON output, local
times, who is acting."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from inspection.errors import QCError
from inspection.model_package import PACKAGE_TTA, TTA
from inspection.settings import Settings, load_settings

TRAIN_EXTRA_HINT = ("training needs the [train] extra (torch, ultralytics, matplotlib): "
                    "pip install -e '.[train]'  (or: make train-deps)")
TRAIN_MODULES = frozenset({"torch", "torchvision", "ultralytics", "matplotlib", "onnx", "onnxslim"})

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder (default: $QC_DATA_DIR, else the user data dir; "
                              "see qcline --help).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def print_json(data: Any) -> None:
    """One JSON document on stdout (``default=str`` for dates and paths), flushed for pipes."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def default_actor() -> str:
    """The login name: an audit trail of "cli" is no audit trail. Falls back when there is none (containers)."""
    try:
        return getpass.getuser() or "cli"
    except (OSError, KeyError):
        return "cli"

def _one_of(*allowed: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return check


EngineOption = Annotated[str | None, typer.Option(
    "--engine", callback=_one_of("auto", "onnxruntime", "openvino"),
    help="Inference engine: auto, onnxruntime, openvino (default: $QC_ENGINE or auto: the fastest this CPU has).")]
PrecisionOption = Annotated[str | None, typer.Option(
    "--precision", callback=_one_of("auto", "fp32", "bf16", "int8"),
    help="auto, fp32, bf16, int8 (default: $QC_PRECISION or auto: bf16 where the CPU has it, else fp32).")]
TtaOption = Annotated[str | None, typer.Option(
    "--tta", help="Test-time augmentation for this run, without editing the package: hflip, vflip, hvflip, "
                  "comma-separated (each flipped view of a frame runs in the same batch; the views' boxes are "
                  "fused by weighted box fusion, IoU 0.55); off: without the package's own metadata.tta. "
                  "Default: as the package says.")]


def tta_of(value: str | None) -> TTA | Literal["package"] | None:
    """``--tta``'s text -> what ``OnnxDetector.from_package(tta=...)`` takes (a bad flip: one-line error)."""
    return PACKAGE_TTA if value is None else TTA.from_spec(value)


def data_dir_source(settings: Settings) -> str:
    """Where the data folder came from, for messages: a user who looks in the wrong place needs to know."""
    import os

    if os.environ.get("QC_DATA_DIR"):
        return "$QC_DATA_DIR"
    from inspection.settings import default_data_dir

    return "the user data dir" if settings.data_dir == default_data_dir() else "--data-dir"


def require_database(settings: Settings) -> None:
    """Commands that only read must not create an empty SQLite database and report empty tables: a
    command run with the wrong data folder says where it looked and exits 1."""
    if settings.database_url:
        return
    db = (settings.data_dir / "qcline.db").resolve()
    if not db.is_file():
        raise QCError(f"no qcline database at {db} (data folder from {data_dir_source(settings)}); set "
                      "QC_DATA_DIR or --data-dir to the station's data folder, or start one with `qcline demo` "
                      "or `qcline orders import FILE`")


def missing_train_extra(exc: ModuleNotFoundError) -> QCError | None:
    """The one-line error for a base install running a training command, or ``None`` for other imports."""
    root = (exc.name or "").split(".")[0]
    return QCError(f"{TRAIN_EXTRA_HINT} (missing: {root})") if root in TRAIN_MODULES else None


def require_train_extra(*modules: str) -> None:
    """Fail in one line, before any work, where the [train] extra is not installed (a station install)."""
    import importlib.util

    for name in modules or ("torch", "ultralytics", "matplotlib"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise QCError(f"{TRAIN_EXTRA_HINT} (missing: {name})")


out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal width
log = logging.getLogger("qcline")

ModelOption = Annotated[Path | None, typer.Option(
    "--model", help="Model package folder (default: $QC_MODEL_PATH, else the registry's champion, else the bundled "
    "model).")]



def settings_for(data_dir: Path | None = None, model: Path | None = None, engine: str | None = None,
                 precision: str | None = None) -> Settings:
    return load_settings(data_dir=data_dir, model_path=model, engine=engine, precision=precision)


def progress() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def zone_of(settings: Settings) -> Any:
    """The zone times are shown in: QC_TIMEZONE, else the machine's local zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if settings.timezone:
        try:
            return ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise QCError(f"QC_TIMEZONE={settings.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    return datetime.now().astimezone().tzinfo


def local_time(value: str | None, zone: Any) -> str:
    from datetime import datetime

    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def when(text: str | None, zone: Any, option: str) -> Any:
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

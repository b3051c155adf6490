"""What every ``qcline`` command module shares: the common options, JSON output, who is acting."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder (default: $QC_DATA_DIR or ./data).")]
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

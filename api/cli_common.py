"""What every ``qcline`` command module shares: the common options, JSON output, who is acting."""

from __future__ import annotations

import getpass
import json
import sys
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

EngineOption = Annotated[str | None, typer.Option(
    "--engine", help="Inference engine: auto, onnxruntime or openvino (default: $QC_ENGINE or auto).")]
PrecisionOption = Annotated[str | None, typer.Option(
    "--precision", help="auto, fp32, bf16 or int8 (default: $QC_PRECISION or auto: bf16 where the CPU has it).")]

"""Station settings from the environment (``QC_`` prefix), built by a function and passed in.

Nothing reads the environment at import time: tests and the CLI build a ``Settings`` explicitly, so two
stations (or two tests) in one process never share hidden state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "neu-det-yolov8n"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QC_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Embedded database, evidence frames, snapshots.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite (WAL) at <data_dir>/qcline.db. "
        "A plain postgresql://user@host:port/db URL is accepted.")
    model_path: Path | None = Field(
        default=None, description="Model package the station runs; unset means the registry's champion, or the "
        "bundled default model when there is none.")
    threads: int = Field(default=0, ge=0, description="Inference threads of the engine; 0 lets the engine choose.")
    engine: Literal["auto", "onnxruntime", "openvino"] = Field(
        default="auto", description="Inference engine; auto picks the fastest this CPU has (logged with why).")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto", description="Inference precision; auto: bf16 where the CPU has bf16 units (OpenVINO), "
        "else fp32; int8 needs an int8 package (`qcline models quantize`).")
    batch_size: int = Field(default=8, ge=1, le=64, description="Frames per forward pass.")
    write_batch: int = Field(default=64, ge=1, description="Results per database transaction.")
    keep_pass_frames: bool = Field(default=False, description="Also keep evidence frames of PASS units.")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'qcline.db').resolve()}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "frames"

    @property
    def engine_cache_dir(self) -> Path:
        """OpenVINO's compiled-model cache (``CACHE_DIR``): a restart loads the blob instead of compiling."""
        return self.data_dir / "cache" / "openvino"


def load_settings(**overrides: object) -> Settings:
    """Read ``QC_*`` variables (and ``overrides``, which win) into a fresh ``Settings``."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]

"""Station settings from the environment (``QC_`` prefix), built by a function and passed in.

Nothing reads the environment at import time: tests and the CLI build a ``Settings`` explicitly, so two
stations (or two tests) in one process never share hidden state.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_path
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "neu-det-yolov8n"


def default_data_dir() -> Path:
    """The user-level data folder (``~/.local/share/qcline`` on Linux): the same from any working folder,
    so a command run elsewhere never starts a second, empty database under ``./data``."""
    return user_data_path("qcline", appauthor=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QC_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir,
                           description="Embedded database, evidence frames, snapshots (default: the user data dir).")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means SQLite (WAL) at <data_dir>/qcline.db. "
        "A plain postgresql://user@host:port/db URL is accepted.")
    model_path: Path | None = Field(
        default=None, description="Model package the station runs; unset means the registry's champion, or the "
        "bundled default model when there is none.")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads; 0 lets onnxruntime choose.")
    batch_size: int = Field(default=8, ge=1, le=64, description="Frames per forward pass.")
    write_batch: int = Field(default=64, ge=1, description="Results per database transaction.")
    keep_pass_frames: bool = Field(default=False, description="Also keep evidence frames of PASS units.")
    bundled_champion: bool = Field(default=True, description="A registry that never had a champion starts with "
                                   "the bundled model as champion (false: it starts empty; the first promotion "
                                   "then has nothing to be compared with).")
    timezone: str | None = Field(default=None, description="IANA zone (e.g. Europe/Berlin) for times shown to "
                                 "people and for shift hours; unset: the machine's (CLI) or the browser's (page).")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'qcline.db').resolve()}"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "frames"


def load_settings(**overrides: object) -> Settings:
    """Read ``QC_*`` variables (and ``overrides``, which win) into a fresh ``Settings``."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]

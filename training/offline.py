"""Keep ultralytics from reaching the network.

Stations and CI have no internet. Ultralytics probes DNS at import, pip-installs missing packages,
downloads ``Arial.ttf`` on every ``train()`` and weights for its AMP check. This must run before the
first ``import ultralytics``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path


def prepare_offline_ultralytics(config_dir: Path) -> None:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "True")
    config_dir = Path(config_dir).resolve()
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib  # after MPLCONFIGDIR is set: matplotlib reads it on import

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = font_dir / name
        if not target.exists() and source.exists():
            shutil.copyfile(source, target)


def ultralytics_logs_to_stderr() -> None:
    """Ultralytics logs to stdout; a ``--json`` command's stdout must hold only its JSON."""
    from ultralytics.utils import LOGGER  # the [train] extra

    for handler in LOGGER.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)

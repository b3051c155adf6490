"""Measured rows for a model card: one JSON record per package, and the table rendered only from them.

A model card's table is where numbers are most tempting to type in. Here they cannot be: a row exists only
for a record written by ``measure_package``, which evaluates the package's ONNX bytes on the test split
through the stations' runtime, times its forward passes at batch 8 on the station's engine and weighs the
package folder, on this machine, now. ``render_table`` refuses a record that lacks any measured field, that
was measured on another split than ``test``, or whose package no longer holds the bytes it measured.

No torch here (the ``models`` room): the station runtime and numpy only.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from datasets.snapshot import Snapshot
from inspection.blobs import write_atomic
from inspection.detector import OnnxDetector
from inspection.errors import DatasetError, QCError
from inspection.hashing import sha256_file
from inspection.model_package import MODEL_FILE, PACKAGE_TTA, TTA
from models.evaluation import evaluate_package, training_overlap

log = logging.getLogger(__name__)

RECORD_KIND = "qcline.model-measurement"
RECORD_VERSION = 1
SPEED_BATCH = 8


class MeasurementError(QCError):
    """A measurement record that cannot make a row (missing a measured field, another split, altered package)."""


def package_megabytes(package_dir: Path) -> float:
    """Bytes of every file a package folder holds (what a station copies), in MB (10^6)."""
    return sum(p.stat().st_size for p in Path(package_dir).rglob("*") if p.is_file()) / 1e6


def training_config(training: dict[str, Any], input_size: int) -> dict[str, Any]:
    """The recipe as the package's own ``metadata.training`` records it (never typed in): base model, input
    size, epochs (completed where recorded), time budget, batch, device."""
    stage: dict[str, Any] = dict(training["stages"][-1]) if training.get("stages") else {}
    args = {**{str(k): v for k, v in (training.get("training_args") or {}).items()}, **stage}
    for key in ("model", "epochs", "batch", "device", "time", "time_hours", "epochs_completed"):
        if key in training and key not in args:
            args[key] = training[key]
    base = str(args.get("model") or training.get("base") or "?")
    return {"base": Path(base).name, "imgsz": input_size,
            "epochs": args.get("epochs_completed") or args.get("epochs"),
            "time_hours": args.get("time_hours") or args.get("time"), "batch": args.get("batch"),
            "device": args.get("device")}


def config_text(config: dict[str, Any]) -> str:
    parts = [f"{config['base']} {config['imgsz']} px"]
    if config.get("epochs") not in (None, "", "None"):
        parts.append(f"{config['epochs']} ep")
    if config.get("time_hours") not in (None, "", "None"):
        parts.append(f"time {config['time_hours']} h")
    if config.get("batch") not in (None, "", "None"):
        parts.append(f"batch {config['batch']}")
    if config.get("device") not in (None, "", "None"):
        parts.append(str(config["device"]))
    if config.get("tta"):
        parts.append(f"TTA {config['tta']}")
    return ", ".join(parts)


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` is empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def time_forward(detector: OnnxDetector, images: Sequence[npt.NDArray[np.uint8]], *, rounds: int = 3,
                 repeats: int = 10) -> dict[str, Any]:
    """Frames per second of ``detect`` (letterbox, the engine's forward, decode + NMS) on one batch of
    ``len(images)``, best of ``rounds`` rounds of ``repeats`` passes: the best round is the one least hit
    by other load on a shared machine; every round is kept."""
    detector.detect(list(images))  # warm-up: first-call allocation and compilation
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            detector.detect(list(images))
        per_round.append(len(images) * repeats / (time.perf_counter() - start))
    return {"fps": round(max(per_round), 2), "rounds_fps": [round(f, 2) for f in per_round],
            "batch": len(images), "repeats": repeats}


def measure_package(package_dir: Path, snapshot: Snapshot, *, trained_on: Snapshot | None = None,
                    engine: str = "auto", precision: str = "auto", threads: int | None = None,
                    label: str = "", tta: TTA | Literal["package"] | None = PACKAGE_TTA) -> dict[str, Any]:
    """Evaluate ``package_dir`` on ``snapshot``'s test split, time it at batch 8, weigh it: one record.

    ``trained_on`` (the snapshot named in the package's metadata, when at hand) lets the record say how
    many test images the model trained on (``seen_in_training``): a row with any is marked contaminated.
    ``tta`` runs it with test-time augmentation (default: as its metadata says), named in the record's
    ``tta`` and ``config.tta`` so its row says so; frames/s then counts frames, each ``tta.views`` forward images.
    """
    if not snapshot.has_test:
        raise DatasetError(f"snapshot {snapshot.id[:12]} has no test split: a card row is measured on test only "
                           "(import with --test-fraction)")
    detector = OnnxDetector.from_package(package_dir, engine=engine, precision=precision, threads=threads,
                                         max_batch=SPEED_BATCH, tta=tta)
    meta, augmented = detector.metadata, detector.tta
    test = evaluate_package(detector, snapshot, split="test")
    sample = []
    entries = snapshot.split("test")
    for index in range(SPEED_BATCH):  # a full batch of test images, repeated when the split has fewer
        entry = entries[index % len(entries)]
        image = cast(npt.NDArray[np.uint8] | None, cv2.imread(str(entry.image.path), cv2.IMREAD_COLOR))
        if image is None:
            raise DatasetError(f"cannot read {entry.image.path}")
        sample.append(image)
    load_before = os.getloadavg()[0]
    speed = time_forward(detector, sample)
    overlap = training_overlap(trained_on, snapshot, "test") if trained_on is not None else None
    return {
        "kind": RECORD_KIND, "version": RECORD_VERSION,
        "label": label or (f"{meta.name} + TTA {augmented.label}" if augmented else meta.name), "model": meta.name,
        "model_sha256": detector.model_sha256, "package": str(package_dir),
        "package_mb": round(package_megabytes(package_dir), 2),
        "config": {**training_config(dict(meta.training), meta.input_width),
                   "tta": augmented.label if augmented else None},
        "tta": augmented.to_json() if augmented else None,
        "trained_on": str(meta.dataset.get("snapshot") or ""), "seen_in_training": overlap,
        "snapshot": snapshot.id, "split": "test", "test": test.to_json(),
        "speed": {**speed, "engine": detector.engine_name, "precision": detector.precision,
                  "threads": threads or 0, "load_avg_1min_before": round(load_before, 2)},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpu_model": cpu_model(),
                 "cpus": os.cpu_count()},
    }


def write_record(record: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    write_atomic(path, json.dumps(record, indent=1) + "\n")  # a record is never left half-written
    return path


@dataclass(frozen=True)
class CardRow:
    label: str
    config: str
    map50: float
    map50_95: float
    per_class: dict[str, tuple[float, float]]
    fps: float
    engine: str
    package_mb: float
    test_images: int
    seen_in_training: dict[str, int] | None
    snapshot: str
    model_sha256: str


def _require(record: dict[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise MeasurementError(f"record has no measured {'.'.join(keys)}")
        value = value[key]
    return value


def row_of(record: dict[str, Any], *, check_package: bool = True) -> CardRow:
    """A table row from one measurement record, or ``MeasurementError`` saying why it is not one."""
    if record.get("kind") != RECORD_KIND:
        raise MeasurementError(f"not a measurement record (kind {record.get('kind')!r}): rows come from "
                               "`qcline models measure` only")
    if record.get("split") != "test":
        raise MeasurementError(f"measured on {record.get('split')!r}, not on the test split")
    test = _require(record, "test")
    map50, map50_95 = float(_require(test, "map50")), float(_require(test, "map50_95"))
    fps, engine = float(_require(record, "speed", "fps")), str(_require(record, "speed", "engine"))
    if int(_require(record, "speed", "batch")) != SPEED_BATCH:
        raise MeasurementError(f"timed at batch {record['speed']['batch']}, not {SPEED_BATCH}")
    package_mb, sha = float(_require(record, "package_mb")), str(_require(record, "model_sha256"))
    package = Path(str(record.get("package") or ""))
    if check_package and (package / MODEL_FILE).is_file() and sha256_file(package / MODEL_FILE) != sha:
        raise MeasurementError(f"{package} no longer holds the model measured ({sha[:12]})")
    per_class = {name: (float(row["ap50"]), float(row["ap50_95"]))
                 for name, row in dict(_require(test, "per_class")).items()}
    config = dict(_require(record, "config"))
    return CardRow(str(record.get("label") or record.get("model")), config_text(config), map50, map50_95, per_class,
                   fps, f"{engine} {record['speed'].get('precision', '')}".strip(), package_mb,
                   int(_require(test, "images")), record.get("seen_in_training"), str(_require(record, "snapshot")),
                   sha)


def load_rows(paths: Iterable[Path], *, check_package: bool = True) -> tuple[list[CardRow], list[str]]:
    """Rows of the readable records, and one line per record refused (path: why)."""
    rows, refused = [], []
    for path in paths:
        try:
            rows.append(row_of(json.loads(Path(path).read_text()), check_package=check_package))
        except (OSError, ValueError, MeasurementError) as exc:
            refused.append(f"{path}: {exc}")
    return rows, refused


def _seen(row: CardRow) -> str:
    if row.seen_in_training is None:
        return "training snapshot unknown"
    trained, chose = row.seen_in_training.get("train", 0), row.seen_in_training.get("val", 0)
    seen = f"**trained on {trained}**" if trained else "trained on 0"
    return seen + (f"; epoch chosen on {chose}" if chose else "")


def render_table(rows: Sequence[CardRow]) -> str:
    """Markdown: the overall table, then AP@0.5 / AP@0.5:0.95 per class; only from measured rows."""
    if not rows:
        return "(no measured rows)\n"
    snapshots = sorted({r.snapshot[:12] for r in rows})
    lines = [f"Test split of snapshot {', '.join(snapshots)}; speed: `detect` at batch {SPEED_BATCH} "
             "(letterbox, forward, decode + NMS), best of 3 rounds, on the station's default engine.", "",
             "| model | config | test images (where they sat in its training snapshot) | test mAP@0.5 "
             "| test mAP@0.5:0.95 | frames/s @8 | engine | package MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.label} | {r.config} | {r.test_images} ({_seen(r)}) | {r.map50:.3f} | {r.map50_95:.3f} "
                     f"| {r.fps:.1f} | {r.engine} | {r.package_mb:.1f} |")
    classes = list(dict.fromkeys(name for r in rows for name in r.per_class))
    lines += ["", "| model | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for r in rows:
        cells = [f"{r.per_class[c][0]:.2f} / {r.per_class[c][1]:.2f}" if c in r.per_class else "-" for c in classes]
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(per class: test AP@0.5 / AP@0.5:0.95)")
    return "\n".join(lines) + "\n"

"""Inference benchmark: the full station pipeline against raw onnxruntime and ultralytics' predict.

Prints one JSON line. Each part runs in its own subprocess (same model, images, batch and thread
setting) so thread pools and memory of one part never colour another:

* ``pipeline``: read file -> decode -> letterbox -> forward -> decode head + NMS -> verdict against an
  order profile -> unit roll-up -> batched write to a real SQLite (WAL) results log, flushed at the end;
* ``ort``: ``InferenceSession.run`` alone on tensors prepared before the clock starts;
* ``ultralytics``: ``YOLO(model.onnx).predict`` on the same files, ``batch`` images per call.

Usage: python bench/inference.py [--images DIR] [--model PKG] [--batch 8] [--limit N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "neu-det" / "images"
DEFAULT_MODEL = ROOT / "models" / "neu-det-yolov8n"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {folder}")
    return files[:limit] if limit else files


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_pipeline(files: list[Path], model: Path, batch: int, threads: int) -> dict[str, float]:
    from datetime import UTC, datetime

    from inspection.detector import OnnxDetector
    from inspection.imageio import decode_image
    from inspection.pipeline import Inspector
    from inspection.profiles import InspectionProfile, Order, OrderBook
    from inspection.store.repository import ResultsStore
    from inspection.store.writer import BatchedResultWriter
    from inspection.types import Frame, FrameFailure

    detector = OnnxDetector.from_package(model, threads=threads or None, max_batch=batch)
    detector.warmup()
    profile = InspectionProfile.model_validate({"name": "bench", "default": {"confidence": 0.5, "review_from": 0.3},
                                                "required_views": ["top"]})
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore.open(f"sqlite:///{tmp}/bench.db", Path(tmp) / "frames")
        store.import_order_book(OrderBook(profiles={"bench": profile},
                                          orders=(Order(id="BENCH", profile="bench"),)))
        writer = BatchedResultWriter(store, batch_size=64)
        inspector = Inspector(detector, store, batch_size=batch, journal=writer)
        now = datetime.now(UTC)

        def frames() -> object:
            for i, path in enumerate(files):
                data = path.read_bytes()
                try:
                    yield Frame(decode_image(data), camera_id="top", unit_id=f"U{i}", order_id="BENCH",
                                captured_at=now, source=str(path), source_seq=i, data=data)
                except Exception as exc:
                    yield FrameFailure("top", f"U{i}", "BENCH", now, str(path), str(exc), i)

        start = time.perf_counter()
        inspector.process(frames())  # type: ignore[arg-type]
        writer.close()
        elapsed = time.perf_counter() - start
        written = writer.stats.written
        store.close()
    return {"fps": len(files) / elapsed, "seconds": elapsed, "written": written, "peak_rss_mb": _peak_rss_mb()}


def part_ort(files: list[Path], model: Path, batch: int, threads: int) -> dict[str, float]:
    import cv2
    import numpy as np
    import onnxruntime as ort

    from inspection.detector import pre_process
    from models.package import ModelPackage

    meta = ModelPackage.load(model).metadata
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model / "model.onnx"), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = [cv2.imread(str(p)) for p in files]
    tensors = [pre_process(images[i:i + batch], meta.input_width, meta.input_height)[0]
               for i in range(0, len(images), batch)]
    session.run(None, {name: tensors[0]})
    start = time.perf_counter()
    for tensor in tensors:
        session.run(None, {name: np.ascontiguousarray(tensor)})
    elapsed = time.perf_counter() - start
    return {"fps": len(files) / elapsed, "seconds": elapsed, "peak_rss_mb": _peak_rss_mb()}


def part_ultralytics(files: list[Path], model: Path, batch: int, threads: int) -> dict[str, float]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="qcline-yolo-"))
    from ultralytics import YOLO

    from models.package import ModelPackage

    meta = ModelPackage.load(model).metadata
    yolo = YOLO(str(model / "model.onnx"), task="detect")
    kwargs = {"imgsz": meta.input_width, "conf": meta.thresholds.confidence, "iou": meta.thresholds.iou,
              "verbose": False, "device": "cpu", "rect": False}
    yolo.predict([str(files[0])], **kwargs)
    start = time.perf_counter()
    for i in range(0, len(files), batch):
        yolo.predict([str(p) for p in files[i:i + batch]], **kwargs)
    elapsed = time.perf_counter() - start
    return {"fps": len(files) / elapsed, "seconds": elapsed, "peak_rss_mb": _peak_rss_mb()}


PARTS = {"pipeline": part_pipeline, "ort": part_ort, "ultralytics": part_ultralytics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"--images {args.images} is not a folder")
    files = _images(args.images, args.limit)
    if args.part:
        result = PARTS[args.part](files, args.model, args.batch, args.threads)
        print(json.dumps(result))
        return
    results = {}
    for part in ("pipeline", "ort", "ultralytics"):
        cmd = [sys.executable, __file__, "--part", part, "--images", str(args.images), "--model", str(args.model),
               "--batch", str(args.batch), "--limit", str(args.limit), "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{part} failed:\n{done.stderr[-3000:]}")
        results[part] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "pipeline_fps": round(results["pipeline"]["fps"], 2),
        "ort_fps": round(results["ort"]["fps"], 2),
        "ultralytics_fps": round(results["ultralytics"]["fps"], 2),
        "vs_ort": round(results["pipeline"]["fps"] / results["ort"]["fps"], 3),
        "vs_ultralytics": round(results["pipeline"]["fps"] / results["ultralytics"]["fps"], 3),
        "peak_rss_mb": round(results["pipeline"]["peak_rss_mb"], 1),
        "batch": args.batch,
        "images": len(files),
        "threads": args.threads or "ort-default",
        "model": str(args.model.name),
        "results_written": results["pipeline"]["written"],
    }))


if __name__ == "__main__":
    main()

"""Evaluation benchmark: ``qcline evaluate``'s runtime path against ultralytics' own ``val`` on the same
ONNX model and images. Prints one JSON line (images per second of each, their ratio, and both mAPs).

Usage: python bench/evaluate.py [--data DIR (Pascal VOC)] [--model PKG] [--split val] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ours(snapshot_dir: Path, model: Path, split: str, batch: int) -> dict[str, float]:
    from datasets.snapshot import Snapshot
    from inspection.detector import OnnxDetector
    from models.evaluation import evaluate_package

    snapshot = Snapshot.load(snapshot_dir)
    detector = OnnxDetector.from_package(model, max_batch=batch)
    detector.warmup()
    start = time.perf_counter()
    metrics = evaluate_package(detector, snapshot, split=split)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    return {"ips": metrics.images / elapsed, "map50": metrics.map50, "map50_95": metrics.map50_95,
            "images": metrics.images}


def theirs(data_yaml: Path, model: Path, split: str, batch: int) -> dict[str, float]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from training.offline import prepare_offline_ultralytics

    prepare_offline_ultralytics(Path(tempfile.mkdtemp(prefix="qcline-yolo-")))
    from ultralytics import YOLO

    from inspection.model_package import ModelPackage

    meta = ModelPackage.load(model).metadata
    yolo = YOLO(str(model / "model.onnx"), task="detect")
    args = {"data": str(data_yaml), "imgsz": meta.input_width, "batch": batch, "conf": 0.001,
            "iou": meta.thresholds.iou, "split": split, "device": "cpu", "plots": False, "verbose": False,
            "project": tempfile.mkdtemp(prefix="qcline-val-")}
    start = time.perf_counter()
    results = yolo.val(**args)
    elapsed = time.perf_counter() - start
    images = int(getattr(results, "seen", 0)) or sum(1 for _ in (data_yaml.parent / "images" / split).iterdir())
    return {"ips": images / elapsed, "map50": float(results.box.map50), "map50_95": float(results.box.map),
            "images": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "neu-det")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "neu-det-yolov8n")
    parser.add_argument("--split", default="val", choices=["train", "val"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--part", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        fn = ours if args.part == "ours" else theirs
        target = args.work / ("snapshot" if args.part == "ours" else "yolo/data.yaml")
        print(json.dumps(fn(target, args.model, args.split, args.batch)))
        return
    from datasets.export import export_yolo
    from datasets.formats.voc import import_voc
    from datasets.snapshot import build_snapshot

    with tempfile.TemporaryDirectory(prefix="qcline-bench-eval-") as tmp:
        work = Path(tmp)
        snapshot = build_snapshot(import_voc(args.data), source=str(args.data))
        (work / "snapshot").mkdir()
        manifest = snapshot.save(work / "snapshots")
        manifest.replace(work / "snapshot" / "manifest.json")
        export_yolo(snapshot, work / "yolo")
        out = {}
        for part in ("ours", "theirs"):  # separate processes: neither warms the other's caches
            cmd = [sys.executable, __file__, "--part", part, "--work", str(work), "--model", str(args.model),
                   "--split", args.split, "--batch", str(args.batch)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{part} failed:\n{done.stderr[-3000:]}")
            out[part] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "qcline_ips": round(out["ours"]["ips"], 2), "ultralytics_ips": round(out["theirs"]["ips"], 2),
        "vs_ultralytics": round(out["ours"]["ips"] / out["theirs"]["ips"], 3),
        "qcline_map50": round(out["ours"]["map50"], 4), "ultralytics_map50": round(out["theirs"]["map50"], 4),
        "qcline_map50_95": round(out["ours"]["map50_95"], 4),
        "ultralytics_map50_95": round(out["theirs"]["map50_95"], 4),
        "images": out["ours"]["images"], "split": args.split, "batch": args.batch, "model": args.model.name,
    }))


if __name__ == "__main__":
    main()

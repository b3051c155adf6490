"""Training-wrapper benchmark: the same ultralytics run through ``qcline train`` and through the plain
``yolo train`` command, in one run. Prints one JSON line with both wall times and the overhead.

``qcline train`` does more than train (YOLO export of the snapshot, ONNX export, evaluation through the
runtime, registration), so both the whole command and its training phase are reported. Keep it short:
this measures overhead, not accuracy.

Usage: python bench/training.py [--data DIR (Pascal VOC)] [--epochs 2] [--imgsz 160] [--batch 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _train_seconds(results_csv: Path) -> float:
    with results_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["time"].strip()) if rows else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "neu-det")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcline-bench-train-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "QC_DATA_DIR": str(work / "data"), "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
               "YOLO_CONFIG_DIR": str(work / "yolo-config")}
        qc = str(BIN / "qcline")
        imported = subprocess.run([qc, "datasets", "import", str(args.data), "--format", "voc", "--json"],
                                  capture_output=True, text=True, env=env, check=True)
        snapshot = json.loads(imported.stdout)["snapshot"]
        start = time.perf_counter()
        ours = subprocess.run([qc, "train", "--dataset", snapshot, "--epochs", str(args.epochs), "--imgsz",
                               str(args.imgsz), "--batch", str(args.batch), "--json"],
                              capture_output=True, text=True, env=env, check=False)
        qcline_s = time.perf_counter() - start
        if ours.returncode:
            raise SystemExit(f"qcline train failed:\n{ours.stderr[-3000:]}")
        run_dir = Path(json.loads(ours.stdout.strip().splitlines()[-1])["run_dir"])
        # the very dataset qcline trained on, through ultralytics' own command line
        from training.offline import prepare_offline_ultralytics

        prepare_offline_ultralytics(work / "yolo-config")
        start = time.perf_counter()
        plain = subprocess.run([str(BIN / "yolo"), "train", f"data={run_dir / 'data' / 'data.yaml'}",
                                "model=yolov8n.yaml", f"epochs={args.epochs}", f"imgsz={args.imgsz}",
                                f"batch={args.batch}", "device=cpu", "amp=False", "pretrained=False", "seed=0",
                                f"project={work / 'plain'}", "name=train", "exist_ok=True"],
                               capture_output=True, text=True, env=env, check=False)
        yolo_s = time.perf_counter() - start
        if plain.returncode:
            raise SystemExit(f"yolo train failed:\n{plain.stderr[-3000:]}{plain.stdout[-3000:]}")
        qcline_train_s = _train_seconds(run_dir / "train" / "results.csv")
        yolo_train_s = _train_seconds(work / "plain" / "train" / "results.csv")
    print(json.dumps({
        "qcline_s": round(qcline_s, 1), "yolo_s": round(yolo_s, 1), "overhead": round(qcline_s / yolo_s - 1, 3),
        "qcline_train_phase_s": round(qcline_train_s, 1), "yolo_train_phase_s": round(yolo_train_s, 1),
        "train_phase_overhead": round(qcline_train_s / yolo_train_s - 1, 3),
        "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
        "note": "qcline sets torch to all cores; plain ultralytics uses cpu_count - 1 on CPU",
    }))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

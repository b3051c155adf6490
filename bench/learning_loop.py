"""Proof of the learning loop on real data, through the product's own commands.

1. import NEU-DET (VOC) -> full snapshot S; derive S' without one class's labels (same split);
2. train M0 on S' (the class is unknown to it), register, make it champion; mark S as the holdout;
3. replay the line: frames of that class from S's *train* split through ``qcline inspect`` (M0 judges them;
   frames kept for audit with QC_KEEP_PASS_FRAMES=1);
4. an operator corrects each frame with the true boxes: ``qcline review file`` (the ground truth stands in
   for the person);
5. ``qcline datasets build-from-reviews --parent S'`` -> S''; ``qcline train --base M0`` on S'' -> M1;
6. ``qcline evaluate`` M0 and M1 on S's val split; ``qcline models promote M1`` through the gate.

Prints one JSON line: per-class AP@0.5 before / after, overall mAP, and the gate's answer.
Usage: python bench/learning_loop.py --work DIR [--data DIR] [--hold-out scratches] [--epochs 25]
       [--finetune-epochs 10] [--imgsz 256] [--batch 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QCLINE = str(Path(sys.executable).parent / "qcline")


def qc(args: list[str], env: dict[str, str], *, check: bool = True) -> dict[str, Any] | list[Any] | None:
    done = subprocess.run([QCLINE, *args], capture_output=True, text=True, env=env, check=False)
    sys.stderr.write(f"$ qcline {' '.join(args)} -> {done.returncode}\n")
    if check and done.returncode:
        raise SystemExit(f"qcline {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(("{", "["))]
    return json.loads(lines[-1]) if lines else {"returncode": done.returncode, "stderr": done.stderr[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "neu-det")
    parser.add_argument("--hold-out", default="scratches")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    work = args.work.resolve()
    env = {**os.environ, "QC_DATA_DIR": str(work / "data"), "QC_KEEP_PASS_FRAMES": "1"}
    train_args = ["--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch", str(args.batch),
                  "--device", args.device, "--json"]

    full = qc(["datasets", "import", str(args.data), "--format", "voc", "--json"], env)
    assert isinstance(full, dict)
    derived = qc(["datasets", "derive", full["snapshot"], "--drop-class", args.hold_out, "--json"], env)
    assert isinstance(derived, dict)
    m0 = qc(["train", "--dataset", derived["snapshot"], "--name", f"without-{args.hold_out}", *train_args], env)
    assert isinstance(m0, dict)
    m0_id = str(m0["candidates"][0]["id"])
    models = qc(["models", "list", "--json"], env)
    assert isinstance(models, list)
    if not any(m["stage"] == "champion" for m in models):
        qc(["models", "promote", m0_id, "--json"], env)
    qc(["models", "holdout", full["snapshot"], "--json"], env)

    # the line: frames of the held-out class from the train split, one unit each
    manifest_rows, truth = [], {}
    snapshot = json.loads(next((work / "data" / "datasets" / "snapshots").glob(
        f"{full['snapshot']}/manifest.json")).read_text())
    for entry in snapshot["entries"]:
        if entry["split"] == "train" and any(b[0] == args.hold_out for b in entry["boxes"]):
            unit = f"AUDIT-{entry['sha256'][:10]}"
            manifest_rows.append({"source": entry["path"], "unit_id": unit, "order_id": "AUDIT", "camera_id": "top"})
            truth[unit] = entry["boxes"]
    (work / "orders.yaml").write_text(
        "profiles:\n  audit: {name: audit, default: {confidence: 0.25}, required_views: [top]}\n"
        "orders:\n  - {id: AUDIT, customer_ref: sampling audit, product: steel strip, profile: audit}\n")
    with (work / "line.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["source", "unit_id", "order_id", "camera_id"])
        writer.writeheader()
        writer.writerows(manifest_rows)
    qc(["orders", "import", str(work / "orders.yaml"), "--json"], env)
    line = qc(["inspect", str(work / "line.csv"), "--json"], env)
    assert isinstance(line, dict)

    decisions = []
    for unit, boxes in truth.items():
        record = qc(["units", "show", unit, "--json"], env)
        assert isinstance(record, dict)
        for frame in record["frames"]:
            decisions.append({"inspection_id": frame["id"], "decision": "correct", "boxes": boxes,
                              "actor": "audit-operator", "note": f"{args.hold_out} missed by the model"})
    (work / "reviews.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    qc(["review", "file", str(work / "reviews.jsonl"), "--json"], env)
    grown = qc(["datasets", "build-from-reviews", "--parent", derived["snapshot"], "--json"], env)
    assert isinstance(grown, dict)
    ft_args = [*train_args]
    ft_args[1] = str(args.finetune_epochs)
    m1 = qc(["train", "--dataset", grown["snapshot"], "--base", m0_id, "--name", f"with-reviewed-{args.hold_out}",
             *ft_args], env)
    assert isinstance(m1, dict)
    m1_id = str(m1["candidates"][0]["id"])
    before = qc(["evaluate", m0_id, "--dataset", full["snapshot"], "--json"], env)
    after = qc(["evaluate", m1_id, "--dataset", full["snapshot"], "--json"], env)
    gate = qc(["models", "promote", m1_id, "--tolerance", "0.02", "--json"], env, check=False)
    assert isinstance(before, dict) and isinstance(after, dict)
    classes = sorted(after["per_class"])
    print(json.dumps({
        "held_out_class": args.hold_out, "line_frames": line["frames"], "reviews": len(decisions),
        "snapshots": {"full": full["snapshot"], "without": derived["snapshot"], "with_reviews": grown["snapshot"]},
        "models": {"m0": m0_id, "m1": m1_id},
        "ap50_before": {c: before["per_class"].get(c, {}).get("ap50", 0.0) for c in classes},
        "ap50_after": {c: after["per_class"][c]["ap50"] for c in classes},
        "map50_before": before["map50"], "map50_after": after["map50"],
        "map50_95_before": before["map50_95"], "map50_95_after": after["map50_95"],
        "gate": gate,
    }))


if __name__ == "__main__":
    main()
